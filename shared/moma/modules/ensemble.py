"""Composed ensembles: several modules whose predictions are combined with fixed weights.

``moma-client compose --merge ensemble`` stores each fine-tuned part as a normal module in
``part<i>/`` and their weights in ``ensemble.json``. Anything that predicts with a module
folder accepts such a folder too; a plain module folder is an ensemble of one.
"""

from __future__ import annotations

import json
from pathlib import Path

from moma.errors import ModuleFormatError
from moma.modules.store import LoadedModule, load_module

ENSEMBLE_FILE = "ensemble.json"
ENSEMBLE_FORMAT = "moma-ensemble/1"


def load_weighted_modules(path: Path) -> list[tuple[LoadedModule, float]]:
    """The parts of a module folder with their weights (one part, weight 1, for a module)."""
    path = Path(path)
    manifest = path / ENSEMBLE_FILE
    if not manifest.is_file():
        return [(load_module(path), 1.0)]
    try:
        spec = json.loads(manifest.read_text())
        parts = spec["parts"]
        if spec.get("format") != ENSEMBLE_FORMAT or not parts:
            raise ValueError("unexpected format or no parts")
    except (ValueError, KeyError, TypeError) as exc:
        raise ModuleFormatError(f"{manifest}: not a valid ensemble description ({exc}); "
                                "compose the ensemble again") from None
    loaded = []
    for i, part in enumerate(parts):
        folder = path / f"part{i}"
        module = load_module(folder)
        if module.module_id != part.get("module_id"):
            raise ModuleFormatError(f"{folder}: module id {module.module_id[:12]}… is not the "
                                    f"one {manifest} names; compose the ensemble again")
        weight = float(part.get("weight", 0.0))
        if not weight > 0:
            raise ModuleFormatError(f"{manifest}: part {i} has weight {weight}; weights must be "
                                    "positive")
        loaded.append((module, weight))
    return loaded
