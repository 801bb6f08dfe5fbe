"""Parameter averaging on real CGCNN states, thresholds, integer buffers and refusals."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor

from moma.amc.merge import MergeInput, average_parameters, check_mergeable, select_weights
from moma.backbones.cgcnn.backbone import CGCNNBackbone
from moma.errors import IncompatibleModulesError, MomaError

BASE = "1234abcd" + "0" * 56
HEAD = ("conv_to_fc.", "fc_out.")


def cgcnn_state(seed: int, bn_value: float, batches: int) -> dict[str, Tensor]:
    """A real CGCNN state dict with distinct BatchNorm statistics and batch counters."""
    torch.manual_seed(seed)
    state = {k: v.detach().clone() for k, v in CGCNNBackbone().build().state_dict().items()}
    for i in range(4):
        for j, bn in enumerate(("bn1", "bn2")):
            state[f"convs.{i}.{bn}.running_mean"].fill_(bn_value + i + 0.1 * j)
            state[f"convs.{i}.{bn}.running_var"].fill_(2.0 * bn_value + i + 0.5 * j)
            state[f"convs.{i}.{bn}.num_batches_tracked"].fill_(batches + i)
    return state


class Loader:
    """Counts loads and keeps weak references to every tensor it handed out."""

    def __init__(self, state: dict[str, Tensor],
                 before: Callable[[], None] | None = None) -> None:
        self.state = state
        self.calls = 0
        self.refs: list[weakref.ref[Tensor]] = []
        self.before = before

    def __call__(self) -> dict[str, Tensor]:
        if self.before is not None:
            self.before()
        self.calls += 1
        out = {k: v.clone() for k, v in self.state.items()}
        self.refs.extend(weakref.ref(v) for v in out.values())
        return out


def module(name: str, loader: Callable[[], dict[str, Tensor]], backbone: str = "cgcnn",
           base: str = BASE) -> MergeInput:
    return MergeInput(name=name, backbone=backbone, base_sha256=base, load_state=loader)


@pytest.fixture(scope="module")
def states() -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    return cgcnn_state(1, 0.25, 7), cgcnn_state(2, 1.5, 100), cgcnn_state(3, -3.0, 40)


def test_weighted_sum_of_two_cgcnn_modules(states: tuple[dict[str, Tensor], ...]) -> None:
    a, b, _ = states
    assert not torch.equal(a["embedding.weight"], b["embedding.weight"])
    load_a = Loader(a)

    def a_released() -> None:
        # When b is loaded, no tensor a handed out may still be alive (one module at a time).
        alive = sum(ref() is not None for ref in load_a.refs)
        assert alive == 0, f"{alive} tensors of module a still in memory"

    load_b = Loader(b, before=a_released)
    merged = average_parameters([module("a", load_a), module("b", load_b)], [0.3, 0.7])
    assert load_a.calls == load_b.calls == 1
    assert set(merged) == set(a)
    for key, value in merged.items():
        assert value.dtype == a[key].dtype and value.shape == a[key].shape
        if value.is_floating_point():
            expected = 0.3 * a[key].double() + 0.7 * b[key].double()
            torch.testing.assert_close(value.double(), expected, rtol=0, atol=1e-6)
    # BatchNorm statistics averaged too: 0.3 * 0.25 + 0.7 * 1.5 = 1.125 (conv 0, bn1).
    torch.testing.assert_close(merged["convs.0.bn1.running_mean"],
                               torch.full((128,), 1.125), rtol=0, atol=1e-6)
    # running_var of conv 2, bn2: 0.3 * (0.5 + 2 + 0.5) + 0.7 * (3 + 2 + 0.5) = 4.75.
    torch.testing.assert_close(merged["convs.2.bn2.running_var"],
                               torch.full((64,), 4.75), rtol=0, atol=1e-6)
    # Integer counters from the heaviest module (b: 100 + conv index).
    assert merged["convs.3.bn1.num_batches_tracked"].dtype == torch.int64
    assert int(merged["convs.3.bn1.num_batches_tracked"]) == 103


def test_threshold_skips_and_renormalizes(states: tuple[dict[str, Tensor], ...]) -> None:
    a, b, c = states
    loaders = [Loader(a), Loader(b), Loader(c)]
    inputs = [module(n, ld) for n, ld in zip("abc", loaders, strict=True)]
    merged = average_parameters(inputs, [0.5, 0.0005, 0.4995], skip_prefixes=HEAD)
    assert [ld.calls for ld in loaders] == [1, 0, 1]  # the skipped module is never loaded
    assert not any(k.startswith(HEAD) for k in merged)
    assert set(merged) == {k for k in a if not k.startswith(HEAD)}
    wa, wc = 0.5 / 0.9995, 0.4995 / 0.9995
    for key in ("embedding.weight", "convs.1.fc_full.bias", "convs.3.bn2.running_mean"):
        expected = wa * a[key].double() + wc * c[key].double()
        torch.testing.assert_close(merged[key].double(), expected, rtol=0, atol=1e-6)
    # a has the largest weight: its counters (7 + conv index) are kept.
    assert int(merged["convs.1.bn2.num_batches_tracked"]) == 8


def test_select_weights() -> None:
    np.testing.assert_allclose(select_weights(np.array([0.5, 0.0005, 0.4995])),
                               [0.5 / 0.9995, 0.0, 0.4995 / 0.9995], rtol=1e-15)
    np.testing.assert_allclose(select_weights(np.array([0.2, 0.3, 0.5]), threshold=0.25),
                               [0.0, 0.375, 0.625], rtol=1e-15)
    # Nothing reaches the threshold: the largest weight alone is kept.
    np.testing.assert_array_equal(select_weights(np.array([4e-4, 6e-4]), threshold=1e-3),
                                  [0.0, 1.0])
    with pytest.raises(MomaError, match="non-negative"):
        select_weights(np.array([0.5, -0.1]))


def test_refuses_other_backbone_before_loading(states: tuple[dict[str, Tensor], ...]) -> None:
    a, b, _ = states
    la, lb = Loader(a), Loader(b)
    inputs = [module("a", la), module("b", lb, backbone="chgnet")]
    with pytest.raises(IncompatibleModulesError,
                       match="module 'a' is backbone cgcnn but module 'b' is chgnet"):
        average_parameters(inputs, [0.5, 0.5])
    assert la.calls == lb.calls == 0


def test_refuses_other_base() -> None:
    inputs = [module("a", dict), module("b", dict, base="5678ef01" + "f" * 56)]
    with pytest.raises(IncompatibleModulesError) as err:
        check_mergeable(inputs)
    assert str(err.value) == (
        "module 'a' has base 1234abcd… but 'b' has base 5678ef01…; parameter averaging needs "
        "one shared base: use --merge top1 or --merge ensemble")
    check_mergeable([module("a", dict), module("b", dict)])  # same base: accepted


def test_key_and_shape_mismatch(states: tuple[dict[str, Tensor], ...]) -> None:
    a, b, _ = states
    lacking = {k: v for k, v in b.items() if k != "convs.2.bn1.weight"}
    with pytest.raises(IncompatibleModulesError,
                       match=r"module 'b' lacks key 'convs\.2\.bn1\.weight' that module 'a' has"):
        average_parameters([module("a", Loader(a)), module("b", Loader(lacking))], [0.5, 0.5])
    reshaped = dict(b, **{"embedding.bias": torch.zeros(32)})
    with pytest.raises(IncompatibleModulesError,
                       match=r"key 'embedding\.bias' has shape \(64,\) in module 'a' but \(32,\)"):
        average_parameters([module("a", Loader(a)), module("b", Loader(reshaped))], [0.5, 0.5])
    # A difference only inside a skipped prefix is fine.
    other_head = dict(b, **{"fc_out.weight": torch.zeros(1, 5)})
    merged = average_parameters([module("a", Loader(a)), module("b", Loader(other_head))],
                                [0.5, 0.5], skip_prefixes=HEAD)
    assert "fc_out.weight" not in merged


def test_weight_count_must_match(states: tuple[dict[str, Tensor], ...]) -> None:
    with pytest.raises(MomaError, match="2 weights for 1 modules"):
        average_parameters([module("a", Loader(states[0]))], [0.5, 0.5])
