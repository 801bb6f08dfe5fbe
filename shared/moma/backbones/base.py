"""The contract every backbone fulfils.

A backbone is a named, versioned encoder ``structures -> per-crystal embedding`` plus the
featurizer that turns a structure into a graph. MoMa itself is backbone-agnostic: composition,
training and the hub only talk to these two classes, so adding a backbone means one new file
and one registry entry.

Graphs are plain ``dict[str, numpy.ndarray]``: no objects, so they can be cached in safetensors
(never pickled) and shared by every module that uses the same featurizer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from pymatgen.core import Structure
from torch import Tensor, nn

Graph = dict[str, np.ndarray]


class Featurizer(ABC):
    """Turns one structure into a :data:`Graph`. Deterministic, so graphs can be cached."""

    name: ClassVar[str]

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Every setting that changes the output (part of the graph cache key)."""

    @abstractmethod
    def featurize(self, structure: Structure, record_id: str) -> Graph:
        """The graph of one structure; raises :class:`moma.errors.DataError` naming the record."""


@dataclass(frozen=True)
class AdapterSite:
    """A place after a message-passing layer where an adapter is inserted.

    ``module`` is the dotted path of the layer inside the backbone model; its output (a tensor
    of per-atom features of width ``dim``, or a tuple whose first item is) passes through the
    adapter.
    """

    name: str
    module: str
    dim: int


class BackboneModel(nn.Module, ABC):
    """A backbone network with a scalar task head.

    ``forward`` returns the *standardized* prediction (one value per crystal); ``embed`` returns
    the per-crystal embedding that AMC feeds to its kNN proxy. The head is the part replaced by a
    fresh one when a module is reused for a new task.
    """

    embedding_dim: int
    head_prefixes: ClassVar[tuple[str, ...]]

    @abstractmethod
    def embed(self, batch: Any) -> Tensor:
        """Per-crystal embedding, shape ``(batch_size, embedding_dim)``."""

    @abstractmethod
    def predict_from_embedding(self, embedding: Tensor) -> Tensor:
        """The head: embedding ``(B, d)`` to standardized prediction ``(B,)``."""

    def forward(self, batch: Any) -> Tensor:
        return self.predict_from_embedding(self.embed(batch))

    @abstractmethod
    def reset_head(self, generator: torch.Generator | None = None) -> None:
        """Re-initialize the task head (a fresh head for a new task)."""

    @abstractmethod
    def adapter_sites(self) -> list[AdapterSite]:
        """Where adapters go: after every message-passing layer."""

    def is_head_key(self, key: str) -> bool:
        return any(key.startswith(prefix) for prefix in self.head_prefixes)


class Backbone(ABC):
    """Factory for a backbone's featurizer, batches and models."""

    name: ClassVar[str]
    version: ClassVar[str]

    @abstractmethod
    def featurizer(self) -> Featurizer:
        """The featurizer whose graphs :meth:`collate` understands."""

    @abstractmethod
    def collate(self, graphs: Sequence[Graph]) -> Any:
        """Batch graphs for :meth:`BackboneModel.embed`; the batch has ``.to(device)``."""

    @abstractmethod
    def build(self) -> BackboneModel:
        """A model with this backbone's architecture and untrained (random) weights."""

    def pretrained_base(self) -> tuple[dict[str, Tensor], str] | None:
        """The backbone's own pretrained weights and their sha256, if it ships any."""
        return None

    def describe(self) -> dict[str, Any]:
        """Name, version and featurizer config, for module cards."""
        return {"name": self.name, "version": self.version,
                "featurizer": self.featurizer().config()}
