"""From modules to models and back: initial weights, bases, and what a module stores.

A module's *base* is the sha256 of the weights it was trained from. Parameter averaging is only
meaningful between modules fine-tuned from the same base, and an adapter module is useless
without its base, so the base is recorded on every card and resolved when a module is used:

- CHGNet: the pretrained CHGNet weights shipped in the package (their sha256).
- CGCNN from ``--init MODULE``: that module's id (for an imported MoE-(18) module, itself).
- CGCNN from scratch: the seeded random initialization (a full module only: adapters on random
  weights would learn nothing a fresh model could not).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from moma.backbones.adapters import adapter_state_keys, insert_adapters
from moma.backbones.base import Backbone, BackboneModel
from moma.errors import MomaError
from moma.modules.store import LoadedModule, sha256_state

KINDS = ("full", "adapter")


@dataclass
class InitialModel:
    """A model ready to train, the sha256 of its starting weights, and where they came from."""

    model: BackboneModel
    base_sha256: str
    init: str


def pretrained_or_none(backbone: Backbone) -> tuple[dict[str, Tensor], str] | None:
    return backbone.pretrained_base()


def initial_model(backbone: Backbone, kind: str, init: LoadedModule | None,
                  seed: int) -> InitialModel:
    """The model a training run starts from (fresh head; adapters inserted for ``adapter``)."""
    if kind not in KINDS:
        raise MomaError(f"unknown module kind {kind!r}; choose full or adapter")
    torch.manual_seed(seed)
    model = backbone.build()
    if init is not None:
        if init.card.backbone != backbone.name:
            raise MomaError(
                f"--init module {init.card.name!r} is a {init.card.backbone} module, not "
                f"{backbone.name}; pass --backbone {init.card.backbone} or another --init"
            )
        if init.card.kind != "full":
            raise MomaError(
                f"--init module {init.card.name!r} is an {init.card.kind} module; start from a "
                "full module (or from the backbone's pretrained weights by omitting --init)"
            )
        model.load_state_dict(init.state, strict=True)
        base, origin = init.module_id, f"module {init.card.name} ({init.module_id[:12]})"
    else:
        pretrained = backbone.pretrained_base()
        if pretrained is not None:
            state, base = pretrained
            model.load_state_dict(state, strict=True)
            origin = f"pretrained {backbone.name} {backbone.version}"
        elif kind == "adapter":
            raise MomaError(
                f"adapter modules need a pretrained base, and {backbone.name} has none built in: "
                "pass --init MODULE (a full module, e.g. an imported MoE-(18) module)"
            )
        else:
            base, origin = sha256_state(model.state_dict()), f"random initialization (seed {seed})"
    model.reset_head()
    if kind == "adapter":
        insert_adapters(model)
    return InitialModel(model, base, origin)


def module_state(model: BackboneModel, kind: str) -> dict[str, Tensor]:
    """The tensors a module stores: everything (full) or adapters plus head (adapter)."""
    state = model.state_dict()
    keys = adapter_state_keys(model) if kind == "adapter" else list(state)
    return {k: state[k].detach().cpu().contiguous() for k in keys}
