"""A model from a module's tensors in memory (the hub has bytes, not a module folder)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from moma.backbones.adapters import adapter_state_keys, insert_adapters
from moma.backbones.base import Backbone, BackboneModel
from moma.errors import ModuleFormatError
from moma.modules.card import ModuleCard


def model_from_state(backbone: Backbone, card: ModuleCard, state: dict[str, Tensor],
                     base_state: Callable[[str], dict[str, Tensor]]) -> BackboneModel:
    """Eval-mode model of a full or adapter module; ``base_state(sha)`` gives an adapter's
    base weights (the same construction as :func:`moma.training.modeling.model_from_module`)."""
    model = backbone.build()
    if card.kind == "full":
        model.load_state_dict(state, strict=True)
    elif card.kind == "adapter":
        model.load_state_dict(base_state(card.base_sha256), strict=True)
        insert_adapters(model)
        missing = set(adapter_state_keys(model)) - set(state)
        if missing:
            raise ModuleFormatError(f"adapter module lacks {sorted(missing)[:3]}")
        model.load_state_dict({**model.state_dict(), **state}, strict=True)
    else:
        raise ModuleFormatError(f"unknown module kind {card.kind!r}")
    model.eval()
    return model
