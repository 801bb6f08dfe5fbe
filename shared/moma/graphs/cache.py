"""Graphs computed once per (dataset content, featurizer config) and kept on disk.

AMC encodes the same training set with every module of a backbone, and training revisits it
every epoch: the neighbour search is the expensive part, so it runs once. The cache is a
safetensors file (never a pickle): every graph key is stored as one array concatenated over
the structures along the first axis, with the per-structure lengths beside it. Records the
featurizer refused are cached too, so a second run reports the same rejections.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pymatgen.core import Structure
from safetensors.numpy import load_file, save

from moma.atomic_io import write_bytes
from moma.backbones.base import Featurizer, Graph
from moma.data.records import Rejection, structure_fingerprint
from moma.errors import DataError
from moma.paths import cache_dir

LENGTH_PREFIX = "__len__."


@dataclass
class FeaturizedSet:
    """Graphs of the structures that featurized, in input order, and the ones that did not."""

    ids: list[str]
    graphs: list[Graph]
    rejected: list[Rejection] = field(default_factory=list)
    cache_hit: bool = False
    seconds: float = 0.0
    cache_file: Path | None = None

    def graph_of(self) -> dict[str, Graph]:
        return dict(zip(self.ids, self.graphs, strict=True))


def cache_key(items: Sequence[tuple[str, Structure]], config: dict[str, object]) -> str:
    """sha256 of the structures (ids, lattices, species, coordinates) and the featurizer config."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for record_id, structure in items:
        digest.update(structure_fingerprint(record_id, structure))
    return digest.hexdigest()


def featurize(
    featurizer: Featurizer,
    items: Sequence[tuple[str, Structure]],
    *,
    cache: Path | bool | None = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> FeaturizedSet:
    """Featurize ``(id, structure)`` pairs, reading and writing the disk cache.

    ``cache=True`` uses ``$MOMA_CACHE/graphs``; a path uses that folder; ``False`` disables it.
    Structures the featurizer refuses (:class:`DataError`) are returned in ``rejected`` with the
    reason; the caller decides whether that is fatal.
    """
    start = time.perf_counter()
    folder: Path | None
    if cache is True:
        folder = cache_dir() / "graphs"
    elif cache is False or cache is None:
        folder = None
    else:
        folder = Path(cache)
    path: Path | None = None
    if folder is not None:
        path = folder / featurizer.name / f"{cache_key(items, featurizer.config())}.safetensors"
        if path.is_file():
            result = _read(path)
            if result is not None:
                result.seconds = time.perf_counter() - start
                if on_progress is not None:  # a progress display counts cached graphs too
                    on_progress(len(items), len(items))
                return result
    ids: list[str] = []
    graphs: list[Graph] = []
    rejected: list[Rejection] = []
    for n, (record_id, structure) in enumerate(items, start=1):
        try:
            graphs.append(featurizer.featurize(structure, record_id))
            ids.append(record_id)
        except DataError as exc:
            rejected.append(Rejection(record_id, str(exc)))
        if on_progress is not None:
            on_progress(n, len(items))
    result = FeaturizedSet(ids, graphs, rejected, cache_hit=False, cache_file=path)
    if path is not None:
        _write(path, result)
    result.seconds = time.perf_counter() - start
    return result


def _write(path: Path, result: FeaturizedSet) -> None:
    arrays: dict[str, np.ndarray] = {}
    if result.graphs:
        for key in result.graphs[0]:
            parts = [np.ascontiguousarray(g[key]) for g in result.graphs]
            arrays[key] = np.concatenate([_rows(p) for p in parts], axis=0)
            arrays[LENGTH_PREFIX + key] = np.array(
                [p.shape[0] if p.ndim else -1 for p in parts], dtype=np.int64)
            arrays["__shape__." + key] = np.array(parts[0].shape[1:] if parts[0].ndim else [],
                                                  dtype=np.int64)
    metadata = {
        "ids": json.dumps(result.ids),
        "rejected": json.dumps([[r.id, r.reason] for r in result.rejected]),
    }
    write_bytes(path, save(arrays, metadata=metadata))


def _rows(array: np.ndarray) -> np.ndarray:
    """The array as rows (first axis kept, the rest flattened); a scalar as one 1x1 row.

    Written with an explicit width so that empty arrays (a crystal without bonds) reshape too.
    """
    if array.ndim == 0:
        return array.reshape(1, 1)
    return array.reshape(array.shape[0], int(np.prod(array.shape[1:], dtype=np.int64)))


def _read(path: Path) -> FeaturizedSet | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
        arrays = load_file(str(path))
        ids = json.loads(metadata["ids"])
        rejected = [Rejection(i, reason) for i, reason in json.loads(metadata["rejected"])]
    except Exception:  # a damaged cache entry is recomputed, never trusted
        return None
    keys = [k for k in arrays if not k.startswith(("__len__.", "__shape__."))]
    graphs: list[Graph] = [{} for _ in ids]
    for key in keys:
        lengths = arrays[LENGTH_PREFIX + key]
        tail = tuple(int(x) for x in arrays["__shape__." + key])
        flat = arrays[key]
        offset = 0
        for graph, length in zip(graphs, lengths, strict=True):
            if length < 0:  # a scalar entry
                graph[key] = flat[offset, 0].copy()
                offset += 1
                continue
            graph[key] = flat[offset : offset + length].reshape((int(length), *tail))
            offset += int(length)
    return FeaturizedSet(ids, graphs, rejected, cache_hit=True, cache_file=path)
