"""How fast the two programs answer ``--help`` (goal: ``moma-client --help`` under 1 s).

Commands import torch, pymatgen, grpc and flwr only when they run, so ``--help`` (and a usage
mistake) costs the interpreter start, typer and the option declarations. Each program is
timed as a fresh process, ``--repeat`` runs, beside a bare ``python -c pass`` measured in the
same run (the floor no command can beat), and the heaviest library a command would import
(``import torch``) for scale.

Two clocks, best and median of the runs: the wall time (what a person waits) and the CPU time
of the child (user + system, from ``getrusage``). On a machine busy with other work the wall
time grows with the load while the CPU time barely moves, so the CPU time is the figure that
compares across runs; the wall time equals it on an idle machine. The goal (under 1 s) is
checked on both and the README states both.

Run: ``.venv/bin/python benchmarks/bench_cli_startup.py [--repeat 7]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timings(args: list[str], repeat: int) -> tuple[list[float], list[float]]:
    """Wall times and CPU times (user + system) of ``repeat`` fresh processes running ``args``;
    the CPU time barely moves when other work shares the machine, the wall time does."""
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, "COLUMNS": "80"})
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def load_average() -> float:
    """The one-minute load average, printed beside the figures (how busy the machine was)."""
    return round(os.getloadavg()[0], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    runs = {
        "python_pass": [sys.executable, "-c", "pass"],
        "moma_client_help": [str(BIN / "moma-client"), "--help"],
        "moma_client_compose_help": [str(BIN / "moma-client"), "compose", "--help"],
        "moma_hub_help": [str(BIN / "moma-hub"), "--help"],
        "import_torch": [sys.executable, "-c", "import torch"],
    }
    walls, cpus = {}, {}
    load_before = load_average()
    for name, command in runs.items():
        walls[name], cpus[name] = timings(command, args.repeat)
    wall = {k: min(v) for k, v in walls.items()}
    cpu = {k: min(v) for k, v in cpus.items()}
    print(json.dumps({
        "repeat": args.repeat,
        "load_average_1min": [load_before, load_average()],
        "wall_s_best": {k: round(v, 3) for k, v in wall.items()},
        "wall_s_median": {k: round(statistics.median(v), 3) for k, v in walls.items()},
        "cpu_s_best": {k: round(v, 3) for k, v in cpu.items()},
        "cpu_s_median": {k: round(statistics.median(v), 3) for k, v in cpus.items()},
        "client_help_over_python_wall": round(wall["moma_client_help"] / wall["python_pass"], 2),
        "client_help_over_import_torch_cpu":
            round(cpu["moma_client_help"] / cpu["import_torch"], 3),
        "goal_client_help_below_1s": {"wall": wall["moma_client_help"] < 1.0,
                                      "cpu": cpu["moma_client_help"] < 1.0},
        "goal_hub_help_below_1s": {"wall": wall["moma_hub_help"] < 1.0,
                                   "cpu": cpu["moma_hub_help"] < 1.0},
    }, indent=2))


if __name__ == "__main__":
    main()
