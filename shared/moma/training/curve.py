"""The learning curve kept beside every trained module: per-epoch JSON and a PNG.

Why keep it: the card says where early stopping ended, but only the curve shows whether the
model was still improving (more epochs would help), overfitting early (less capacity or more
data) or never learning (the validation MAE flat at the median predictor's). Losses are on
standardized targets as trained; the validation MAE is also given in target units (the MAE of
standardized predictions times the target standard deviation), the figure people compare with
the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moma.atomic_io import write_json
from moma.training.loop import EpochStats

CURVE_JSON = "learning_curve.json"
CURVE_PNG = "learning_curve.png"


def curve_json(history: Sequence[EpochStats], target_std: float, unit: str,
               best_epoch: int, label: str = "") -> dict[str, Any]:
    return {
        "format": "moma-learning-curve/1", "label": label, "unit": unit,
        "best_epoch": best_epoch,
        "epochs": [{"epoch": s.epoch, "train_loss_standardized": s.train_loss,
                    "val_mae_standardized": s.val_mae, "val_mae": s.val_mae * target_std,
                    "seconds": s.seconds} for s in history],
    }


def write_learning_curve(folder: Path, histories: Sequence[Sequence[EpochStats]],
                         target_std: float, unit: str, *, median_val_mae: float | None = None,
                         labels: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Write ``learning_curve.json`` and ``.png`` for one or more runs (guard, ensemble parts).

    ``median_val_mae`` (target units) draws the train-median predictor's validation MAE, the
    line a useful model must stay below.
    """
    curves = []
    for i, history in enumerate(histories):
        best = min(history, key=lambda s: s.val_mae).epoch if history else 0
        label = labels[i] if i < len(labels) else f"run {i}"
        curves.append(curve_json(history, target_std, unit, best, label))
    payload: dict[str, Any] = {"format": "moma-learning-curves/1", "curves": curves,
                               "median_predictor_val_mae": median_val_mae}
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / CURVE_JSON, payload)
    _png(folder / CURVE_PNG, curves, unit, median_val_mae)
    return curves


def _png(path: Path, curves: list[dict[str, Any]], unit: str,
         median_val_mae: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for curve in curves:
        epochs = [e["epoch"] for e in curve["epochs"]]
        line = ax.plot(epochs, [e["val_mae"] for e in curve["epochs"]],
                       label=f"{curve['label']} validation MAE")[0]
        if curve["best_epoch"]:
            best = curve["epochs"][curve["best_epoch"] - 1]
            ax.plot([best["epoch"]], [best["val_mae"]], "o", color=line.get_color())
    if median_val_mae is not None:
        ax.axhline(median_val_mae, color="grey", ls="--", lw=0.8,
                   label="train-median predictor")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation MAE ({unit})" if unit else "validation MAE")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
