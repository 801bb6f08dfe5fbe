"""Build the shared-base module families that parameter averaging needs (issue: AMC results).

Every module of a family is fine-tuned from one base with the project's own training code:

- ``cgcnn-full`` / ``cgcnn-adapter``: base = the imported MoE-(18) ``mp_eform`` CGCNN (pretrained
  on 132k Materials Project formation energies);
- ``chgnet-full`` / ``chgnet-adapter``: base = pretrained CHGNet 0.3.0.

Sources: the three Castelli perovskite targets (``e_form``, ``dir_gap``, ``ind_gap``; seeded
random split) and the 11 downstream tasks (their ``seed0`` training split). When composing for
a downstream task, the module trained on that same task is never a candidate
(``moma.amc.screening.screen_candidates`` skips it, reason "same task").

Run: ``.venv/bin/python benchmarks/amc_hub.py --family cgcnn-full [--profile quick|full]``.
Modules land in ``$MOMA_RUNS/hub/<family>/<source>/`` (``moma.paths.runs_dir``, default
``~/.cache/moma/runs``, outside the work tree); a module already there is kept (resumable). Each
card's ``extra.recipe`` records how the module was built (family, profile, source, subsample,
the command that rebuilds it) beside the training config in ``hyperparameters``.

Small families are also kept in the repository (``benchmarks/families/<family>/<source>/``:
the CHGNet adapter family is 0.4 MB a module, and costs hours of CPU to train on 2 cores), so a
new machine does not train them again: ``build_family`` copies a committed module into
``$MOMA_RUNS`` instead of training it when its recipe names the same family and profile, and
``--export`` writes the built modules of a family there for committing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from moma.backbones.registry import get_backbone
from moma.data.prepared import prepare
from moma.data.readers import load_dataset
from moma.modules.moe18 import import_moe18
from moma.modules.store import load_module, save_module
from moma.paths import downstream_task_path, moe18_dir, runs_dir, shared_dir
from moma.training.loop import TrainConfig
from moma.training.run import train_module

RUNS = runs_dir()
COMMITTED = Path(__file__).resolve().parent / "families"
# what a committed module folder carries (the learning-curve PNG stays out of the repository)
COMMITTED_FILES = ("card.json", "module.safetensors", "domain.safetensors", "learning_curve.json")
DOWNSTREAM = [
    "expt_eform", "jarvis_2d_dielectric_opt", "jarvis_2d_dielectric_tbmbj", "jarvis_2d_eform",
    "jarvis_2d_exfoliation", "jarvis_2d_gap_tbmbj", "mp_elastic_anisotropy", "mp_eps_electronic",
    "mp_poisson_ratio", "mp_poly_electronic", "mp_poly_total",
]
CASTELLI = ["e_form", "dir_gap", "ind_gap"]
PROFILES: dict[str, dict[str, Any]] = {
    # epochs for castelli sources / downstream sources, castelli training subsample
    "quick": {"castelli_epochs": 8, "task_epochs": 30, "castelli_train": 2000},
    "full": {"castelli_epochs": 30, "task_epochs": 100, "castelli_train": None},
    # end-to-end checks of the tooling (tests), never results
    "smoke": {"castelli_epochs": 1, "task_epochs": 1, "castelli_train": 64},
}
# CHGNet costs 4-5x more per step than CGCNN on 2 cores, so its families get a smaller budget
# under the full profile (recorded in each module's card through its training config).
CHGNET_FULL = {"castelli_epochs": 10, "task_epochs": 40, "castelli_train": 2000}
# The adapter family gets half the castelli subsample and half the task epochs (its lr is 3x
# higher) so that the CHGNet table fits into one session. Measured afterwards: an adapter epoch
# costs about a third of a full one (jarvis_2d_dielectric_opt: 1.6 s against 4.7 s per epoch).
CHGNET_ADAPTER = {"castelli_epochs": 10, "task_epochs": 20, "castelli_train": 1000}


def moe18_modules() -> Path:
    """The 18 imported MoE-(18) modules (imported once into runs/hub/moe18)."""
    folder = RUNS / "hub" / "moe18"
    if not (folder / "mp_eform" / "card.json").is_file():
        import_moe18(moe18_dir(), folder)
    return folder


def record_recipe(out: Path, recipe: dict[str, Any]) -> None:
    """Add how the module was built to its card (same weights, so the same module id)."""
    module = load_module(out)
    extra = {**module.card.extra, "recipe": recipe}
    save_module(out, module.state, replace(module.card, extra=extra))


def _recipe(folder: Path) -> dict[str, Any]:
    card = json.loads((folder / "card.json").read_text())
    recipe: dict[str, Any] = card.get("extra", {}).get("recipe", {})
    return recipe


def _copy_module(source: Path, dest: Path, check: Callable[[Path], object] | None = None,
                 staging_suffix: str = "partial") -> None:
    """Copy the committed files of a module folder to ``dest`` through a staging folder.

    ``check`` runs on the staged copy before it is renamed into place; if it raises, the
    staging folder is removed and ``dest`` is left as it was.
    """
    staging = dest.parent / f".{dest.name}.{staging_suffix}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for file in COMMITTED_FILES:
        if (source / file).is_file():
            shutil.copyfile(source / file, staging / file)
    try:
        if check is not None:
            check(staging)
    except Exception:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)


def restore_committed(family: str, profile: str, name: str, out: Path) -> bool:
    """Copy the committed module ``name`` of ``family`` to ``out`` if it was built the same way.

    The copy is checked by loading it (safetensors header, card, shapes) before it is renamed
    into place, so a damaged file in the repository is trained again instead of used.
    """
    source = COMMITTED / family / name
    if not (source / "card.json").is_file():
        return False
    recipe = _recipe(source)
    if recipe.get("family") != family or recipe.get("profile") != profile:
        return False
    try:
        _copy_module(source, out, check=load_module, staging_suffix="restoring")
    except Exception as error:  # any failure means: train it again
        print(json.dumps({"family": family, "module": name, "committed_copy_rejected": str(error)}))
        return False
    print(json.dumps({"family": family, "module": name, "restored_from": str(source)}), flush=True)
    return True


def export_family(family: str) -> Path:
    """Copy the built modules of ``family`` from ``$MOMA_RUNS`` into the repository's folder."""
    target = COMMITTED / family
    for module in sorted(p for p in (RUNS / "hub" / family).iterdir()
                         if (p / "card.json").is_file()):
        _copy_module(module, target / module.name)
    return target


def build_family(family: str, profile: str, only: Sequence[str] = ()) -> Path:
    """Train the family's missing modules (``only``: just these sources) and return its folder."""
    backbone_name, kind = family.split("-")
    backbone = get_backbone(backbone_name)
    settings = PROFILES[profile]
    if backbone_name == "chgnet" and profile == "full":
        settings = CHGNET_ADAPTER if kind == "adapter" else CHGNET_FULL
    init = load_module(moe18_modules() / "mp_eform") if backbone_name == "cgcnn" else None
    folder = RUNS / "hub" / family
    sources: list[tuple[str, str, str | None]] = [
        (f"castelli_{t}", str(shared_dir() / "data/hub/castelli_perovskites.json.gz"), t)
        for t in CASTELLI
    ] + [(task, str(downstream_task_path(task)), None) for task in DOWNSTREAM]
    for name, path, target in sources:
        if only and name not in only:
            continue
        out = folder / name
        if (out / "card.json").is_file() or restore_committed(family, profile, name, out):
            continue
        tick = time.perf_counter()
        dataset = load_dataset(path, target=target)
        data = prepare(dataset, backbone, "seed0", seed=0)
        castelli = target is not None
        if castelli and settings["castelli_train"]:
            data.split = {**data.split, "train": data.split["train"][: settings["castelli_train"]]}
        config = TrainConfig(
            epochs=settings["castelli_epochs"] if castelli else settings["task_epochs"],
            batch_size=64 if castelli else 32,
            lr=(1e-3 if kind == "adapter" else 3e-4), head_lr_factor=3.0,
            patience=10, seed=0)
        staging = folder / f".{name}.partial"
        outcome = train_module(data, backbone, kind=kind, config=config, out=staging, init=init,
                               name=name)
        record_recipe(staging, {
            "builder": "benchmarks/amc_hub.py", "family": family, "profile": profile,
            "command": f"benchmarks/amc_hub.py --family {family} --profile {profile}"
                       + (f" --sources {','.join(only)}" if only else ""),
            "source": name, "data": Path(path).name, "target": target, "split": "seed0",
            "train_subsample": len(data.split["train"]),
            "init": "moe18/mp_eform" if init is not None else f"pretrained {backbone_name}",
        })
        staging.rename(out)
        print(json.dumps({"family": family, "module": name, "seconds": time.perf_counter() - tick,
                          "val_mae": outcome.metrics["val_mae"],
                          "test_mae": outcome.metrics.get("test_mae")}), flush=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description="Build shared-base module families.")
    parser.add_argument("--family", action="append", required=True,
                        choices=["cgcnn-full", "cgcnn-adapter", "chgnet-full", "chgnet-adapter"])
    parser.add_argument("--profile", choices=list(PROFILES), default="quick")
    parser.add_argument("--sources", default="", help="comma-separated sources (default: all)")
    parser.add_argument("--export", action="store_true",
                        help="copy the built modules into benchmarks/families/ (to commit them)")
    args = parser.parse_args()
    for family in args.family:
        if args.export:
            print(export_family(family))
            continue
        build_family(family, args.profile, [s for s in args.sources.split(",") if s])


if __name__ == "__main__":
    main()
