"""Where AMC's parameter average loses to backbone fine-tuning: proxy quality against final MAE.

Reads the result files of ``amc_results.py`` (``benchmarks/results/amc/full/cgcnn``) and prints,
per task and split with both ``amc-full`` and ``backbone-ft``: how many modules AMC mixed, the
top weight, the best single module's and the weighted ensemble's leave-one-out kNN proxy MAE
(both relative to the train-mean predictor), and the two test MAEs; then rank correlations
across runs (does a better proxy mean a better composed start?) and, from the ``+base`` runs,
where the shared base itself ranks by proxy MAE among the candidates.

Run: ``.venv/bin/python benchmarks/amc_analysis.py`` (prints markdown; reads only).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

RESULTS = Path(__file__).resolve().parent / "results" / "amc" / "full" / "cgcnn"


def load() -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    runs: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for path in sorted(RESULTS.glob("*/*-all-*.json")):
        report = json.loads(path.read_text())
        runs[(report["task"], report["split"])][report["run"]["label"]] = report
    return runs


def main() -> None:
    runs = load()
    rows, proxy_rel, test_rel, n_mixed = [], [], [], []
    print("| task | split | modules mixed | top weight | best single proxy / mean | "
          "ensemble proxy / mean | amc-full test | backbone-ft test | change |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (task, split), labels in sorted(runs.items()):
        amc, bft = labels.get("amc-full"), labels.get("backbone-ft")
        if not amc or not bft:
            continue
        floor = amc["metrics"]["test_mae_train_mean"]
        weights = np.array([c["weight"] for c in amc["candidates"]])
        proxies = np.array([c["proxy_mae"] for c in amc["candidates"]])
        mixed = int((weights > 1e-3).sum())
        a, b = amc["metrics"]["test_mae"], bft["metrics"]["test_mae"]
        change = (a - b) / b
        best_rel = proxies.min() / floor
        ens_rel = amc["ensemble_proxy_mae"] / floor
        rows.append((task, split))
        proxy_rel.append(ens_rel)
        test_rel.append(change)
        n_mixed.append(mixed)
        print(f"| {task} | {split} | {mixed} | {weights.max():.2f} | {best_rel:.3f} | "
              f"{ens_rel:.3f} | {a:.4g} | {b:.4g} | {100 * change:+.1f} % |")
    if len(rows) >= 5:
        rho, p = spearmanr(proxy_rel, test_rel)
        print(f"\nSpearman over {len(rows)} runs, ensemble proxy (relative to the train-mean "
              f"MAE) vs AMC's change against backbone-ft: rho = {rho:.2f} (p = {p:.2g}).")
        rho, p = spearmanr(n_mixed, test_rel)
        print(f"Spearman, number of modules mixed vs that change: rho = {rho:.2f} "
              f"(p = {p:.2g}).")
        single = [c for m, c in zip(n_mixed, test_rel, strict=True) if m <= 2]
        many = [c for m, c in zip(n_mixed, test_rel, strict=True) if m > 2]
        if single and many:
            print(f"Mean change where AMC mixed <= 2 modules: {100 * np.mean(single):+.1f} % "
                  f"({len(single)} runs); > 2 modules: {100 * np.mean(many):+.1f} % "
                  f"({len(many)} runs).")
    ranks = []
    for (task, split), labels in sorted(runs.items()):
        plus = labels.get("amc-full+base")
        if not plus:
            continue
        names = [c["name"] for c in plus["candidates"]]
        proxies = [c["proxy_mae"] for c in plus["candidates"]]
        if "mp_eform" not in names:
            continue
        rank = [names[i] for i in np.argsort(proxies)].index("mp_eform") + 1
        weight = plus["candidates"][names.index("mp_eform")]["weight"]
        ranks.append((task, split, rank, len(names), weight))
    if ranks:
        print("\nThe shared base offered as a candidate (`amc-full+base`): its proxy-MAE rank "
              "among the candidates and its AMC weight:")
        for task, split, rank, n, weight in ranks:
            print(f"- {task} {split}: rank {rank} of {n}, weight {weight:.2f}")


if __name__ == "__main__":
    main()
