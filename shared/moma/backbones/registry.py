"""Backbones by name. Adding one is a new package plus one line in ``_FACTORIES`` and
``_PRETRAINED``."""

from __future__ import annotations

import threading
from collections.abc import Callable

from moma.backbones.base import Backbone
from moma.errors import MomaError


def _cgcnn() -> Backbone:
    from moma.backbones.cgcnn.backbone import CGCNNBackbone

    return CGCNNBackbone()


def _chgnet() -> Backbone:
    from moma.backbones.chgnet.backbone import CHGNetBackbone

    return CHGNetBackbone()


_FACTORIES: dict[str, Callable[[], Backbone]] = {"cgcnn": _cgcnn, "chgnet": _chgnet}
_PRETRAINED: dict[str, bool] = {"cgcnn": False, "chgnet": True}
"""Whether the backbone ships its own pretrained base (known without building it, so that
arguments can be checked before anything is loaded)."""
_CACHE: dict[str, Backbone] = {}
_LOCK = threading.RLock()
"""One construction at a time: a server builds backbones from a warm-up thread and from
request threads at once, and a backbone's first use imports large libraries."""


def backbone_names() -> list[str]:
    return sorted(_FACTORIES)


def check_backbone_name(name: str) -> str:
    """``name`` if a backbone is registered under it, else the error naming the choices."""
    if name not in _FACTORIES:
        raise MomaError(f"unknown backbone {name!r}; choose one of: {', '.join(backbone_names())}")
    return name


def has_pretrained_base(name: str) -> bool:
    """Whether :meth:`Backbone.pretrained_base` of ``name`` returns weights (not None)."""
    return _PRETRAINED[check_backbone_name(name)]


def get_backbone(name: str) -> Backbone:
    """The backbone registered under ``name`` (one instance per process)."""
    check_backbone_name(name)
    with _LOCK:
        if name not in _CACHE:
            _CACHE[name] = _FACTORIES[name]()
        return _CACHE[name]
