"""A dataset made ready for a backbone: its graphs (cached), its rejections applied, its split.

Every workflow that trains or composes starts here (``moma-client train``, ``compose``, the
federated lab, the benchmarks), so they all featurize, reject and split the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moma.backbones.base import Backbone, Graph
from moma.data.records import Dataset, drop_records, raise_for_rejections, random_split
from moma.errors import DataError
from moma.graphs.cache import featurize


@dataclass
class PreparedData:
    """A dataset with its graphs (aligned with ``dataset.records``) and the chosen split."""

    dataset: Dataset
    graphs: list[Graph]
    split_name: str
    split: dict[str, list[int]]
    featurize_seconds: float = 0.0
    cache_hit: bool = False

    def part(self, name: str) -> tuple[list[Graph], np.ndarray]:
        idx = self.split[name]
        targets = self.dataset.targets
        return [self.graphs[i] for i in idx], targets[idx]


def choose_split(dataset: Dataset, split_name: str, seed: int) -> dict[str, list[int]]:
    """The published split by name, or a seeded 70/15/15 one (``random`` or a dataset without
    splits); every part must be non-empty."""
    if split_name == "random" or (not dataset.splits and split_name == "seed0"):
        split = random_split(len(dataset), seed)
    else:
        split = dataset.split(split_name)
    for part in ("train", "val"):
        if not split.get(part):
            raise DataError(f"{dataset.name}: split {split_name!r} has no {part} records; "
                            "use a larger dataset or another split")
    return split


def prepare(dataset: Dataset, backbone: Backbone, split_name: str, *, seed: int = 0,
            skip_invalid: bool = False, cache: Path | bool = True,
            on_progress: Callable[[int, int], None] | None = None) -> PreparedData:
    """Featurize the dataset (cached), apply the featurizer's rejections, pick the split."""
    items = [(r.id, r.structure) for r in dataset.records]
    featurized = featurize(backbone.featurizer(), items, cache=cache, on_progress=on_progress)
    if featurized.rejected:
        if not skip_invalid:
            raise_for_rejections(
                dataset.report.source, featurized.rejected,
                f"fix or remove them, or pass --skip-invalid to use the "
                f"{len(items) - len(featurized.rejected)} valid records",
            )
        dataset = drop_records(dataset, featurized.rejected)
    split = choose_split(dataset, split_name, seed)
    return PreparedData(dataset, featurized.graphs, split_name, split,
                        featurized.seconds, featurized.cache_hit)
