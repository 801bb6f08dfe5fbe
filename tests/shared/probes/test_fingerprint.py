"""Fingerprints of a real module on the probe set, and the probe review's three verdicts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from moma.backbones.registry import get_backbone
from moma.graphs.cache import featurize
from moma.modules.loading import model_from_state
from moma.modules.moe18 import import_moe18
from moma.modules.store import LoadedModule, load_module
from moma.probes.fingerprint import (
    EMBED_DIMS,
    Fingerprint,
    compute_fingerprint,
    reduce_embedding,
    review,
)
from moma.probes.probe_set import DEFAULT_NAME, default_records, probe_set_from_records


@pytest.fixture(scope="module")
def eform(tmp_path_factory: pytest.TempPathFactory, moe18: Path) -> LoadedModule:
    out = tmp_path_factory.mktemp("moe") / "moe18"
    import_moe18(moe18, out)
    return load_module(out / "mp_eform")


@pytest.fixture(scope="module")
def graphs() -> list[object]:
    probe_set = probe_set_from_records(DEFAULT_NAME, default_records(per_prototype=8))
    return list(featurize(get_backbone("cgcnn").featurizer(), probe_set.items(),
                          cache=False).graphs)


def _fingerprint(module: LoadedModule, graphs: list[object], state: dict[str, torch.Tensor]
                 ) -> Fingerprint:
    net = get_backbone("cgcnn")
    model = model_from_state(net, module.card, state, lambda sha: {})
    return compute_fingerprint(net, model, graphs, module.card)  # type: ignore[arg-type]


def test_real_module_fingerprint_is_ok_and_round_trips(eform: LoadedModule,
                                                       graphs: list[object]) -> None:
    fp = _fingerprint(eform, graphs, eform.state)
    assert fp.predictions.shape == (len(graphs),) and fp.embedding.shape == (len(graphs),
                                                                             EMBED_DIMS)
    # formation energies of made-up crystals: finite, varied, mostly within a few eV/atom
    assert np.isfinite(fp.predictions).all() and fp.predictions.std() > 0.05
    assert np.median(np.abs(fp.predictions)) < 5
    verdict = review(fp, eform.card)
    assert verdict.status == "ok", verdict.reason
    back = Fingerprint.from_bytes(fp.probes, fp.predictions_bytes(), EMBED_DIMS,
                                  fp.embedding_bytes())
    assert np.array_equal(back.predictions, fp.predictions)
    assert np.array_equal(back.embedding, fp.embedding)
    with pytest.raises(ValueError):
        Fingerprint.from_bytes(fp.probes + 1, fp.predictions_bytes(), EMBED_DIMS, b"")


def test_dead_head_is_refused_as_constant(eform: LoadedModule, graphs: list[object]) -> None:
    state = dict(eform.state)
    last = sorted(k for k in state if k.startswith("fc_out") and k.endswith("weight"))[0]
    state[last] = torch.zeros_like(state[last])
    verdict = review(_fingerprint(eform, graphs, state), eform.card)
    assert verdict.status == "refused" and "same value" in verdict.reason


def test_overflowing_module_is_refused_as_non_finite(eform: LoadedModule,
                                                     graphs: list[object]) -> None:
    state = {k: (v * 1e30 if v.is_floating_point() and "bn" not in k else v)
             for k, v in eform.state.items()}
    verdict = review(_fingerprint(eform, graphs, state), eform.card)
    assert verdict.status == "refused" and "not finite" in verdict.reason


def test_card_range_far_from_predictions_is_flagged(eform: LoadedModule,
                                                    graphs: list[object]) -> None:
    # a card declaring a range its predictions never reach (formation energies are not 5-10)
    lying = dataclasses.replace(eform.card, extra={"range": [5.0, 10.0]})
    verdict = review(_fingerprint(eform, graphs, eform.state), lying)
    assert verdict.status == "flagged" and "outside" in verdict.reason
    assert verdict.summary["outside_share"] > 0.9
    # the same declared in eV/atom passes
    honest = dataclasses.replace(eform.card, extra={"range": [-4.0, 0.5]})
    assert review(_fingerprint(eform, graphs, eform.state), honest).status == "ok"
    # a head whose standardized outputs are far beyond the training spread is flagged too
    state = dict(eform.state)
    state["fc_out.bias"] = state["fc_out.bias"] + 50.0
    shifted = review(_fingerprint(eform, graphs, state), eform.card)
    assert shifted.status == "flagged" and shifted.summary["outside_share"] > 0.9


def test_reduced_embedding_keeps_the_main_axes() -> None:
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(100, 2))
    x = latent @ rng.normal(size=(2, 64)) + 0.01 * rng.normal(size=(100, 64))
    z = reduce_embedding(x).astype(np.float64)
    # two informative axes: the first two scores span the latent plane, the rest is noise
    coef, *_ = np.linalg.lstsq(z[:, :2], latent - latent.mean(0), rcond=None)
    residual = latent - latent.mean(0) - z[:, :2] @ coef
    assert np.abs(residual).max() < 0.05 * np.abs(latent).max()
    assert np.abs(z[:, 2:]).max() < 0.05
