"""The CHGNet 0.3.0 checkpoint shipped in the ``chgnet`` package, read without unpickling."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import chgnet
from torch import Tensor

from moma.backbones.torch_zip_reader import read_torch_zip
from moma.errors import ModuleFormatError

WEIGHTS_VERSION = "0.3.0"
CHECKPOINT = Path("pretrained") / "0.3.0" / "chgnet_0.3.0_e29f68s314m37.pth.tar"
COMPOSITION_PREFIX = "composition_model."


def checkpoint_path() -> Path:
    """The CHGNet 0.3.0 checkpoint inside the installed ``chgnet`` package."""
    return Path(chgnet.__file__).resolve().parent / CHECKPOINT


@functools.lru_cache(maxsize=4)
def read_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The checkpoint's model ``state_dict`` and ``model_args`` (read once per process).

    ``CHGNet.from_file`` reads ``checkpoint["model"]`` and calls ``CHGNet(**model_args)`` then
    ``load_state_dict(state_dict)``; the same two entries are returned here. Callers must not
    modify the tensors (they are shared by every call).
    """
    if not path.is_file():
        raise ModuleFormatError(
            f"CHGNet checkpoint {path} not found: reinstall chgnet==0.4.2, which ships it"
        )
    raw = read_torch_zip(path)
    model = raw.get("model") if isinstance(raw, dict) else None
    if not (isinstance(model, dict) and isinstance(model.get("state_dict"), dict)
            and isinstance(model.get("model_args"), dict)):
        raise ModuleFormatError(
            f"{path}: no model.state_dict / model.model_args entries; this is not a CHGNet "
            "checkpoint written by chgnet's Trainer"
        )
    return dict(model["state_dict"]), dict(model["model_args"])
