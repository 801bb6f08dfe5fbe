"""Parameter averaging of modules that share one base: ``theta = sum_j w_j theta_j``.

AMC's composed model (the paper's ``average``) is the weighted mean of the selected modules'
parameters,

    theta = sum_{j in S} w~_j theta_j,      w~_j = w_j / sum_{l in S} w_l,
    S = {j : w_j >= threshold},

over every floating-point tensor of the backbone, BatchNorm running means and variances
included (they are statistics of the same features the averaged weights produce, so they are
averaged with them). Integer tensors (``num_batches_tracked``) have no meaningful mean and are
taken from the module with the largest weight. Averaging only makes sense between modules
fine-tuned from one shared starting point (the same backbone and base weights, so that
parameters sit in one basin); anything else is refused. Modules trained separately from
scratch are combined with ``top1`` or ``ensemble`` instead.

Memory: states are loaded one at a time through :attr:`MergeInput.load_state`, added into a
float64 accumulator and released, so peak memory is the accumulator plus one module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from moma.errors import IncompatibleModulesError, MomaError


@dataclass(frozen=True)
class MergeInput:
    """One module to merge; ``load_state`` returns its state dict and is called at most once."""

    name: str
    backbone: str
    base_sha256: str
    load_state: Callable[[], dict[str, Tensor]]


def _short(sha: str) -> str:
    return sha[:8] + "…" if len(sha) > 8 else sha


def check_mergeable(inputs: Sequence[MergeInput]) -> None:
    """Refuse modules of different backbones or bases, naming the first mismatching pair."""
    if not inputs:
        raise MomaError("no modules to merge; select at least one module")
    first = inputs[0]
    for other in inputs[1:]:
        if other.backbone != first.backbone:
            raise IncompatibleModulesError(
                f"module {first.name!r} is backbone {first.backbone} but module {other.name!r} "
                f"is {other.backbone}; compose modules of one backbone only")
    for other in inputs[1:]:
        if other.base_sha256 != first.base_sha256:
            raise IncompatibleModulesError(
                f"module {first.name!r} has base {_short(first.base_sha256)} but "
                f"{other.name!r} has base {_short(other.base_sha256)}; parameter averaging "
                "needs one shared base: use --merge top1 or --merge ensemble")


def select_weights(weights: np.ndarray | Sequence[float], threshold: float = 1e-3) -> np.ndarray:
    """Zero the weights below ``threshold`` and renormalize the rest to sum to one.

    If no weight reaches the threshold (only possible with more than ``1 / threshold``
    modules), the largest one alone is kept, so the result is never empty.
    """
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.size == 0 or not np.isfinite(w).all() or w.min() < 0 or not w.sum() > 0:
        raise MomaError(f"module weights must be finite, non-negative and not all zero, got {w}")
    kept = np.where(w >= threshold, w, 0.0)
    if not kept.any():
        kept = np.zeros_like(w)
        kept[int(np.argmax(w))] = w.max()
    return kept / kept.sum()


def _skipped(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key.startswith(prefix) for prefix in prefixes)


def _check_same_layout(reference: dict[str, Tensor], ref_name: str, state: dict[str, Tensor],
                       name: str) -> None:
    missing = sorted(set(reference) - set(state))
    if missing:
        raise IncompatibleModulesError(
            f"module {name!r} lacks key {missing[0]!r} that module {ref_name!r} has "
            f"({len(missing)} missing); merge modules with the same architecture")
    extra = sorted(set(state) - set(reference))
    if extra:
        raise IncompatibleModulesError(
            f"module {name!r} has key {extra[0]!r} that module {ref_name!r} lacks "
            f"({len(extra)} extra); merge modules with the same architecture")
    for key, ref in reference.items():
        tensor = state[key]
        if tensor.shape != ref.shape:
            raise IncompatibleModulesError(
                f"key {key!r} has shape {tuple(ref.shape)} in module {ref_name!r} but "
                f"{tuple(tensor.shape)} in module {name!r}; merge modules with the same "
                "architecture")
        if tensor.is_floating_point() != ref.is_floating_point():
            raise IncompatibleModulesError(
                f"key {key!r} is {ref.dtype} in module {ref_name!r} but {tensor.dtype} in "
                f"module {name!r}; merge modules with the same architecture")


def average_parameters(inputs: Sequence[MergeInput], weights: Sequence[float] | np.ndarray, *,
                       threshold: float = 1e-3,
                       skip_prefixes: tuple[str, ...] = ()) -> dict[str, Tensor]:
    """The weighted parameter average of the modules (see the module docstring).

    Args:
        inputs: modules of one backbone and base, in the order of ``weights``.
        weights: AMC weights (non-negative); entries below ``threshold`` are dropped and the
            rest renormalized. Dropped modules are never loaded.
        threshold: smallest weight a module needs to take part.
        skip_prefixes: keys starting with any of these are left out of the result (e.g. the
            task head, which is replaced by a fresh one).

    Returns:
        The averaged state dict: floating tensors in the dtype of the first merged module,
        integer tensors copied from the highest-weight module.
    """
    if len(weights) != len(inputs):
        raise MomaError(f"{len(weights)} weights for {len(inputs)} modules; pass one weight per "
                        "module")
    check_mergeable(inputs)
    w = select_weights(np.asarray(weights, dtype=np.float64), threshold)
    top = int(np.argmax(w))
    accumulator: dict[str, Tensor] = {}
    integers: dict[str, Tensor] = {}
    layout: dict[str, Tensor] | None = None  # meta tensors: shapes/dtypes of the first module
    ref_name = ""
    for j in (int(i) for i in np.flatnonzero(w)):
        module = inputs[j]
        state = {k: v for k, v in module.load_state().items() if not _skipped(k, skip_prefixes)}
        if layout is None:
            layout = {k: torch.empty(v.shape, dtype=v.dtype, device="meta")
                      for k, v in state.items()}
            ref_name = module.name
        else:
            _check_same_layout(layout, ref_name, state, module.name)
        _accumulate(state, float(w[j]), accumulator, integers if j == top else None)
        del state  # release this module before loading the next one
    if layout is None:  # unreachable: select_weights keeps at least one module
        raise MomaError("no module left to merge after the weight threshold")
    return {key: (accumulator.pop(key).to(meta.dtype) if meta.is_floating_point()
                  else integers[key])
            for key, meta in layout.items()}


def _accumulate(state: dict[str, Tensor], weight: float, accumulator: dict[str, Tensor],
                integers: dict[str, Tensor] | None) -> None:
    """``accumulator += weight * state`` in float64; copy integer tensors if ``integers``."""
    for key, tensor in state.items():
        if tensor.is_floating_point():
            term = tensor.detach().to(device="cpu", dtype=torch.float64) * weight
            if key in accumulator:
                accumulator[key] += term
            else:
                accumulator[key] = term
        elif integers is not None:
            integers[key] = tensor.detach().to("cpu").clone()
