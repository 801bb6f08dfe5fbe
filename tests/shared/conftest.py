"""Real modules for the compose tests: the imported MoE-(18) CGCNNs, and a shared-base family."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from moma.backbones.base import Graph
from moma.backbones.registry import get_backbone
from moma.data.readers import load_dataset
from moma.graphs.cache import featurize
from moma.modules.moe18 import import_moe18
from moma.modules.store import LoadedModule, load_module, save_module
from moma.paths import downstream_task_path

TASK = "jarvis_2d_eform"


@pytest.fixture(scope="session")
def moe_root(tmp_path_factory: pytest.TempPathFactory, moe18: Path) -> Path:
    root = tmp_path_factory.mktemp("moe18")
    import_moe18(moe18, root)
    return root


@pytest.fixture(scope="session")
def moe_modules(moe_root: Path) -> list[LoadedModule]:
    """Four modules trained separately (four different bases)."""
    return [load_module(moe_root / name)
            for name in ("castelli_eform", "jarvis_eform", "mp_bandgap", "mp_eform")]


@pytest.fixture(scope="session")
def family(tmp_path_factory: pytest.TempPathFactory, moe_root: Path) -> list[LoadedModule]:
    """Two full modules derived from the imported mp_eform (their base), as fine-tuning would
    leave them: every tensor moved by a seeded perturbation, the card naming mp_eform as base."""
    base = load_module(moe_root / "mp_eform")
    root = tmp_path_factory.mktemp("family")
    out = []
    for i, task in enumerate(("castelli_perovskites:e_form", "castelli_perovskites:dir_gap")):
        gen = torch.Generator().manual_seed(i)
        state = {k: v + 0.01 * torch.randn(v.shape, generator=gen) if v.is_floating_point()
                 else v.clone() for k, v in base.state.items()}
        card = dataclasses.replace(base.card, name=f"family-{i}", task=task, module_id="",
                                   base_sha256=base.module_id)
        save_module(root / f"m{i}", state, card)
        out.append(load_module(root / f"m{i}"))
    return out


@pytest.fixture(scope="session")
def train_set() -> tuple[list[Graph], np.ndarray]:
    """The first 48 training structures of jarvis_2d_eform's seed0 split, featurized."""
    dataset = load_dataset(downstream_task_path(TASK))
    idx = dataset.split("seed0")["train"][:48]
    items = [(dataset.records[i].id, dataset.records[i].structure) for i in idx]
    graphs = featurize(get_backbone("cgcnn").featurizer(), items).graphs
    return graphs, dataset.targets[idx]
