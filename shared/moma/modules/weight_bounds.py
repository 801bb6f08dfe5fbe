"""Per-backbone bounds on weight magnitudes, checked wherever a module is loaded or accepted.

Finite is not enough: a module whose weights are all 1e30 loads, and its predictions overflow
to NaN. Measured on the weights this project ships or imports, the largest magnitude of any
tensor is 45 for the 18 MoE-(18) CGCNNs (a BatchNorm running variance) and 109 for the
pretrained CHGNet 0.3.0 (radial basis frequencies); the bound leaves two orders of magnitude
of room above that for fine-tuning. A backbone may declare its own bound as a
``max_abs_weight`` attribute; otherwise the table below (or the default) applies.
"""

from __future__ import annotations

MAX_ABS_WEIGHT: dict[str, float] = {"cgcnn": 1e4, "chgnet": 1e4}
DEFAULT_MAX_ABS_WEIGHT = 1e4


def weight_bound(backbone: str) -> float:
    """The largest weight magnitude a module of ``backbone`` may hold."""
    try:
        from moma.backbones.registry import get_backbone

        declared = getattr(get_backbone(backbone), "max_abs_weight", None)
    except Exception:  # an unknown backbone is refused elsewhere, with its own message
        declared = None
    if isinstance(declared, int | float) and declared > 0:
        return float(declared)
    return MAX_ABS_WEIGHT.get(backbone, DEFAULT_MAX_ABS_WEIGHT)
