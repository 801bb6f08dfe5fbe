"""Argument checks that run before anything is loaded (no torch, no data, no progress bar).

A mistake in the arguments of ``train`` or ``compose`` (an unknown strategy, ``--device
cuda`` without CUDA, ``backbone-ft`` without a base) is refused here, in well under a second,
instead of after the dataset, the graphs and the models were loaded. The API entry points call
these checks first, and the CLI calls them before it even imports the API.
"""

from __future__ import annotations

from moma.amc.registry import (
    KINDS,
    Strategy,
    check_knn_layer,
    get_head,
    get_merge,
    get_strategy,
)
from moma.backbones.registry import check_backbone_name, has_pretrained_base
from moma.errors import MomaError


def check_device(name: str) -> None:
    """``cpu``, ``auto``, ``cuda`` or ``cuda:N`` (CUDA only where it is available)."""
    if name in ("cpu", "auto"):
        return
    if not (name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise MomaError(f"--device {name}: not a device; use cpu, cuda, cuda:N or auto")
    import torch

    if not torch.cuda.is_available():
        raise MomaError(f"--device {name}: no CUDA device is available here; use --device cpu")


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise MomaError(f"unknown module kind {kind!r}; choose full or adapter")


def check_compose_arguments(*, strategy: str, merge: str, kind: str, head: str, knn_layer: str,
                            backbone: str, device: str, train_size: int | None,
                            has_candidates: bool, has_base_module: bool) -> Strategy:
    """Everything about a compose that can be wrong before its data is read."""
    chosen = get_strategy(strategy)
    get_merge(merge)
    get_head(head)
    check_knn_layer(knn_layer)
    check_kind(kind)
    if kind not in chosen.kinds:
        raise MomaError(f"--strategy {chosen.name} trains every weight: use --kind full"
                        if chosen.kinds == ("full",) else
                        f"--strategy {chosen.name} does not support --kind {kind}")
    check_backbone_name(backbone)
    check_device(device)
    if train_size is not None and train_size < 2:
        raise MomaError("--train-size must be at least 2")
    if chosen.needs_modules and not has_candidates:
        raise MomaError(f"--strategy {chosen.name} needs candidate modules: pass --modules DIR "
                        "and/or --hub ADDR")
    if chosen.needs_base and not has_base_module and not has_pretrained_base(backbone):
        raise MomaError(f"--strategy {chosen.name} with {backbone} needs the base module: pass "
                        "--base-module (e.g. the imported mp_eform module)")
    return chosen


def check_train_arguments(*, backbone: str, kind: str, device: str, has_init: bool,
                          max_train: int | None = None) -> None:
    """Everything about a training run that can be wrong before its data is read."""
    check_backbone_name(backbone)
    check_kind(kind)
    check_device(device)
    if max_train is not None and max_train < 2:
        raise MomaError("--max-train must be at least 2")
    if kind == "adapter" and not has_init and not has_pretrained_base(backbone):
        raise MomaError(
            f"adapter modules need a pretrained base, and {backbone} has none built in: "
            "pass --init MODULE (a full module, e.g. an imported MoE-(18) module)"
        )
