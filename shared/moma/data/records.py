"""The in-memory form of a dataset: records, published splits and a validation report.

Every reader returns a :class:`Dataset`. Split indices always refer to positions in
``Dataset.records`` (after validation removed anything), so downstream code never has to know
which records were rejected; the :class:`ValidationReport` keeps that story.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Structure

from moma.errors import DataError

SPLIT_PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class Record:
    """One crystal: an identifier, its structure and (for training data) a scalar target."""

    id: str
    structure: Structure
    target: float | None = None


@dataclass(frozen=True)
class Rejection:
    """A record that validation refused, with the reason in words."""

    id: str
    reason: str


@dataclass
class ValidationReport:
    """What a reader saw: how many records it read, used and rejected, and why."""

    source: str
    n_read: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def n_used(self) -> int:
        return self.n_read - len(self.rejected)

    def summary(self) -> str:
        text = f"{self.source}: {self.n_used} of {self.n_read} records used"
        if self.rejected:
            text += f", {len(self.rejected)} rejected"
        return text

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "n_read": self.n_read,
            "n_used": self.n_used,
            "rejected": [{"id": r.id, "reason": r.reason} for r in self.rejected],
        }


@dataclass
class Dataset:
    """A validated dataset: records, named splits of indices into ``records``, and provenance."""

    name: str
    target: str
    unit: str
    records: list[Record]
    splits: dict[str, dict[str, list[int]]]
    report: ValidationReport
    source: str = ""

    def __len__(self) -> int:
        return len(self.records)

    @property
    def targets(self) -> np.ndarray:
        """Targets as float64; raises if any record has none."""
        values = [r.target for r in self.records]
        if any(v is None for v in values):
            raise DataError(f"{self.name}: some records have no target; training data needs one")
        return np.asarray(values, dtype=np.float64)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def split(self, name: str) -> dict[str, list[int]]:
        """The named split (e.g. ``seed0``) as ``{"train": [...], "val": [...], "test": [...]}``."""
        if name not in self.splits:
            known = ", ".join(sorted(self.splits)) or "none"
            raise DataError(
                f"{self.name}: no split named {name!r} (known: {known}); pass one of those with "
                "--split, or 'random' for a seeded 70/15/15 split"
            )
        return self.splits[name]

    def subset(self, indices: list[int], name: str | None = None) -> Dataset:
        """A dataset of the given records (no splits)."""
        report = ValidationReport(source=self.report.source, n_read=len(indices))
        return Dataset(
            name=name or self.name,
            target=self.target,
            unit=self.unit,
            records=[self.records[i] for i in indices],
            splits={},
            report=report,
            source=self.source,
        )

    def content_hash(self) -> str:
        """sha256 over ids and structures (not targets): the key of the graph cache."""
        digest = hashlib.sha256()
        for record in self.records:
            digest.update(structure_fingerprint(record.id, record.structure))
        return digest.hexdigest()


def structure_fingerprint(record_id: str, structure: Structure) -> bytes:
    """Bytes that change whenever the id, lattice, species or coordinates change."""
    payload = {
        "id": record_id,
        "lattice": np.round(structure.lattice.matrix, 8).tolist(),
        "species": [site.species_string for site in structure],
        "frac": np.round(structure.frac_coords, 8).tolist(),
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def random_split(n: int, seed: int,
                 fractions: tuple[float, float] = (0.7, 0.15)) -> dict[str, list[int]]:
    """A seeded 70/15/15 split of ``n`` records, for data that ships without splits."""
    order = np.random.default_rng(seed).permutation(n).tolist()
    n_train = round(fractions[0] * n)
    n_val = round(fractions[1] * n)
    return {
        "train": sorted(order[:n_train]),
        "val": sorted(order[n_train : n_train + n_val]),
        "test": sorted(order[n_train + n_val :]),
    }


def drop_records(dataset: Dataset, rejections: list[Rejection]) -> Dataset:
    """The dataset without the rejected records, splits remapped, rejections added to the report.

    Split entries that pointed at a dropped record disappear from their split; everything else
    keeps its place, so published splits stay comparable.
    """
    if not rejections:
        return dataset
    drop = {r.id for r in rejections}
    keep = [i for i, rec in enumerate(dataset.records) if rec.id not in drop]
    new_index = {old: new for new, old in enumerate(keep)}
    splits = {
        name: {part: [new_index[i] for i in idx if i in new_index] for part, idx in parts.items()}
        for name, parts in dataset.splits.items()
    }
    report = ValidationReport(
        source=dataset.report.source,
        n_read=dataset.report.n_read,
        rejected=[*dataset.report.rejected, *rejections],
    )
    return Dataset(
        name=dataset.name,
        target=dataset.target,
        unit=dataset.unit,
        records=[dataset.records[i] for i in keep],
        splits=splits,
        report=report,
        source=dataset.source,
    )


def raise_for_rejections(where: str, rejections: list[Rejection], fix: str) -> None:
    """Fail with one line naming the first rejected records, their reasons and the fix."""
    if not rejections:
        return
    shown = "; ".join(f"record {r.id!r}: {r.reason}" for r in rejections[:3])
    more = f" (and {len(rejections) - 3} more)" if len(rejections) > 3 else ""
    raise DataError(f"{where}: {len(rejections)} invalid record(s): {shown}{more}. {fix}")
