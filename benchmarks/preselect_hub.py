"""Build a hub of up to 10,000 CGCNN modules with real signal, for the pre-selection benchmark.

Stages (each resumable; outputs under ``--out``, default ``$MOMA_CACHE/hub10k``, outside the
work tree):

``train``   real modules fine-tuned from one shared base (the imported MoE-(18) ``mp_eform``
            CGCNN) with the project's own training code, on real targets: the three Castelli
            perovskite targets and the 11 downstream tasks' ``seed0`` training splits; per
            source one module on the whole training split and ``--bootstraps`` modules on
            bootstrap subsets (70 %, seeds 1..B), plus ``--shuffled`` modules trained on the same
            structures with the labels permuted (distractors whose training was real but whose
            target is noise). A module already in ``out/modules/<name>`` is kept.
``hub``     start a real ``moma-hub serve`` over ``out/hub`` (SQLite; the default probe set),
            contribute the base, every trained module, then derived modules until the hub holds
            ``--modules`` approved modules: *variants* (``(1-a) theta_i + a theta_j`` of two
            real modules, a <= 0.3, plus 2 % noise: same base, so they average) and
            *distractors* (a real module's message passing with a freshly drawn head). Every
            module goes through the hub's contribution path (signed manifest, StartUpload,
            Upload, FinishUpload with the hub's probe run and review, signed ApproveModule),
            ``--threads`` contributions at a time (default 4), made as they are sent (at most
            8 in memory). Derived module number v is a function of (seed, v, the real
            modules), so a restart regenerates exactly the ones missing; modules an
            interruption left pending are approved. ``--hub-name NAME --modules N`` builds
            ``out/NAME``, a smaller hub holding the first N modules of the same sequence.
``serve``   serve ``out/hub`` until stopped (``measure --hub-address`` lets two ``measure``
            processes share it).
``measure`` per ``--task`` (seed0), each run one call of the compose entry point
            (``benchmarks/preselect_measure.py``): pre-selection (top ``--top-k``) + AMC +
            fine-tuning, against exhaustive AMC (compose over every module of the hub but the
            task's own, or over a random ``--exhaustive-cap`` sub-hub plus the pre-selected
            ones): proxy MAE ratio, share of exhaustive AMC's weight mass (weights >= 0.05)
            inside the pre-selected set, test MAE after fine-tuning, modules and bytes
            downloaded; ``--run sizes --size-hub sub18 --size-hub sub1000 --size-hub hub``:
            compose's wall time at each hub size. One JSON line per run in
            ``out/measure.jsonl`` (a run already there is skipped).

What was built (a 2-core machine shared with other jobs, load 7-11): 56 real modules, per
source the whole training split, 2 bootstraps and 1 shuffled-label module, every one on at
most 400 training structures (Castelli: the first 400), 6 epochs, validation capped at 200
structures: 508 s of training, about 11 min of wall time in two runs (the first without
bootstraps)::

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/preselect_hub.py train \\
        --bootstraps 0 --shuffled 1 --epochs 6 --castelli-train 400 --max-train 400 \\
        --max-val 200
    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/preselect_hub.py train \\
        --bootstraps 2 --shuffled 1 --epochs 6 --castelli-train 400 --max-train 400 \\
        --max-val 200

Then the hub of 10,000 (the base, the 56 real modules, 6,961 variants, 2,982 distractors):
1,922 s (32 min) for the 9,999 contributions after the base, 0.19 s each, 3.97 GB stored;
and the two smaller hubs for the timing (the first 18 and the first 1,000 modules of the
same sequence: 12 s and 280 s)::

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/preselect_hub.py hub --modules 10000
    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/preselect_hub.py hub \\
        --hub-name sub18 --modules 18
    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/preselect_hub.py hub \\
        --hub-name sub1000 --modules 1000

Where a contribution's time goes (one upload at a time, 400 derived modules, timing wrappers
in the hub process, load 7-10): making the module 14 ms, signing 4 ms, StartUpload 31 ms,
Upload 20 ms, FinishUpload 256 ms (the probe forward pass over the 192 probes 155 ms wall,
about 40 ms of CPU; storing the bytes with fsync 20 ms; the store transaction 25 ms),
ApproveModule 31 ms: 0.35 s. The probe graphs are featurized once per hub process already;
the forward pass is the hub's real cost and stays. Four contributions at a time bring it to
about 0.2 s a module. The measurements and their commands are in ``docs/hub.md`` (section 6).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import safetensors.torch
import torch

from benchmarks.preselect_measure import Measure
from moma.backbones.registry import get_backbone
from moma.data.prepared import prepare
from moma.data.readers import load_dataset
from moma.modules.moe18 import import_moe18
from moma.modules.store import list_modules, load_module
from moma.paths import cache_dir, downstream_task_path, moe18_dir, shared_dir
from moma.proto.hub.v1 import hub_pb2
from moma.training.loop import TrainConfig
from moma.training.run import train_module
from moma_client.hub.client import HubClient
from moma_client.hub.connection import Transport
from tests.integration.derived import Contributor, Derived, distractor, variant
from tests.integration.hubenv import Hub

DOWNSTREAM = [
    "expt_eform", "jarvis_2d_dielectric_opt", "jarvis_2d_dielectric_tbmbj", "jarvis_2d_eform",
    "jarvis_2d_exfoliation", "jarvis_2d_gap_tbmbj", "mp_elastic_anisotropy", "mp_eps_electronic",
    "mp_poisson_ratio", "mp_poly_electronic", "mp_poly_total",
]
CASTELLI = ["e_form", "dir_gap", "ind_gap"]
VARIANT_SHARE = 0.7  # of the derived modules; the rest are head-redrawn distractors


def sources() -> list[tuple[str, str, str | None]]:
    castelli = str(shared_dir() / "data/hub/castelli_perovskites.json.gz")
    return ([(f"castelli_{t}", castelli, t) for t in CASTELLI]
            + [(t, str(downstream_task_path(t)), None) for t in DOWNSTREAM])


def base_folder(out: Path) -> Path:
    folder = out / "moe18"
    if not (folder / "mp_eform" / "card.json").is_file():
        import_moe18(moe18_dir(), folder)
    return folder / "mp_eform"


def train_stage(out: Path, bootstraps: int, shuffled: int, epochs: int,
                castelli_train: int, max_train: int | None, max_val: int) -> None:
    """Train the real modules; cheap by choice (caps on the splits, few epochs, see ``main``)."""
    net = get_backbone("cgcnn")
    base = load_module(base_folder(out))
    for name, path, target in sources():
        dataset = load_dataset(path, target=target)
        data = prepare(dataset, net, "seed0", seed=0)
        full_train = list(data.split["train"])
        if target is not None:
            full_train = full_train[:castelli_train]
        elif max_train is not None:
            full_train = full_train[:max_train]
        # early stopping reads validation every epoch: a capped prefix keeps that cheap
        # (and the card's test MAE, read once, needs no more either)
        data = dataclasses.replace(data, split={
            **data.split, "val": list(data.split["val"])[:max_val],
            "test": list(data.split["test"])[:max_val]})
        plans = [(f"{name}", full_train, False, 0)]
        rng = np.random.default_rng(0)
        for b in range(1, bootstraps + 1):
            pick = rng.choice(len(full_train), int(0.7 * len(full_train)), replace=False)
            plans.append((f"{name}-boot{b}", [full_train[i] for i in sorted(pick)], False, b))
        for s in range(1, shuffled + 1):
            plans.append((f"{name}-shuffled{s}", full_train, True, 100 + s))
        for module_name, train_idx, shuffle, seed in plans:
            dest = out / "modules" / module_name
            if (dest / "card.json").is_file():
                continue
            tick = time.perf_counter()
            run = dataclasses.replace(data, split={**data.split, "train": train_idx})
            if shuffle:  # permute the labels of the training structures only
                perm = np.random.default_rng(seed).permutation(train_idx)
                records = list(data.dataset.records)
                for i, j in zip(train_idx, perm, strict=True):
                    records[i] = dataclasses.replace(data.dataset.records[i],
                                                     target=data.dataset.records[j].target)
                run = dataclasses.replace(run, dataset=dataclasses.replace(data.dataset,
                                                                           records=records))
            outcome = train_module(
                run, net, kind="full", init=base, name=module_name, out=dest,
                config=TrainConfig(epochs=epochs, batch_size=64 if target else 32,
                                   lr=3e-4, head_lr_factor=3.0, patience=5, seed=seed))
            print(json.dumps({"module": module_name, "seconds": time.perf_counter() - tick,
                              "val_mae": outcome.metrics["val_mae"], "shuffled": shuffle}),
                  flush=True)


def _real(out: Path) -> list[tuple[dict[str, torch.Tensor], dict[str, object]]]:
    found = []
    for path, _card in list_modules(out / "modules"):
        loaded = load_module(path)  # key order fixed: derived modules draw noise in it
        found.append((dict(sorted(loaded.state.items())),
                      json.loads((path / "card.json").read_text())))
    return found


def derived_module(reals: list[tuple[dict[str, torch.Tensor], dict[str, object]]], v: int,
                   base_id: str, seed: int = 0) -> Derived:
    """Derived module number ``v``: a function of (``seed``, ``v``, the real modules) only, so
    a restart regenerates exactly the modules it still lacks and none of the others."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + v)
    real_only = [r for r in reals if "shuffled" not in str(r[1]["name"])]
    if v % 10 < int(VARIANT_SHARE * 10):
        i = int(torch.randint(len(real_only), (1,), generator=gen))
        j = int(torch.randint(len(real_only), (1,), generator=gen))
        mix = float(torch.rand(1, generator=gen)) * 0.3
        d = variant(real_only[i], real_only[j], mix, 0.02, gen, f"variant-{v:05d}")
    else:
        d = distractor(reals[v % len(reals)], gen, f"distractor-{v:05d}")
    d.card["base_sha256"] = base_id  # every module here descends from the one base
    d.card["module_id"] = d.module_id
    return d


def derived_modules(reals: list[tuple[dict[str, torch.Tensor], dict[str, object]]],
                    count: int, base_id: str, seed: int = 0) -> list[Derived]:
    """``count`` derived modules (numbers 0..count-1), deterministic in ``seed``."""
    return [derived_module(reals, v, base_id, seed) for v in range(count)]


def open_hub(out: Path, name: str = "hub") -> Hub:
    """Start the benchmark hub ``out/<name>``; its identity is created once and kept (restarts
    reuse it). ``hub`` is the full hub; other names are the smaller hubs built for timing."""
    hub = Hub(out / name, hub_id="hub10k" if name == "hub" else f"hub10k-{name}")
    info = out / ("hub_info.json" if name == "hub" else f"{name}_info.json")
    if info.is_file():
        hub.info = json.loads(info.read_text())
    hub.start(timeout=600)
    if not info.is_file():
        info.write_text(json.dumps(hub.info))
    return hub


def hub_stage(out: Path, modules: int, keep_running: bool, threads: int = 4,
              name: str = "hub") -> Hub:
    """Contribute the base, the real modules and derived ones until the hub holds ``modules``.

    Every module goes through the hub's contribution path (StartUpload, Upload, FinishUpload
    with the hub's probe run, then a signed ApproveModule), ``threads`` uploads at a time, as
    several labs contributing at once would. Resumable: modules already stored are skipped
    (derived ones by their deterministic bytes), and modules left pending by an interrupted
    run are approved. A hub under another ``name`` with fewer ``modules`` holds the first
    ``modules`` of the same sequence (the base, the real modules, then derived ones)."""
    hub = open_hub(out, name)
    channel = grpc.insecure_channel(hub.address)
    me = Contributor.enrolled(channel, hub.hub_id, hub.store, f"lab-{int(time.time())}",
                              out / "keys")
    with HubClient(Transport(hub.address, insecure=True)) as client:
        listed = list(client.list_modules(states=("approved", "pending", "rejected",
                                                  "revoked")))
    stored = {s.module_id for s in listed}
    for summary in listed:  # contributed before an interruption, not yet approved
        if summary.state == hub_pb2.MODULE_STATE_PENDING:
            me.approve(summary.module_id)
    base = base_folder(out)
    base_data = (base / "module.safetensors").read_bytes()
    base_card = json.loads((base / "card.json").read_text())
    reals = _real(out)
    fixed = [Derived(base_data, base_card, "base")]
    fixed += [Derived(safetensors.torch.save(state), card, "real") for state, card in reals]
    fixed = fixed[:max(1, modules)]
    derived_count = max(0, modules - len(fixed))
    print(f"hub {hub.address}: {len(stored)} stored; target {modules} modules: the base, "
          f"{len(fixed) - 1} real, {derived_count} derived", flush=True)
    tick = time.perf_counter()
    if fixed[0].module_id not in stored:  # every other module names it as its base
        me.contribute(fixed[0])
    stored.add(fixed[0].module_id)

    already = 0
    lock = threading.Lock()

    def unless_stored(d: Derived) -> Derived | None:
        nonlocal already
        if d.module_id in stored:
            with lock:
                already += 1
            return None
        return d

    def makers() -> Iterator[Callable[[], Derived | None]]:
        for d in fixed[1:]:
            yield lambda d=d: unless_stored(d)
        for v in range(derived_count):
            yield lambda v=v: unless_stored(derived_module(reals, v, base_card["module_id"]))

    added = 0

    def progress(_module_id: str) -> None:
        nonlocal added
        added += 1
        if added % 200 == 0:
            print(f"  {added} contributed in {time.perf_counter() - tick:.0f} s", flush=True)

    total = me.contribute_stream(makers(), threads, progress)
    print(f"hub {hub.address}: {total} contributed, {already} already stored, "
          f"{time.perf_counter() - tick:.0f} s", flush=True)
    (out / "contributor.json").write_text(json.dumps({"address": hub.address}))
    if not keep_running:
        hub.stop()
    return hub


def measure_stage(out: Path, tasks: list[str], runs: list[str], top_k: int,
                  cap: int | None, train_size: int | None, size_hubs: list[str],
                  address: str | None) -> None:
    """See :mod:`benchmarks.preselect_measure`; ``address``: a hub already serving ``out/hub``
    (``serve``), so that two ``measure`` processes can share it."""
    hub = None if address else open_hub(out)
    measure = Measure(out, train_size, top_k)
    try:
        where = address or (hub.address if hub else "")
        for task in tasks:
            if "preselect" in runs:
                measure.preselect(where, task)
            if "exhaustive" in runs:
                measure.exhaustive(where, task, cap)
            if "sizes" in runs:
                for name in size_hubs:
                    if name == "hub":
                        measure.preselect(where, task, name, f"size@{name}")
                        continue
                    small = open_hub(out, name)
                    try:
                        measure.preselect(small.address, task, name, f"size@{name}")
                    finally:
                        small.stop()
    finally:
        if hub is not None:
            hub.stop()


def serve_stage(out: Path) -> None:
    """Serve ``out/hub`` until interrupted; prints its address (for ``measure --hub-address``)."""
    hub = open_hub(out)
    print(f"serving {hub.address}", flush=True)
    (out / "serving.json").write_text(json.dumps({"address": hub.address}))
    try:
        while hub.proc is not None and hub.proc.poll() is None:
            time.sleep(5)
    finally:
        hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=["train", "hub", "measure", "serve"])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--bootstraps", type=int, default=3)
    parser.add_argument("--shuffled", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--castelli-train", type=int, default=2000)
    parser.add_argument("--max-train", type=int, default=None,
                        help="train: cap on a downstream task's training structures")
    parser.add_argument("--max-val", type=int, default=10_000,
                        help="cap on the validation structures read every epoch")
    parser.add_argument("--modules", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=4,
                        help="hub: concurrent contributions (each a full upload + approval)")
    parser.add_argument("--task", action="append", default=[])
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--exhaustive-cap", type=int, default=None)
    parser.add_argument("--hub-name", default="hub",
                        help="hub: build out/<name> (a smaller hub for timing, e.g. sub1000)")
    parser.add_argument("--run", action="append", default=[],
                        choices=["preselect", "exhaustive", "sizes"],
                        help="measure: which runs (default: preselect and exhaustive)")
    parser.add_argument("--size-hub", action="append", default=[],
                        help="measure --run sizes: the smaller hubs (names given to hub)")
    parser.add_argument("--train-size", type=int, default=200,
                        help="measure: the owner's training structures (compose --train-size)")
    parser.add_argument("--hub-address", default=None,
                        help="measure: use the hub `serve` is serving instead of starting one")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = args.out or cache_dir() / "hub10k"
    out.mkdir(parents=True, exist_ok=True)
    if args.stage == "train":
        train_stage(out, args.bootstraps, args.shuffled, args.epochs, args.castelli_train,
                    args.max_train, args.max_val)
    elif args.stage == "hub":
        hub_stage(out, args.modules, keep_running=False, threads=args.threads,
                  name=args.hub_name)
    elif args.stage == "serve":
        serve_stage(out)
    else:
        measure_stage(out, args.task or ["jarvis_2d_eform", "mp_poisson_ratio",
                                         "jarvis_2d_exfoliation", "mp_eps_electronic",
                                         "expt_eform"], args.run or ["preselect", "exhaustive"],
                      args.top_k, args.exhaustive_cap, args.train_size, args.size_hub,
                      args.hub_address)


if __name__ == "__main__":
    main()
