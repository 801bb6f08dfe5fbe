"""The tensors that travel between coordinator and labs: which ones, and in which dtype."""

from __future__ import annotations

import torch
from torch import Tensor

from moma.backbones.base import Backbone
from moma.modules.store import module_schema


def wire_schema(backbone: Backbone, kind: str) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the tensors that travel: the module's tensors except BatchNorm's
    ``num_batches_tracked`` counters (not trained, meaningless to average, and 0-d)."""
    return {k: shape for k, (shape, _) in module_schema(backbone, kind).items()
            if not k.endswith("num_batches_tracked")}


def to_wire(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Float32 copies of the tensors that travel (see :func:`wire_schema`); FedAvg and Flower's
    DP clipping scale arrays in place, so everything on the wire is floating point."""
    return {k: v.detach().to(torch.float32).contiguous() for k, v in state.items()
            if not k.endswith("num_batches_tracked")}
