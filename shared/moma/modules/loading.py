"""From a stored module to a ready model: resolve an adapter module's base, load the weights.

A full module holds every tensor; an adapter module holds only its adapters and head, so it is
usable only on top of its base (the weights whose sha256 its card declares), found among the
backbone's own pretrained weights or the full modules in nearby folders.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from torch import Tensor

from moma.backbones.adapters import adapter_state_keys, insert_adapters
from moma.backbones.base import Backbone, BackboneModel
from moma.errors import ModuleFormatError
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


def model_from_module(backbone: Backbone, module: LoadedModule,
                      search: Iterable[Path] = ()) -> BackboneModel:
    """A ready model (eval mode) for a stored full or adapter module."""
    model = backbone.build()
    if module.card.kind == "full":
        model.load_state_dict(module.state, strict=True)
    elif module.card.kind == "adapter":
        folders = [module.path.parent, *search]
        model.load_state_dict(find_base(backbone, module.card.base_sha256, folders), strict=True)
        insert_adapters(model)
        missing = set(adapter_state_keys(model)) - set(module.state)
        if missing:
            raise ModuleFormatError(f"{module.path}: adapter module lacks {sorted(missing)[:3]}")
        model.load_state_dict({**model.state_dict(), **module.state}, strict=True)
    else:
        raise ModuleFormatError(f"{module.path}: unknown module kind {module.card.kind!r}")
    model.eval()
    return model
