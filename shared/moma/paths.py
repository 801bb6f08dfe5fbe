"""Where shared data and caches live.

``MOMA_SHARED`` points at the read-only folder with datasets and pretrained modules; by default
it is ``../shared`` beside the repository. ``MOMA_CACHE`` holds graph caches and downloaded
modules (default ``~/.cache/moma``). ``MOMA_RUNS`` holds module families and run outputs that
benchmarks build (default ``$MOMA_CACHE/runs``): outside the work tree, so a fresh checkout on
the same machine reuses hours of training.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """The shared data folder (``$MOMA_SHARED``, default ``<repo>/../shared``)."""
    env = os.environ.get("MOMA_SHARED")
    return Path(env).expanduser().resolve() if env else (REPO_ROOT.parent / "shared").resolve()


def cache_dir() -> Path:
    """The user's cache folder (``$MOMA_CACHE``, default ``~/.cache/moma``), created on demand."""
    env = os.environ.get("MOMA_CACHE")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "moma"
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """Built module families and run outputs (``$MOMA_RUNS``, default ``<cache>/runs``)."""
    env = os.environ.get("MOMA_RUNS")
    path = Path(env).expanduser() if env else cache_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def downstream_task_path(task: str) -> Path:
    """Path of a downstream task file in the shared folder."""
    return shared_dir() / "data" / "downstream" / f"{task}.json.gz"


def moe18_dir() -> Path:
    """Folder of the 18 imported MoE-(18) CGCNN modules."""
    return shared_dir() / "modules" / "moe18-cgcnn"
