"""A model from a module's tensors in memory: kept as a name for existing imports; the one
construction lives in :mod:`moma.modules.loading` beside :func:`model_from_module`."""

from moma.modules.loading import model_from_state

__all__ = ["model_from_state"]
