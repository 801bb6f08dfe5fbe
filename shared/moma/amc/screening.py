"""Which candidate modules a compose may use, and why each other one was left out.

Nothing is dropped in silence: every module found in the candidate folders is either a
candidate or listed in ``skipped`` with its reason (another backbone, another kind, trained on
the same task, an adapter whose base is not at hand, a duplicate, or a data fingerprint that
matches the owner's validation or test structures). The list goes to the terminal and to
``report.json``.

The overlap check (:mod:`moma.data_overlap`) runs locally: the owner's structures are turned
into canonical forms here and tested against each candidate's published fingerprint; nothing
about them leaves the machine. Modules that publish no fingerprint cannot be checked and are
named in ``unchecked``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moma.amc.selection import _same_task
from moma.backbones.registry import get_backbone
from moma.data.records import Dataset
from moma.data_overlap.canonical import canonical_form
from moma.data_overlap.fingerprint import DataFingerprint, overlap
from moma.errors import MomaError
from moma.modules.card import ModuleCard
from moma.modules.store import LoadedModule, list_modules, load_module
from moma.training.modeling import find_base

OVERLAP_POLICIES = ("exclude", "flag")


@dataclass
class Screening:
    """Candidates kept, modules skipped (with reasons) and what could not be checked."""

    modules: list[LoadedModule]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    flagged: list[dict[str, Any]] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)


def owner_keys(dataset: Dataset, split: dict[str, list[int]],
               parts: Sequence[str] = ("val", "test")) -> list[str]:
    """Canonical forms of the owner's held-out structures (computed locally, never sent)."""
    return [canonical_form(dataset.records[i].structure) for part in parts
            for i in split.get(part, [])]


def _entry(card: ModuleCard, path: Path, reason: str, why: str) -> dict[str, Any]:
    return {"name": card.name, "module_id": card.module_id, "task": card.task,
            "backbone": card.backbone, "kind": card.kind, "path": str(path),
            "reason": reason, "detail": why}


def screen_candidates(folders: Sequence[Path], *, backbone: str, kind: str,
                      exclude_task: str | None = None, held_out_keys: Sequence[str] = (),
                      overlap_policy: str = "exclude",
                      base_dirs: Sequence[Path] = ()) -> Screening:
    """Load the usable candidates below ``folders``; every other module gets a reason."""
    if overlap_policy not in OVERLAP_POLICIES:
        raise MomaError(f"unknown overlap policy {overlap_policy!r}; choose "
                        + " or ".join(OVERLAP_POLICIES))
    result = Screening([])
    seen: dict[str, str] = {}
    bases: dict[str, bool] = {}
    listed = [(path, card) for folder in folders for path, card in list_modules(Path(folder))]
    for path, card in sorted(listed, key=lambda pc: (pc[1].name, str(pc[0]))):
        key = card.module_id or str(path)
        if key in seen:
            result.skipped.append(_entry(card, path, "duplicate",
                                         f"the same module as {seen[key]}"))
            continue
        seen[key] = str(path)
        why = _static_reason(card, backbone, kind, exclude_task)
        if why is not None:
            result.skipped.append(_entry(card, path, *why))
            continue
        if kind == "adapter" and not _base_at_hand(card, bases, [*folders, *base_dirs]):
            result.skipped.append(_entry(
                card, path, "other base",
                f"its base weights {card.base_sha256[:12]}… are not in the candidate folders "
                "or the backbone (pass the folder holding them with --modules)"))
            continue
        verdict = _overlap_reason(card, held_out_keys)
        if verdict is not None:
            entry = _entry(card, path, *verdict)
            if overlap_policy == "exclude" or verdict[0] != "overlapping data":
                result.skipped.append(entry)
                continue
            result.flagged.append(entry)
        elif held_out_keys and "data_fingerprint" not in card.extra:
            result.unchecked.append(card.name)
        result.modules.append(load_module(path))
    if not result.modules:
        listed_reasons = "; ".join(f"{e['name']}: {e['reason']}" for e in result.skipped[:5])
        raise MomaError(
            f"no usable {kind} {backbone} modules in {', '.join(map(str, folders))}"
            + (f" ({listed_reasons})" if listed_reasons else "")
            + "; train or import some first (moma-client train / modules import-moe18)")
    return result


def _static_reason(card: ModuleCard, backbone: str, kind: str,
                   exclude_task: str | None) -> tuple[str, str] | None:
    if card.backbone != backbone:
        return "other backbone", (f"a {card.backbone} module; this compose uses {backbone} "
                                  f"(pass --backbone {card.backbone} to use it)")
    if card.kind != kind:
        return "other kind", (f"an {card.kind} module; this compose uses --kind {kind}"
                              if card.kind == "adapter" else
                              f"a {card.kind} module; this compose uses --kind {kind}")
    if exclude_task and _same_task(card.task, exclude_task):
        return "same task", (f"trained on {card.task}, the task being composed: its labels "
                             "would leak into the selection")
    return None


def _base_at_hand(card: ModuleCard, cache: dict[str, bool], folders: Sequence[Path]) -> bool:
    if card.base_sha256 not in cache:
        try:
            find_base(get_backbone(card.backbone), card.base_sha256, folders)
            cache[card.base_sha256] = True
        except MomaError:
            cache[card.base_sha256] = False
    return cache[card.base_sha256]


def _overlap_reason(card: ModuleCard, keys: Sequence[str]) -> tuple[str, str] | None:
    raw = card.extra.get("data_fingerprint")
    if raw is None or not keys:
        return None
    try:
        fingerprint = DataFingerprint.from_json(raw, source=f"module {card.name}")
    except MomaError as exc:
        return "unreadable fingerprint", f"{exc}"
    verdict = overlap(fingerprint, keys)
    if verdict.overlapping:
        return "overlapping data", verdict.sentence()
    return None
