"""CHGNet as a MoMa backbone: featurizer, batching, model and the pretrained base."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_save
from torch import Tensor

from moma.backbones.base import Backbone, Graph
from moma.backbones.chgnet.checkpoint import (
    COMPOSITION_PREFIX,
    WEIGHTS_VERSION,
    checkpoint_path,
    read_checkpoint,
)
from moma.backbones.chgnet.featurizer import CHGNetBatch, CHGNetFeaturizer, graph_to_crystal_graph
from moma.backbones.chgnet.model import CHGNetModel
from moma.errors import ModuleFormatError


def state_sha256(state: Mapping[str, Tensor]) -> str:
    """sha256 of the safetensors serialization of ``state`` with sorted keys."""
    tensors = {key: value.detach().cpu().contiguous() for key, value in sorted(state.items())}
    return hashlib.sha256(safetensors_save(tensors)).hexdigest()


@functools.lru_cache(maxsize=4)
def _pretrained_base(path: Path) -> tuple[dict[str, Tensor], str]:
    # Building the model draws its random init from torch's global generator; this runs once
    # per process (cached), so without fork_rng the first compose of a process would start
    # from other random heads and adapters than every later one with the same seed.
    with torch.random.fork_rng(devices=[]):
        model = CHGNetBackbone(path).build_pretrained()
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    return state, state_sha256(state)


class CHGNetBackbone(Backbone):
    """CHGNet 0.3.0 (pretrained on MPtrj) from the ``chgnet`` package, without unpickling."""

    name = "chgnet"
    version = WEIGHTS_VERSION

    def __init__(self, checkpoint: Path | None = None) -> None:
        self.checkpoint = (checkpoint or checkpoint_path()).resolve()

    def model_args(self) -> dict[str, Any]:
        """CHGNet constructor arguments stored in the checkpoint."""
        return dict(read_checkpoint(self.checkpoint)[1])

    @cached_property
    def _featurizer(self) -> CHGNetFeaturizer:
        args = self.model_args()
        return CHGNetFeaturizer(float(args["atom_graph_cutoff"]),
                                float(args["bond_graph_cutoff"]))

    def featurizer(self) -> CHGNetFeaturizer:
        return self._featurizer

    def collate(self, graphs: Sequence[Graph]) -> CHGNetBatch:
        featurizer = self._featurizer
        return CHGNetBatch([
            graph_to_crystal_graph(g, featurizer.atom_graph_cutoff, featurizer.bond_graph_cutoff)
            for g in graphs
        ])

    def build(self) -> CHGNetModel:
        return CHGNetModel(self.model_args())

    def build_pretrained(self) -> CHGNetModel:
        """The architecture with the 0.3.0 weights (head = the pretrained energy MLP)."""
        model = self.build()
        state = {key: value for key, value in read_checkpoint(self.checkpoint)[0].items()
                 if not key.startswith(COMPOSITION_PREFIX)}
        try:
            model.chgnet.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModuleFormatError(
                f"{self.checkpoint}: weights do not fit the CHGNet architecture ({exc}); "
                "reinstall chgnet==0.4.2"
            ) from exc
        return model

    def pretrained_base(self) -> tuple[dict[str, Tensor], str]:
        """Full state of :meth:`build_pretrained` (fresh copies) and its sha256."""
        state, digest = _pretrained_base(self.checkpoint)
        return {key: value.clone() for key, value in state.items()}, digest
