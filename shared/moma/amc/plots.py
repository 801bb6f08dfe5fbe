"""Figures of a compose run: module weights and a parity plot (PNG, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np


def weights_png(path: Path, names: list[str], weights: np.ndarray, proxy_mae: np.ndarray,
                title: str) -> None:
    """Bars of AMC weights, with each module's leave-one-out proxy MAE as a heat strip."""
    order = np.argsort(-weights)
    fig, (ax_w, ax_p) = plt.subplots(
        1, 2, figsize=(9, 0.32 * len(names) + 1.6), sharey=True,
        gridspec_kw={"width_ratios": [4, 1]})
    y = np.arange(len(names))
    ax_w.barh(y, weights[order], color="tab:blue")
    ax_w.set_yticks(y, [names[i] for i in order], fontsize=8)
    ax_w.invert_yaxis()
    ax_w.set_xlabel("AMC weight")
    ax_w.set_xlim(0, max(1e-9, float(weights.max())) * 1.1)
    heat = ax_p.imshow(proxy_mae[order][:, None], aspect="auto", cmap="viridis_r",
                       extent=(0, 1, len(names) - 0.5, -0.5))
    ax_p.set_xticks([])
    ax_p.set_xlabel("proxy MAE")
    fig.colorbar(heat, ax=ax_p, fraction=0.5)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parity_png(path: Path, y_true: np.ndarray, y_pred: np.ndarray, unit: str, title: str) -> None:
    """Predicted against reference test values, with the identity line and the MAE."""
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.scatter(y_true, y_pred, s=9, alpha=0.7)
    lo = float(min(y_true.min(), y_pred.min()))
    hi = float(max(y_true.max(), y_pred.max()))
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
    mae = float(np.mean(np.abs(y_true - y_pred)))
    ax.set_xlabel(f"reference ({unit})")
    ax.set_ylabel(f"predicted ({unit})")
    ax.set_title(f"{title}\ntest MAE {mae:.4g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
