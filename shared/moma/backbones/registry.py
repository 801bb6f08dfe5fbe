"""Backbones by name. Adding one is a new file plus one line in ``_FACTORIES``."""

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
_CACHE: dict[str, Backbone] = {}
_LOCK = threading.RLock()
"""One construction at a time: a server builds backbones from a warm-up thread and from
request threads at once, and a backbone's first use imports large libraries."""


def backbone_names() -> list[str]:
    return sorted(_FACTORIES)


def get_backbone(name: str) -> Backbone:
    """The backbone registered under ``name`` (one instance per process)."""
    if name not in _FACTORIES:
        raise MomaError(f"unknown backbone {name!r}; choose one of: {', '.join(backbone_names())}")
    with _LOCK:
        if name not in _CACHE:
            _CACHE[name] = _FACTORIES[name]()
        return _CACHE[name]
