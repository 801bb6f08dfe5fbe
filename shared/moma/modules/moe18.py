"""Import the 18 pretrained MoE-(18) CGCNN models as MoMa modules.

The source folder (``$MOMA_SHARED/modules/moe18-cgcnn``) holds ``<task>.safetensors`` files and a
``manifest.json`` with each file's sha256, property, normalizer, hyper-parameters and best
validation MAE. Each model becomes a full ``cgcnn`` module ``out/<task>/`` whose bytes are the
source bytes unchanged, so its module id is the manifest's sha256. The models were trained from
scratch, not from a shared base, so each is its own base (``base_sha256`` = its own id).

The import is all or nothing: every file is hashed and fully checked against the CGCNN schema
before anything is written, the modules are built in a hidden folder beside ``out`` and renamed
into place at the end, and an ``out`` that already has content is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import moma
from moma.backbones.registry import get_backbone
from moma.errors import ModuleFormatError
from moma.modules.card import (
    ModuleCard,
    TargetNormalizer,
    is_finite_number,
    is_sha256,
    utc_now_iso,
)
from moma.modules.safetensors_check import read_file_capped, read_safetensors_bytes
from moma.modules.store import module_schema, save_module_bytes, sha256_file
from moma.modules.weight_bounds import weight_bound

SOURCE_NAME = "moe18-cgcnn"
MANIFEST = "manifest.json"
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")

# Units as far as the task names and the normalizer ranges make them certain; "unknown" where
# the original targets were rescaled (log or weighted) in ways the release does not state.
UNITS: dict[str, str] = {
    "castelli_eform": "eV",
    "jarvis_bandgap": "eV",
    "mp_bandgap": "eV",
    "jarvis_eform": "eV/atom",
    "mp_eform": "eV/atom",
    "jarvis_dielectric_opt": "dimensionless",
    "mp_gvrh": "log10(GPa)",
    "mp_kvrh": "log10(GPa)",
    "n_Seebeck": "uV/K",
    "p_Seebeck": "uV/K",
    "n_avg_eff_mass": "m_e",
    "p_avg_eff_mass": "m_e",
}


def _bad(manifest: Path, task: str, problem: str) -> ModuleFormatError:
    return ModuleFormatError(f"{manifest}: task {task!r}: {problem}; restore the manifest from "
                             "the MoE-(18) release")


def _read_manifest(src: Path) -> dict[str, dict[str, Any]]:
    path = src / MANIFEST
    if not path.is_file():
        raise ModuleFormatError(f"{path}: not found; pass the moe18-cgcnn folder (it holds "
                                f"{MANIFEST} and the .safetensors files)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModuleFormatError(f"{path}: not valid JSON ({exc}); restore it from the "
                                "MoE-(18) release") from None
    if not isinstance(manifest, dict) or not manifest:
        raise ModuleFormatError(f"{path}: expected a non-empty object task -> entry; restore it "
                                "from the MoE-(18) release")
    for task, entry in manifest.items():
        _check_entry(path, task, entry)
    return manifest


def _check_entry(manifest: Path, task: str, entry: Any) -> None:
    if not _SAFE_NAME.fullmatch(task):
        raise _bad(manifest, task, "task name is not a plain folder name")
    if not isinstance(entry, dict):
        raise _bad(manifest, task, "entry is not an object")
    file = entry.get("file")
    if not isinstance(file, str) or not _SAFE_NAME.fullmatch(file):
        raise _bad(manifest, task, f"'file' is {file!r}, not a file name in the folder")
    if not is_sha256(entry.get("sha256")):
        raise _bad(manifest, task, "'sha256' is not 64 lowercase hex digits")
    if not isinstance(entry.get("property"), str) or not entry["property"]:
        raise _bad(manifest, task, "'property' is missing")
    if not isinstance(entry.get("hyperparameters"), dict):
        raise _bad(manifest, task, "'hyperparameters' is not an object")
    mae = entry.get("best_val_mae")
    if not is_finite_number(mae):
        raise _bad(manifest, task, f"'best_val_mae' is {mae!r}, not a finite number")
    norm = entry.get("normalizer")
    if not isinstance(norm, dict):
        raise _bad(manifest, task, "'normalizer' is not an object")
    mean, std = norm.get("mean"), norm.get("std")
    if not (is_finite_number(mean) and is_finite_number(std) and std > 0):
        raise _bad(manifest, task, f"normalizer mean {mean!r}, std {std!r}: need finite, std > 0")


def _card(task: str, entry: dict[str, Any], module_id: str, featurizer: dict[str, Any],
          backbone_version: str, created: str) -> ModuleCard:
    norm = entry["normalizer"]
    flags = {k: v for k, v in norm.items() if k not in ("mean", "std")}
    extra: dict[str, Any] = {"source": SOURCE_NAME, "source_file": entry.get("source_file"),
                             "file": entry["file"]}
    if "epoch" in entry:
        extra["best_epoch"] = entry["epoch"]
    if flags:
        extra["normalizer_flags"] = flags
    return ModuleCard(
        name=task,
        backbone="cgcnn",
        backbone_version=backbone_version,
        base_sha256=module_id,
        kind="full",
        task=task,
        property=entry["property"],
        unit=UNITS.get(task, "unknown"),
        normalizer=TargetNormalizer(float(norm["mean"]), float(norm["std"])),
        dataset_size={},
        split=None,
        metrics={"val_mae": float(entry["best_val_mae"])},
        hyperparameters=dict(entry["hyperparameters"]),
        featurizer=featurizer,
        software_version=moma.__version__,
        created=created,
        module_id=module_id,
        extra=extra,
    )


def _refuse_nonempty(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModuleFormatError(f"{out}: already exists and is not an empty folder; remove it or "
                                "choose another output folder")


def import_moe18(src: Path, out: Path) -> list[ModuleCard]:
    """Import every model of the manifest in ``src`` into ``out/<task>/``; all or nothing.

    Returns the written cards sorted by task. Raises :class:`ModuleFormatError` (nothing
    written) if ``out`` is not empty, the manifest is bad, or any file fails its sha256 or the
    full safetensors and CGCNN schema checks.
    """
    src, out = Path(src), Path(out)
    _refuse_nonempty(out)
    manifest = _read_manifest(src)
    backbone = get_backbone("cgcnn")
    featurizer = backbone.featurizer().config()
    atom_init = src / "atom_init.json"
    if atom_init.is_file() and sha256_file(atom_init) != featurizer.get("atom_init_sha256"):
        raise ModuleFormatError(f"{atom_init}: differs from the atom table the cgcnn backbone "
                                "uses; point MOMA_CGCNN_ATOM_INIT (or MOMA_SHARED) at this folder")
    schema = module_schema(backbone, "full")
    created = utc_now_iso()
    staged: list[tuple[str, bytes, ModuleCard]] = []
    for task in sorted(manifest):
        entry = manifest[task]
        path = src / entry["file"]
        data = read_file_capped(path)
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry["sha256"]:
            raise ModuleFormatError(f"{path}: sha256 is {digest} but {MANIFEST} says "
                                    f"{entry['sha256']}; the file is corrupt or was replaced: "
                                    "restore it from the MoE-(18) release")
        read_safetensors_bytes(data, expected=schema, source=str(path),
                               schema_name="the cgcnn full-module schema",
                               max_abs=weight_bound("cgcnn"))
        staged.append((task, data, _card(task, entry, digest, featurizer, backbone.version,
                                         created)))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        cards = [save_module_bytes(staging / task, data, card) for task, data, card in staged]
        _refuse_nonempty(out)
        os.replace(staging, out)  # also replaces an empty folder
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
        raise
    return cards


__all__ = ["SOURCE_NAME", "UNITS", "import_moe18"]
