"""Memory of one prediction against the atom count, per backbone (README, "Data limits").

Readers cap a structure at ``MOMA_MAX_ATOMS`` (1,000 by default) on every backbone; this
benchmark states what a structure near and past that cap costs. The largest structure this
project ships (312 atoms) is repeated into supercells (1x1x1, 2x1x1, 2x2x1, 2x2x2, ...; built
here, so the readers' cap does not stop them), and each size runs in a fresh process that
builds the backbone's model, warms it up on the smallest shipped structure, resets the
kernel's peak-RSS counter (``/proc/self/clear_refs``), then featurizes the supercell and runs
the forward pass (eval mode, no grad, one thread). The figure is the increase of peak RSS over
the RSS before featurizing: what one more structure of that size adds to a running
prediction. Weights do not change memory, so the models keep their
random initialization.

A size whose child passes ``--max-mb`` of RSS or ``--timeout-s`` is stopped and reported as
over that bound; larger sizes of that backbone are skipped. Results are appended to
``benchmarks/results/memory_per_atom.jsonl``; a size already there is not run again
(``--fresh`` to redo), so an interrupted run resumes.

Run: ``OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_memory_per_atom.py
[--backbones cgcnn,chgnet] [--cells 1x1x1,2x1x1,2x2x1,2x2x2,3x3x3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "memory_per_atom.jsonl"
DEFAULT_CELLS = "1x1x1,2x1x1,2x2x1,2x2x2,3x3x3"


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def structures_file(folder: Path) -> Path:
    """A JSON file with the largest structure of the shipped downstream tasks and a small one
    for the warm-up (found once; every child reads them from here)."""
    from moma.data.readers import load_dataset
    from moma.paths import shared_dir

    records = [r for path in sorted((shared_dir() / "data" / "downstream").glob("*.json.gz"))
               for r in load_dataset(path).records]
    largest = max(records, key=lambda r: len(r.structure))
    small = min(records, key=lambda r: len(r.structure))
    path = folder / "structures.json"
    path.write_text(json.dumps({"largest": [largest.id, largest.structure.as_dict()],
                                "small": [small.id, small.structure.as_dict()]}))
    return path


def child(backbone_name: str, cell: str, structures: Path) -> dict[str, object]:
    """Measure one size in this process (run by :func:`main` as a fresh process)."""
    import gc

    import torch
    from pymatgen.core import Structure

    from moma.backbones.registry import get_backbone

    torch.set_num_threads(1)
    saved = json.loads(structures.read_text())
    record_id, structure = saved["largest"][0], Structure.from_dict(saved["largest"][1])
    small = Structure.from_dict(saved["small"][1])
    backbone = get_backbone(backbone_name)
    model = backbone.build().eval()
    featurizer = backbone.featurizer()
    with torch.no_grad():  # warm-up on a small crystal: lazy imports, kernels, thread pools
        model(backbone.collate([featurizer.featurize(small, saved["small"][0])]))
    big = structure.copy()
    big.make_supercell([int(n) for n in cell.split("x")])
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    before_kb = _status_kb("VmRSS")
    start = time.perf_counter()
    with torch.no_grad():
        graph = featurizer.featurize(big, f"{record_id}-{cell}")
        featurized_s = time.perf_counter() - start
        value = model(backbone.collate([graph]))
    seconds = time.perf_counter() - start
    peak_kb = _status_kb("VmHWM")
    return {"backbone": backbone_name, "cell": cell, "structure": record_id, "atoms": len(big),
            "rss_before_mb": round(before_kb / 1024, 1),
            "peak_increase_mb": round((peak_kb - before_kb) / 1024, 1),
            "featurize_s": round(featurized_s, 2), "total_s": round(seconds, 2),
            "finite": bool(torch.isfinite(value).all())}


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_one(backbone: str, cell: str, structures: Path, max_mb: float,
            timeout_s: float) -> dict[str, object]:
    """One size in a fresh process, stopped (and reported as over) past the bounds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, __file__, "--child", backbone, cell,
                             str(structures)], env=env,
                            stdout=subprocess.PIPE, text=True)
    start, peak = time.monotonic(), 0.0
    while proc.poll() is None:
        peak = max(peak, _rss_mb(proc.pid))
        over = ("memory" if peak > max_mb else
                "time" if time.monotonic() - start > timeout_s else "")
        if over:
            proc.kill()
            proc.wait()
            return {"backbone": backbone, "cell": cell, "over": over,
                    "bound": max_mb if over == "memory" else timeout_s,
                    "seconds": round(time.monotonic() - start, 1)}
        time.sleep(0.2)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        return {"backbone": backbone, "cell": cell, "failed": proc.returncode}
    return dict(json.loads(out.strip().splitlines()[-1]))


def per_atom_kb(rows: list[dict[str, object]]) -> float | None:
    """Slope of the peak increase over the atom count (least squares), kB per atom."""
    points = [(float(r["atoms"]), float(r["peak_increase_mb"]))  # type: ignore[arg-type]
              for r in rows if "peak_increase_mb" in r]
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    slope = (sum((x - mx) * (y - my) for x, y in points)
             / sum((x - mx) ** 2 for x, _ in points))
    return round(slope * 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="cgcnn,chgnet")
    parser.add_argument("--cells", default=DEFAULT_CELLS)
    parser.add_argument("--max-mb", type=float, default=6000.0,
                        help="Stop a size whose process passes this RSS (MB).")
    parser.add_argument("--timeout-s", type=float, default=1800.0)
    parser.add_argument("--fresh", action="store_true", help="Ignore earlier results.")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], Path(args.child[2]))))
        return
    done: dict[tuple[str, str], dict[str, object]] = {}
    if RESULTS.is_file() and not args.fresh:
        for line in RESULTS.read_text().splitlines():
            row = json.loads(line)
            done[(row["backbone"], row["cell"])] = row
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    summary = {}
    tmp = tempfile.TemporaryDirectory(prefix="moma-memory-")
    structures = structures_file(Path(tmp.name))
    for backbone in args.backbones.split(","):
        rows = []
        for cell in args.cells.split(","):
            row = done.get((backbone, cell))
            if row is None:
                row = run_one(backbone, cell, structures, args.max_mb, args.timeout_s)
                with RESULTS.open("a") as f:
                    f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
            rows.append(row)
            if "peak_increase_mb" not in row:
                break
        summary[backbone] = {"kb_per_atom_slope": per_atom_kb(rows),
                             "sizes": {r["cell"]: (r.get("atoms"), r.get("peak_increase_mb"))
                                       for r in rows}}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
