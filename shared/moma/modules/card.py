"""The module card: everything a person or the hub needs to know about a module's weights.

A card travels as ``card.json`` beside ``module.safetensors``, inside signed manifests and in
hub listings, so it is plain JSON with a ``format`` tag (``moma-module-card/1``) that lets it
evolve. :meth:`ModuleCard.from_json` is strict: a card is untrusted input, so every field is
type- and value-checked and unknown fields are refused (custom data belongs in ``extra``); the
error names the file and the field.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeGuard

import numpy as np
from numpy.typing import ArrayLike

from moma.backbones.registry import backbone_names
from moma.errors import ModuleFormatError

CARD_FORMAT = "moma-module-card/1"
MODULE_KINDS = ("full", "adapter")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def utc_now_iso() -> str:
    """The current time as ISO-8601 UTC (``2025-01-31T12:00:00+00:00``), for ``created``."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def is_sha256(value: object) -> bool:
    """True for a lowercase 64-digit hex string (how every sha256 appears in MoMa)."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def is_finite_number(value: object) -> TypeGuard[int | float]:
    """True for a finite int or float (bools excluded), as JSON numbers in cards must be."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


@dataclass
class TargetNormalizer:
    """Target standardization: models predict ``(y - mean) / std``; std is finite and > 0."""

    mean: float
    std: float

    def normalize(self, y: ArrayLike) -> np.ndarray:
        return (np.asarray(y, dtype=np.float64) - self.mean) / self.std

    def denormalize(self, z: ArrayLike) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) * self.std + self.mean

    def to_json(self) -> dict[str, float]:
        return {"mean": float(self.mean), "std": float(self.std)}


class _Reader:
    """Typed access to the fields of a JSON object; each failure names the source and field."""

    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.data = data
        self.source = source

    def fail(self, name: str, problem: str) -> ModuleFormatError:
        return ModuleFormatError(f"{self.source}: field {name!r} {problem}; fix the card "
                                 f"(format {CARD_FORMAT}) or re-export the module")

    def get(self, name: str, default: Any = ..., *, nullable: bool = False) -> Any:
        if name not in self.data:
            if default is not ...:
                return default
            raise self.fail(name, "is missing")
        value = self.data[name]
        if value is None and not nullable:
            raise self.fail(name, "is null")
        return value

    def text(self, name: str, default: Any = ..., *, empty: bool = False,
             nullable: bool = False) -> Any:
        value = self.get(name, default, nullable=nullable)
        if value is None and (nullable or default is None):
            return None
        if not isinstance(value, str) or (not empty and not value.strip()):
            raise self.fail(name, f"must be a {'' if empty else 'non-empty '}string, got {value!r}")
        return value

    def sha(self, name: str, *, empty: bool = False) -> str:
        value = self.get(name, "" if empty else ...)
        if not (is_sha256(value) or (empty and value == "")):
            raise self.fail(name, f"must be a sha256 (64 lowercase hex digits), got {value!r}")
        return str(value)

    def number(self, name: str, value: Any) -> float:
        if not is_finite_number(value):
            raise self.fail(name, f"must be a finite number, got {value!r}")
        return float(value)

    def obj(self, name: str, default: Any = ...) -> dict[str, Any]:
        value = self.get(name, default)
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise self.fail(name, f"must be a JSON object, got {type(value).__name__}")
        return copy.deepcopy(dict(value))

    def objects(self, name: str) -> list[dict[str, Any]]:
        value = self.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(name, "must be a list of JSON objects")
        return copy.deepcopy(list(value))


@dataclass
class ModuleCard:
    """Metadata of one module (see DESIGN.md section 4, "Module file")."""

    name: str
    backbone: str
    backbone_version: str
    base_sha256: str
    kind: str
    task: str
    property: str
    unit: str
    normalizer: TargetNormalizer
    dataset_size: dict[str, int]
    split: str | None
    metrics: dict[str, float]
    hyperparameters: dict[str, Any]
    featurizer: dict[str, Any]
    software_version: str
    created: str
    module_id: str = ""
    contributor_key_id: str | None = None
    participants: list[dict[str, Any]] = field(default_factory=list)
    parents: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[tuple[str, ...]] = (
        "name", "backbone", "backbone_version", "base_sha256", "kind", "task", "property", "unit",
        "normalizer", "dataset_size", "split", "metrics", "hyperparameters", "featurizer",
        "software_version", "created", "module_id", "contributor_key_id", "participants",
        "parents", "extra",
    )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (a deep copy), with the ``format`` tag."""
        out: dict[str, Any] = {"format": CARD_FORMAT}
        for name in self.FIELDS:
            value = getattr(self, name)
            out[name] = value.to_json() if name == "normalizer" else copy.deepcopy(value)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "card.json") -> ModuleCard:
        """Validate and build a card; :class:`ModuleFormatError` names the bad or missing field."""
        if not isinstance(data, dict):
            raise ModuleFormatError(f"{source}: a module card must be a JSON object, got "
                                    f"{type(data).__name__}; re-export the module")
        r = _Reader(data, source)
        fmt = r.get("format")
        if fmt != CARD_FORMAT:
            raise ModuleFormatError(f"{source}: card format {fmt!r} is not supported (this MoMa "
                                    f"reads {CARD_FORMAT}); upgrade moma or re-export the module")
        unknown = sorted(set(data) - set(cls.FIELDS) - {"format"})
        if unknown:
            raise r.fail(unknown[0], "is not a card field (put custom data under 'extra')")
        backbone = r.text("backbone")
        if backbone not in backbone_names():
            raise r.fail("backbone", f"is {backbone!r}, not one of {', '.join(backbone_names())}")
        kind = r.text("kind")
        if kind not in MODULE_KINDS:
            raise r.fail("kind", f"is {kind!r}, not one of {', '.join(MODULE_KINDS)}")
        return cls(
            name=r.text("name"),
            backbone=backbone,
            backbone_version=r.text("backbone_version"),
            base_sha256=r.sha("base_sha256"),
            kind=kind,
            task=r.text("task"),
            property=r.text("property"),
            unit=r.text("unit", empty=True),
            normalizer=_normalizer(r),
            dataset_size=_sizes(r),
            split=r.text("split", nullable=True),
            metrics={k: r.number(f"metrics.{k}", v) for k, v in r.obj("metrics").items()},
            hyperparameters=r.obj("hyperparameters"),
            featurizer=r.obj("featurizer"),
            software_version=r.text("software_version"),
            created=_created(r),
            module_id=r.sha("module_id", empty=True),
            contributor_key_id=r.text("contributor_key_id", None, nullable=True),
            participants=r.objects("participants"),
            parents=r.objects("parents"),
            extra=r.obj("extra", {}),
        )


def _normalizer(r: _Reader) -> TargetNormalizer:
    raw = r.obj("normalizer")
    if set(raw) != {"mean", "std"}:
        raise r.fail("normalizer", f"must have exactly 'mean' and 'std', got {sorted(raw)}")
    mean = r.number("normalizer.mean", raw["mean"])
    std = r.number("normalizer.std", raw["std"])
    if std <= 0:
        raise r.fail("normalizer.std", f"must be > 0, got {std!r}")
    return TargetNormalizer(mean, std)


def _sizes(r: _Reader) -> dict[str, int]:
    sizes = r.obj("dataset_size")
    for key, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise r.fail(f"dataset_size.{key}", f"must be a non-negative integer, got {value!r}")
    return sizes


def _created(r: _Reader) -> str:
    text = r.text("created")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise r.fail("created", f"is {text!r}, not an ISO-8601 time") from None
    if when.tzinfo is None:
        raise r.fail("created", f"is {text!r} without a time zone (use UTC, e.g. '+00:00')")
    return str(text)


__all__ = ["CARD_FORMAT", "MODULE_KINDS", "ModuleCard", "TargetNormalizer", "is_finite_number",
           "is_sha256", "utc_now_iso"]
