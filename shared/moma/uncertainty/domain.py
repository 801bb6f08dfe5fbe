"""Applicability domain: is a structure like the ones the model was trained on?

The score of a structure is the mean cosine distance of its embedding (the model's pooled
crystal embedding, the same representation AMC's kNN reads) to its ``k`` nearest training
embeddings. The threshold is the ``quantile`` (95 % by default) of the same score over the
validation structures, which the model did not train on: a structure scoring above it is
farther from the training data than 95 % of held-out structures of the task, so its
prediction is an extrapolation and is flagged. Cosine distance, as in the kNN proxy, because
the embeddings' norms vary with atom counts while their directions carry the chemistry.

The training embeddings are derived from the owner's private structures, so they live in a
file beside the model (``domain.safetensors``) that is never part of a contributed module; the
card stores the threshold, ``k`` and that file's sha256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
from numpy.typing import ArrayLike

from moma.atomic_io import write_bytes
from moma.errors import MomaError

DOMAIN_FILE = "domain.safetensors"
DEFAULT_QUANTILE = 0.95
MAX_DOMAIN_BYTES = 256 * 1024 * 1024
_BLOCK = 1024


def _unit_rows(x: ArrayLike) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"embeddings must be 2-D, got shape {arr.shape}")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.maximum(norms, 1e-12)


def knn_distance(reference: np.ndarray, queries: ArrayLike, k: int,
                 exclude_self: bool = False) -> np.ndarray:
    """Mean cosine distance of each query to its ``k`` nearest reference rows (row blocks, so
    memory stays O(block x n_reference))."""
    q = _unit_rows(queries)
    if q.shape[0] == 0:
        return np.zeros(0)
    k_eff = max(1, min(k, reference.shape[0] - (1 if exclude_self else 0)))
    out = np.empty(q.shape[0])
    for start in range(0, q.shape[0], _BLOCK):
        dist = 1.0 - q[start:start + _BLOCK] @ reference.T
        if exclude_self:
            rows = np.arange(dist.shape[0])
            dist[rows, start + rows] = np.inf
        nearest = np.partition(dist, k_eff - 1, axis=1)[:, :k_eff]
        out[start:start + _BLOCK] = np.clip(nearest.mean(axis=1), 0.0, 2.0)
    return out


@dataclass
class DomainModel:
    """Unit-normalized training embeddings, ``k`` and the flagging threshold."""

    reference: np.ndarray
    k: int
    threshold: float
    quantile: float

    def score(self, embeddings: ArrayLike) -> np.ndarray:
        return knn_distance(self.reference, embeddings, self.k)

    def outside(self, scores: ArrayLike) -> np.ndarray:
        return np.asarray(scores, dtype=np.float64) > self.threshold

    def card_json(self, sha256: str) -> dict[str, Any]:
        return {"k": self.k, "threshold": self.threshold, "quantile": self.quantile,
                "metric": "mean cosine distance to the k nearest training embeddings",
                "n_reference": int(self.reference.shape[0]),
                "dim": int(self.reference.shape[1]), "file": DOMAIN_FILE,
                "sha256": sha256}


def fit_domain(train_embeddings: ArrayLike, val_embeddings: ArrayLike, *, k: int = 5,
               quantile: float = DEFAULT_QUANTILE) -> DomainModel:
    """Reference = training embeddings; threshold = the ``quantile`` of validation scores."""
    reference = _unit_rows(train_embeddings)
    if reference.shape[0] == 0:
        raise MomaError("the applicability domain needs training structures")
    val_scores = knn_distance(reference, val_embeddings, k)
    if val_scores.size:
        threshold = float(np.quantile(val_scores, quantile))
    else:  # no validation structures: the training set's own leave-one-out scores
        threshold = float(np.quantile(knn_distance(reference, reference, k, True), quantile))
    return DomainModel(reference, k, threshold, quantile)


def save_domain(folder: Path, domain: DomainModel) -> dict[str, Any]:
    """Write the reference embeddings to ``folder/domain.safetensors``; the card's entry."""
    data = safetensors.numpy.save({"reference": np.ascontiguousarray(domain.reference)})
    write_bytes(Path(folder) / DOMAIN_FILE, data)
    return domain.card_json(hashlib.sha256(data).hexdigest())


def load_domain(folder: Path, entry: dict[str, Any]) -> DomainModel | None:
    """The domain model a card describes, or None when its file is absent (a module pulled from
    a hub carries no training embeddings). A file that does not match the card is an error."""
    path = Path(folder) / DOMAIN_FILE
    if not path.is_file():
        return None
    if path.stat().st_size > MAX_DOMAIN_BYTES:
        raise MomaError(f"{path}: over {MAX_DOMAIN_BYTES} bytes; compose or train the model again")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise MomaError(f"{path}: does not match the sha256 in the card; compose or train the "
                        "model again (or delete the file to predict without domain scores)")
    try:
        reference = safetensors.numpy.load(data)["reference"]
        domain = DomainModel(reference.astype(np.float32), int(entry["k"]),
                             float(entry["threshold"]), float(entry["quantile"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise MomaError(f"{path}: not a valid domain file ({exc}); compose or train "
                        "again") from None
    if reference.ndim != 2 or not np.all(np.isfinite(reference)):
        raise MomaError(f"{path}: reference embeddings are not a finite 2-D array")
    return domain
