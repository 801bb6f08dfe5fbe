"""What ``train`` and ``compose`` print about trust: guard, floor flags, skipped candidates,
intervals, domain and range, each in one plain sentence.

Kept apart from the commands so the sentences are the same wherever a result is shown. Every
string that came from a module card (names, tasks) is escaped before printing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from moma.safe_text import for_markup
from moma_client.cli.common import out

if TYPE_CHECKING:
    from moma.modules.card import ModuleCard


def print_train_result(card: ModuleCard, folder: Path) -> None:
    """A trained module's metrics beside the floor predictors, its flags and uncertainty."""
    from moma.uncertainty.floor import floor_flags

    m = card.metrics
    unit = card.unit
    out.print(f"  val MAE {m['val_mae']:.4g} {for_markup(unit)} (train-median predictor "
              f"{m.get('val_mae_train_median', float('nan')):.4g})")
    flags = floor_flags("validation", m["val_mae"],
                        {"train_median": m.get("val_mae_train_median", float("nan")),
                         "train_mean": m.get("val_mae_train_mean", float("nan"))}, unit)
    if "test_mae" in m:
        out.print(f"  test MAE {m['test_mae']:.4g} {for_markup(unit)} "
                  f"(train-mean predictor {m['test_mae_train_mean']:.4g}, "
                  f"train-median {m['test_mae_train_median']:.4g})")
        flags += floor_flags("test", m["test_mae"], {"train_median": m["test_mae_train_median"],
                                                     "train_mean": m["test_mae_train_mean"]},
                             unit)
    for flag in flags:
        out.print(f"  FLAG: {for_markup(flag)}")
    print_trust_summary(card.extra, m)
    out.print(f"  learning curve: {folder / 'learning_curve.png'}")


def print_trust_summary(extra: dict[str, Any], metrics: dict[str, float]) -> None:
    """Intervals, domain, range and fingerprint of a trained module (from its card)."""
    from moma.uncertainty.ranges import PhysicalRange

    unc = extra.get("uncertainty") or {}
    if unc.get("conformal"):
        out.print("  " + interval_sentence(unc["conformal"], metrics.get("test_coverage")))
    domain = unc.get("domain")
    if domain:
        out.print(f"  applicability domain: flagged above score {domain['threshold']:.4g} "
                  f"({domain['metric']})")
    rng = extra.get("physical_range")
    if rng:
        action = "clipped to it" if extra.get("range_policy", "clip") == "clip" else "flagged"
        described = for_markup(PhysicalRange.from_json(rng).describe())
        out.print(f"  physical range {described}: predictions outside are {action}")
    if "data_fingerprint" in extra:
        fp = extra["data_fingerprint"]
        out.print(f"  data fingerprint published: {fp['n_items']} structures, salted Bloom "
                  f"filter of {fp['m_bits']} bits (docs/hub.md says what it reveals)")


def print_compose_trust(report: dict[str, Any]) -> None:
    """Skipped candidates, notes, the guard's choice, floor flags and uncertainty."""
    for entry in report.get("skipped", []):
        out.print(f"  skipped {for_markup(str(entry['name']))} ({for_markup(str(entry['task']))}): "
                  f"{entry['reason']}: {for_markup(str(entry['detail']))}")
    for entry in report.get("overlap_flagged", []):
        out.print(f"  FLAG: {for_markup(str(entry['name']))} kept despite overlapping data: "
                  f"{for_markup(str(entry['detail']))}")
    if report.get("overlap_unchecked"):
        names = ", ".join(for_markup(str(n)) for n in report["overlap_unchecked"])
        out.print(f"  not checked for data overlap (no fingerprint published): {names}")
    for note in report.get("notes", []):
        out.print(f"  note: {note}")
    guard = report.get("guard") or {}
    if guard.get("ran"):
        out.print(for_markup(guard["sentence"]))
    elif guard.get("why_not"):
        out.print(f"guard: not run ({for_markup(guard['why_not'])})")
    unc = report.get("uncertainty") or {}
    if unc.get("conformal"):
        out.print(interval_sentence(unc["conformal"], unc.get("test_coverage"),
                                    report.get("unit", "")))
    if unc.get("range_sentence"):
        out.print(f"test: {for_markup(unc['range_sentence'])}")
    for flag in report.get("flags", []):
        out.print(f"FLAG: {for_markup(flag)}")


def interval_sentence(conformal: dict[str, Any], coverage: float | None, unit: str = "") -> str:
    """``90 % intervals: prediction ± w UNIT (from n validation residuals, c% of test inside)``."""
    measured = f", {coverage:.0%} of test structures inside" if coverage is not None else ""
    unit_s = f" {for_markup(unit)}" if unit else ""
    # held_out: calibrated on validation structures that chose nothing (absent in old cards)
    held_out = conformal.get("held_out")
    which = "" if held_out is None else (" held-out" if held_out else " reused")
    return (f"{conformal['coverage']:.0%} intervals: prediction ± {conformal['half_width']:.4g}"
            f"{unit_s} (split conformal, from {conformal['n_calibration']}{which} validation "
            f"residuals{measured})")
