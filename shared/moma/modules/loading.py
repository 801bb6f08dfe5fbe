"""From a stored module to a ready model: resolve an adapter module's base, load the weights.

A full module holds every tensor; an adapter module holds only its adapters and head, so it is
usable only on top of its base (the weights whose sha256 its card declares), found among the
backbone's own pretrained weights or the full modules in nearby folders. The hub holds a
module's bytes rather than a folder; :func:`model_from_state` is the same construction from
tensors in memory, and :func:`model_from_module` calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from torch import Tensor

from moma.backbones.adapters import adapter_state_keys, insert_adapters
from moma.backbones.base import Backbone, BackboneModel
from moma.errors import ModuleFormatError
from moma.modules.card import ModuleCard
from moma.modules.store import LoadedModule, list_modules, load_module


def find_base(backbone: Backbone, base_sha256: str,
              search: Iterable[Path] = ()) -> dict[str, Tensor]:
    """The full weights with sha256 ``base_sha256``: the backbone's own, or a module found in
    ``search`` folders whose id is that sha256."""
    pretrained = backbone.pretrained_base()
    if pretrained is not None and pretrained[1] == base_sha256:
        return pretrained[0]
    for folder in search:
        if not Path(folder).is_dir():
            continue
        for path, card in list_modules(Path(folder)):
            if card.module_id == base_sha256 and card.kind == "full":
                return load_module(path).state
    raise ModuleFormatError(
        f"the base weights {base_sha256[:12]}… of this adapter module were not found; put the "
        "base module beside it or pass its folder with --base-dir"
    )


def model_from_state(backbone: Backbone, card: ModuleCard, state: dict[str, Tensor],
                     base_state: Callable[[str], dict[str, Tensor]], *,
                     where: str = "") -> BackboneModel:
    """A ready model (eval mode) of a full or adapter module given as tensors in memory;
    ``base_state(sha256)`` gives an adapter module's base weights. ``where`` names the
    module in errors (its folder, when it has one)."""
    prefix = f"{where}: " if where else ""
    model = backbone.build()
    if card.kind == "full":
        model.load_state_dict(state, strict=True)
    elif card.kind == "adapter":
        model.load_state_dict(base_state(card.base_sha256), strict=True)
        insert_adapters(model)
        missing = set(adapter_state_keys(model)) - set(state)
        if missing:
            raise ModuleFormatError(f"{prefix}adapter module lacks {sorted(missing)[:3]}")
        model.load_state_dict({**model.state_dict(), **state}, strict=True)
    else:
        raise ModuleFormatError(f"{prefix}unknown module kind {card.kind!r}")
    model.eval()
    return model


def model_from_module(backbone: Backbone, module: LoadedModule,
                      search: Iterable[Path] = ()) -> BackboneModel:
    """A ready model (eval mode) for a stored full or adapter module; an adapter's base is
    looked up beside the module, then in ``search``."""
    folders = [module.path.parent, *search]
    return model_from_state(backbone, module.card, module.state,
                            lambda sha: find_base(backbone, sha, folders),
                            where=str(module.path))
