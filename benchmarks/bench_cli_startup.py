"""How fast the two programs answer ``--help`` (goal: ``moma-client --help`` under 1 s).

Commands import torch, pymatgen, grpc and flwr only when they run, so ``--help`` (and a usage
mistake) costs the interpreter start, typer and the option declarations. Each program is
timed as a fresh process, best of ``--repeat`` runs, beside a bare ``python -c pass`` measured
in the same run (the floor no command can beat), and the heaviest library a command would
import (``import torch``) for scale.

Run: ``.venv/bin/python benchmarks/bench_cli_startup.py [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def best_of(args: list[str], repeat: int) -> tuple[float, float]:
    """Best wall time and best CPU time (user + system) of a fresh process running ``args``;
    the CPU time barely moves when other work shares the machine, the wall time does."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, "COLUMNS": "80"})
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runs = {
        "python_pass": [sys.executable, "-c", "pass"],
        "moma_client_help": [str(BIN / "moma-client"), "--help"],
        "moma_client_compose_help": [str(BIN / "moma-client"), "compose", "--help"],
        "moma_hub_help": [str(BIN / "moma-hub"), "--help"],
        "import_torch": [sys.executable, "-c", "import torch"],
    }
    wall, cpu = {}, {}
    for name, command in runs.items():
        wall[name], cpu[name] = best_of(command, args.repeat)
    print(json.dumps({
        "wall_s": {k: round(v, 3) for k, v in wall.items()},
        "cpu_s": {k: round(v, 3) for k, v in cpu.items()},
        "client_help_over_python_wall": round(wall["moma_client_help"] / wall["python_pass"], 2),
        "client_help_over_import_torch_cpu":
            round(cpu["moma_client_help"] / cpu["import_torch"], 3),
        "goal_client_help_below_1s": {"wall": wall["moma_client_help"] < 1.0,
                                      "cpu": cpu["moma_client_help"] < 1.0},
    }, indent=2))


if __name__ == "__main__":
    main()
