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

from moma.amc.leakage import leaks
from moma.backbones.registry import get_backbone
from moma.data.records import Dataset
from moma.data_overlap.canonical import canonical_form
from moma.data_overlap.fingerprint import DataFingerprint, overlap
from moma.errors import MomaError
from moma.modules.card import ModuleCard
from moma.modules.loading import find_base
from moma.modules.store import LoadedModule, list_modules, load_module

OVERLAP_POLICIES = ("exclude", "flag")


@dataclass
class Screening:
    """Candidates kept, modules skipped (with reasons) and what could not be checked."""

    modules: list[LoadedModule]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    flagged: list[dict[str, Any]] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    def report_json(self) -> dict[str, Any]:
        """The report's entries: skipped (with reasons), flagged, unchecked for overlap."""
        return {"skipped": self.skipped, "overlap_flagged": self.flagged,
                "overlap_unchecked": self.unchecked}


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
                      exclude_task: str | None = None, exclude_tasks: Sequence[str] = (),
                      base_dirs: Sequence[Path] = (),
                      given: Sequence[LoadedModule] = ()) -> Screening:
    """Load the usable candidates below ``folders`` (plus ``given`` ones); every other module
    gets a reason. The data-overlap check follows, once the split is known
    (:func:`screen_overlap`)."""
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
        why = _static_reason(card, backbone, kind, [exclude_task, *exclude_tasks])
        if why is not None:
            result.skipped.append(_entry(card, path, *why))
            continue
        if kind == "adapter" and not _base_at_hand(card, bases, [*folders, *base_dirs]):
            result.skipped.append(_entry(
                card, path, "other base",
                f"its base weights {card.base_sha256[:12]}… are not in the candidate folders "
                "or the backbone (pass the folder holding them with --modules)"))
            continue
        result.modules.append(load_module(path))
    result.modules += [m for m in given if m.module_id not in seen]
    _require_some(result, folders, backbone, kind)
    return result


def screen_overlap(screening: Screening, held_out_keys: Sequence[str],
                   policy: str = "exclude") -> Screening:
    """Test every candidate's published fingerprint against the owner's held-out structures;
    overlapping ones are excluded (or kept and flagged), unpublished ones named as unchecked."""
    if policy not in OVERLAP_POLICIES:
        raise MomaError(f"unknown overlap policy {policy!r}; choose "
                        + " or ".join(OVERLAP_POLICIES))
    kept: list[LoadedModule] = []
    for module in screening.modules:
        card = module.card
        verdict = _overlap_reason(card, held_out_keys)
        if verdict is not None:
            entry = _entry(card, module.path, *verdict)
            if policy == "exclude" or verdict[0] != "overlapping data":
                screening.skipped.append(entry)
                continue
            screening.flagged.append(entry)
        elif held_out_keys and "data_fingerprint" not in card.extra:
            screening.unchecked.append(card.name)
        kept.append(module)
    screening.modules = kept
    _require_some(screening, [], "", "")
    return screening


def _require_some(result: Screening, folders: Sequence[Path], backbone: str, kind: str) -> None:
    if result.modules:
        return
    reasons = "; ".join(f"{e['name']}: {e['reason']}" for e in result.skipped[:5])
    where = f" in {', '.join(map(str, folders))}" if folders else ""
    raise MomaError(
        f"no usable {kind + ' ' if kind else ''}{backbone + ' ' if backbone else ''}modules"
        f"{where}" + (f" ({reasons})" if reasons else "")
        + "; train or import some first (moma-client train / modules import-moe18)")


def _static_reason(card: ModuleCard, backbone: str, kind: str,
                   excluded: Sequence[str | None]) -> tuple[str, str] | None:
    if card.backbone != backbone:
        return "other backbone", (f"a {card.backbone} module; this compose uses {backbone} "
                                  f"(pass --backbone {card.backbone} to use it)")
    if card.kind != kind:
        return "other kind", (f"an {card.kind} module; this compose uses --kind {kind}"
                              if card.kind == "adapter" else
                              f"a {card.kind} module; this compose uses --kind {kind}")
    if leaks(card.task, excluded):
        return "same task", (f"trained on {card.task}, the task being composed (or one held "
                             "out): its labels would leak into the selection")
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
