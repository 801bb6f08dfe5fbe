"""One command to evaluate a new task: the standard comparison, one row per strategy, the winner.

``python benchmarks/evaluate_task.py --data FILE [--split seed0]`` takes any dataset in the
shared format with published splits (or anything ``--data`` takes; without splits a seeded
70/15/15 one) and runs, through the compose entry point (``moma.api.compose``, the one
orchestration the CLI and ``amc_results.py`` use):

- CHGNet: backbone-ft, adapter-ft, AMC adapter, AMC full, each at the lr chosen on seed0
  validation by ``amc_tuning.py`` (``lr_choice.json``; the paper's 8e-5 when no choice exists,
  said in the output), 30 epochs, patience 10;
- CGCNN: backbone-ft (the imported MoE-(18) ``mp_eform``) and AMC full on the CGCNN family,
  the CGCNN table's settings (lr 8e-5, 60 epochs, patience 10);
- the train-mean and train-median predictors.

Hub families come from ``$MOMA_RUNS/hub`` (built by ``amc_hub.py``; ``--build`` builds what is
missing, which takes hours on 2 cores). Candidates that could leak are excluded before any
composing, against the new task's own structures: a module whose training crystals appear in
the new task's validation or test split, and a module whose (crystal, label) pairs reappear in
the new task (the same task under another name). The winner is the strategy with the lowest
validation MAE; each run reads its test split once, at its end.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from amc_hub import CASTELLI, DOWNSTREAM, PROFILES, RUNS, build_family, moe18_modules
from amc_results import HUB_SPLIT, structure_key
from amc_tuning import CHOICE

from moma.amc.leakage import same_task
from moma.api.compose import ComposeRequest
from moma.api.compose import run as compose_run
from moma.data.prepared import choose_split
from moma.data.readers import load_dataset
from moma.data.records import Dataset
from moma.modules.store import LoadedModule, load_module
from moma.paths import downstream_task_path, shared_dir
from moma.training.loop import TrainConfig

SAME_TASK_SHARE = 0.1  # share of the new task's training pairs a source must repeat


@dataclass(frozen=True)
class Spec:
    name: str
    backbone: str
    strategy: str
    kind: str
    family: str | None  # the hub family it composes from (None: the base alone)
    tuned: str | None  # its entry in lr_choice.json (CHGNet), or None (CGCNN settings)


SPECS = (
    Spec("chgnet backbone-ft", "chgnet", "backbone-ft", "full", None, "backbone-ft"),
    Spec("chgnet adapter-ft", "chgnet", "backbone-ft", "adapter", None, "adapter-ft"),
    Spec("chgnet amc-adapter", "chgnet", "amc", "adapter", "chgnet-adapter", "amc-adapter"),
    Spec("chgnet amc-full", "chgnet", "amc", "full", "chgnet-full", "amc-full"),
    Spec("cgcnn backbone-ft", "cgcnn", "backbone-ft", "full", None, None),
    Spec("cgcnn amc-full", "cgcnn", "amc", "full", "cgcnn-full", None),
)


def pairs(dataset: Dataset, indices: Sequence[int]) -> set[tuple[str, float]]:
    return {(structure_key(dataset.records[i].structure), round(float(dataset.targets[i]), 6))
            for i in indices}


@cache
def source_pairs(source: str) -> frozenset[tuple[str, float]]:
    """(crystal, label) pairs a hub source may have trained on (a superset for castelli)."""
    if source.startswith("castelli_"):
        data = load_dataset(shared_dir() / "data/hub/castelli_perovskites.json.gz",
                            target=source.removeprefix("castelli_"))
        return frozenset(pairs(data, range(len(data))))
    data = load_dataset(downstream_task_path(source))
    return frozenset(pairs(data, data.split(HUB_SPLIT)["train"]))


def excluded_sources(dataset: Dataset, split: dict[str, list[int]]) -> dict[str, str]:
    """Hub sources that must not be candidates for ``dataset``, each with the reason."""
    held_out = {key for key, _ in pairs(dataset, split["val"] + split["test"])}
    train = pairs(dataset, split["train"])
    out: dict[str, str] = {}
    for source in [f"castelli_{t}" for t in CASTELLI] + DOWNSTREAM:
        seen = source_pairs(source)
        overlap = len({key for key, _ in seen} & held_out)
        repeated = len(seen & train)
        if overlap:
            out[source] = f"trained on {overlap} crystals of the validation/test split"
        elif train and repeated >= SAME_TASK_SHARE * len(train):
            out[source] = (f"repeats {repeated} of the {len(train)} training (crystal, label) "
                           "pairs: the same task")
    return out


def lr_choice() -> dict[str, float]:
    if not CHOICE.is_file():
        return {}
    return {k: float(v["lr"]) for k, v in json.loads(CHOICE.read_text())["strategies"].items()}


def family_folder(family: str, build: bool, profile: str) -> Path:
    folder = RUNS / "hub" / family
    if not any(folder.glob("*/card.json")):
        if not build:
            raise SystemExit(f"hub family {family} not found in {folder}: build it with "
                             f"`python benchmarks/amc_hub.py --family {family} --profile "
                             f"{profile}` or pass --build")
        build_family(family, profile)
    return folder


def family_modules(folder: Path, excluded: Sequence[str], task: str) -> list[LoadedModule]:
    """The family's modules (one folder per source) minus the excluded sources and the task."""
    modules = [load_module(p) for p in sorted(folder.iterdir())
               if (p / "card.json").is_file() and p.name not in excluded]
    return [m for m in modules if not same_task(m.card.task, task)]


def run_spec(spec: Spec, dataset: Dataset, args: argparse.Namespace, excluded: list[str],
             choice: dict[str, float]) -> dict[str, Any]:
    chgnet = spec.backbone == "chgnet"
    lr = choice.get(spec.tuned or "", 8e-5)
    epochs = args.epochs or (30 if chgnet else 60)
    candidates: list[LoadedModule] = []
    if spec.family:
        candidates = family_modules(family_folder(spec.family, args.build, args.profile),
                                    excluded, dataset.name)
    request = ComposeRequest(
        data=dataset, out=args.out / spec.name.replace(" ", "-"), candidates=candidates,
        strategy=spec.strategy, kind=spec.kind, backbone=spec.backbone, split=args.split,
        base_dirs=(moe18_modules(),),
        base_module=None if chgnet else moe18_modules() / "mp_eform",
        train=TrainConfig(epochs=epochs, batch_size=32, lr=lr, head_lr_factor=10.0,
                          patience=10, seed=0),
        seed=0)
    tick = time.perf_counter()
    report = compose_run(request).report
    metrics = report["metrics"]
    return {"strategy": spec.name, "lr": lr, "lr_source": ("seed0 validation" if spec.tuned in
                                                           choice else "paper"),
            "epochs": epochs, "val_mae": metrics["val_mae"], "test_mae": metrics["test_mae"],
            "test_mae_train_mean": metrics["test_mae_train_mean"],
            "test_mae_train_median": metrics["test_mae_train_median"],
            "composed_from": report["composed_from"], "wall_s": time.perf_counter() - tick}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate a new task with the standard "
                                                 "comparison.")
    parser.add_argument("--data", required=True, help="the task file (shared JSON format, ...)")
    parser.add_argument("--split", default="seed0")
    parser.add_argument("--backbones", default="chgnet,cgcnn")
    parser.add_argument("--out", type=Path, default=None,
                        help="run folders (default $MOMA_RUNS/evaluate/<task>/<split>)")
    parser.add_argument("--build", action="store_true", help="build missing hub families")
    parser.add_argument("--profile", choices=list(PROFILES), default="full",
                        help="profile of families built by --build")
    parser.add_argument("--epochs", type=int, default=0,
                        help="override every fine-tuning budget (checks of the tooling only)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    tick = time.perf_counter()
    dataset = load_dataset(args.data)
    split = choose_split(dataset, args.split, 0)
    args.out = args.out or RUNS / "evaluate" / dataset.name / args.split
    excluded = excluded_sources(dataset, split)
    choice = lr_choice()
    backbones = set(args.backbones.split(","))
    rows = [run_spec(spec, dataset, args, sorted(excluded), choice)
            for spec in SPECS if spec.backbone in backbones]
    winner = min(rows, key=lambda r: r["val_mae"])
    summary = {"task": dataset.name, "unit": dataset.unit, "split": args.split,
               "excluded_sources": excluded, "rows": rows, "winner": winner["strategy"],
               "wall_s": time.perf_counter() - tick}
    if args.json:
        print(json.dumps(summary))
        return
    first = rows[0]
    print(f"task {dataset.name} ({dataset.unit}), split {args.split}; excluded hub sources: "
          + (", ".join(f"{k} ({v})" for k, v in excluded.items()) or "none"))
    print(f"{'strategy':20s} {'lr':>8s} {'val MAE':>10s} {'test MAE':>10s} {'wall s':>8s}")
    print(f"{'train mean':20s} {'':8s} {'':10s} {first['test_mae_train_mean']:10.4g}")
    print(f"{'train median':20s} {'':8s} {'':10s} {first['test_mae_train_median']:10.4g}")
    for r in rows:
        note = "" if r["lr_source"] != "paper" or r["strategy"].startswith("cgcnn") else " *"
        print(f"{r['strategy']:20s} {r['lr']:8.0e} {r['val_mae']:10.4g} {r['test_mae']:10.4g} "
              f"{r['wall_s']:8.0f}{note}")
    print(f"winner (lowest validation MAE): {winner['strategy']}, test MAE "
          f"{winner['test_mae']:.4g}; total {summary['wall_s']:.0f} s")
    if any(r["lr_source"] == "paper" and r["strategy"].startswith("chgnet") for r in rows):
        print(f"* no lr chosen on validation yet ({CHOICE.name} missing): the paper's lr")


if __name__ == "__main__":
    main()
