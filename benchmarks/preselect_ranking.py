"""Compare pre-selection rankers offline, on validation-side quantities only.

For one downstream task (seed0 training split, never val or test) and a set of modules (the
base, the real modules of ``benchmarks/preselect_hub.py train`` and derived ones generated as
the hub stage does), this computes once, and caches in ``$MOMA_CACHE/hub10k/study``:

- every module's fingerprint on the default probe set (what a hub publishes), and
- every module's leave-one-out kNN proxy column on the owner's training split (what
  exhaustive AMC computes after downloading everything).

Each ranker (``moma_client.preselect.ranking.RANKERS``) then orders the modules from the
fingerprints and the reference encoder's view of the owner's structures only; the printout is,
per ranker and K: the share of exhaustive AMC's weight mass (weights >= 0.05) found in the top
K, and the ensemble proxy MAE of AMC on the top K over that of AMC on all modules. No hub is
involved: this isolates the ranking from transport (``preselect_hub.py measure`` measures the
whole path).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/preselect_ranking.py \\
        --task jarvis_2d_eform --modules 300
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from moma.amc.knn import loo_knn_predict, proxy_mae
from moma.amc.weights import solve_module_weights
from moma.backbones.registry import get_backbone
from moma.data.prepared import prepare
from moma.data.readers import load_dataset
from moma.graphs.cache import featurize
from moma.modules.card import ModuleCard
from moma.modules.safetensors_check import read_safetensors_bytes
from moma.modules.store import load_module
from moma.paths import cache_dir, downstream_task_path
from moma.probes.fingerprint import compute_fingerprint
from moma.probes.model import model_from_state
from moma.probes.probe_set import default_probe_set
from moma.training.loop import embed_graphs
from moma_client.preselect.ranking import RANKERS, probe_weights

HEAVY = 0.05


def _modules(out: Path, count: int, family: str
             ) -> list[tuple[str, dict[str, torch.Tensor], dict, str]]:
    """The base first, then real modules, then derived ones up to ``count``."""
    from benchmarks.preselect_hub import _real, base_folder, derived_modules
    from tests.integration.derived import real_modules

    base = base_folder(out)
    base_card = json.loads((base / "card.json").read_text())
    found = [(base_card["module_id"], dict(load_module(base).state), base_card, "base")]
    if family == "moe18":  # the 18 imported modules (17 besides the base): distinct targets
        reals = [r for r in real_modules(base.parent) if r[1]["module_id"] != found[0][0]]
    else:
        reals = _real(out)
    for state, card in reals:
        role = "shuffled" if "shuffled" in str(card["name"]) else "real"
        found.append((str(card["module_id"]), state, card, role))
    for d in derived_modules(reals, max(0, count - len(found)), base_card["module_id"]):
        state = read_safetensors_bytes(d.data, source=d.module_id)
        found.append((d.module_id, state, d.card, d.role))
    return found


def study(out: Path, task: str, count: int, max_train: int | None,
          family: str = "hub10k") -> dict[str, np.ndarray]:
    net = get_backbone("cgcnn")
    data = prepare(load_dataset(str(downstream_task_path(task))), net, "seed0")
    graphs, y = data.part("train")
    if max_train is not None:
        graphs, y = graphs[:max_train], y[:max_train]
    folder = out / "study" / family / task
    folder.mkdir(parents=True, exist_ok=True)
    probes = featurize(net.featurizer(), default_probe_set().items(), cache=True).graphs
    mods = _modules(out, count, family)
    ids, preds, embs, proxies, roles, tasks = [], [], [], [], [], []
    base_state = mods[0][1]
    tick = time.perf_counter()
    for n, (module_id, state, card_json, role) in enumerate(mods):
        key = hashlib.sha256(f"{module_id}:{len(graphs)}".encode()).hexdigest()[:24]
        path = folder / f"{key}.npz"
        if not path.is_file():
            card = ModuleCard.from_json(card_json)
            model = model_from_state(net, card, state, lambda _sha: base_state)
            model.eval()
            fp = compute_fingerprint(net, model, probes, card)
            x = embed_graphs(net, model, graphs, batch_size=64)
            np.savez(path, predictions=fp.predictions, embedding=fp.embedding.astype(np.float32),
                     proxy=loo_knn_predict(x, y, k=5))
        with np.load(path, allow_pickle=False) as z:
            preds.append(z["predictions"])
            embs.append(z["embedding"])
            proxies.append(z["proxy"])
        ids.append(module_id)
        roles.append(role)
        tasks.append(str(card_json.get("task", "")).split(":")[0])
        if n % 50 == 0:
            print(f"  {n}/{len(mods)} modules in {time.perf_counter() - tick:.0f} s", flush=True)
    base_model = model_from_state(net, ModuleCard.from_json(mods[0][2]), base_state,
                                  lambda _sha: base_state)
    keep = np.array([t != task for t in tasks])  # the task's own modules never compete
    return {"y": np.asarray(y, dtype=np.float64),
            "owner": embed_graphs(net, base_model, graphs), "probes": embed_graphs(
                net, base_model, probes),
            "predictions": np.stack(preds)[keep], "embedding": np.stack(embs)[keep],
            "proxy": np.stack(proxies, axis=1)[:, keep], "roles": np.array(roles)[keep],
            "ids": np.array(ids)[keep]}


def evaluate(s: dict[str, np.ndarray], tops: list[int]) -> list[dict[str, object]]:
    y, p = s["y"], s["proxy"]
    full = solve_module_weights(p, y)
    full_mae = proxy_mae(p @ full.weights, y)
    heavy = full.weights >= HEAVY
    a = probe_weights(s["owner"], s["probes"])
    rows = []
    for name, ranker in RANKERS.items():
        tick = time.perf_counter()
        order = ranker(a, s["predictions"], s["embedding"], y)
        seconds = time.perf_counter() - tick
        for k in tops:
            top = order[:k]
            sub = solve_module_weights(p[:, top], y)
            found = float(full.weights[top][heavy[top]].sum() / full.weights[heavy].sum())
            rows.append({"ranker": name, "k": k, "mass_found": round(found, 3),
                         "proxy_ratio": round(proxy_mae(p[:, top] @ sub.weights, y) / full_mae,
                                              4),
                         "distractors_in_top": int(np.isin(s["roles"][top],
                                                           ["distractor", "shuffled"]).sum()),
                         "rank_s": round(seconds, 3)})
    print(f"exhaustive AMC over {p.shape[1]} modules: {int(heavy.sum())} with weight >= "
          f"{HEAVY}, ensemble proxy MAE {full_mae:.4f}; roles of the heavy: "
          f"{dict(zip(*np.unique(s['roles'][heavy], return_counts=True), strict=True))}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", action="append", default=[])
    parser.add_argument("--modules", type=int, default=300)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--top-k", type=int, action="append", default=[])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--family", choices=["hub10k", "moe18"], default="hub10k",
                        help="real modules: hub10k's trained ones, or the MoE-(18) imports")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = args.out or cache_dir() / "hub10k"
    for task in args.task or ["jarvis_2d_eform"]:
        s = study(out, task, args.modules, args.max_train, args.family)
        for row in evaluate(s, args.top_k or [12, 50]):
            print(json.dumps({"task": task, "modules": int(s["proxy"].shape[1]), **row}),
                  flush=True)


if __name__ == "__main__":
    main()
