"""Module folders on disk: ``module.safetensors`` (tensors only) + ``card.json``.

A module's identity is the sha256 of its safetensors bytes, so saving writes exactly the bytes
that are hashed and loading re-hashes what it read. Loading is where untrusted weights enter a
process: the header is checked first (size caps, dtypes, offsets), then the tensor names,
shapes and dtypes against the schema of the card's backbone and kind (built from the real
model, so a schema can never drift from the code), then the id, and only then are tensors read
and checked for NaN/inf. Saving runs the same checks before writing, so a module this code
writes is always one it can load.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import safetensors.torch
import torch
from torch import Tensor

from moma.atomic_io import write_bytes, write_json
from moma.backbones.adapters import adapter_state_keys, insert_adapters
from moma.backbones.base import Backbone
from moma.backbones.registry import get_backbone
from moma.errors import ModuleFormatError, MomaError
from moma.modules.card import MODULE_KINDS, ModuleCard
from moma.modules.safetensors_check import (
    MAX_MODULE_BYTES,
    Schema,
    check_header,
    check_schema,
    dtype_name,
    read_file_capped,
    read_safetensors_bytes,
)
from moma.modules.weight_bounds import weight_bound

MODULE_FILE = "module.safetensors"
CARD_FILE = "card.json"
MAX_CARD_BYTES = 1024 * 1024

_SCHEMAS: dict[tuple[str, str, str], dict[str, tuple[tuple[int, ...], str]]] = {}


def module_schema(backbone: Backbone, kind: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """Tensor name -> (shape, dtype) a module of ``kind`` for ``backbone`` must hold exactly.

    ``full``: the backbone model's whole state_dict; ``adapter``: only the adapter and head
    tensors of the model with adapters inserted. Cached per backbone name, version and kind.
    The model built to read the schema draws its random initialization from a forked torch
    generator: whether (and when) a schema was first needed must not change what a seeded
    run computes afterwards.
    """
    if kind not in MODULE_KINDS:
        raise ModuleFormatError(f"module kind {kind!r} is unknown; use one of "
                                f"{', '.join(MODULE_KINDS)}")
    key = (backbone.name, backbone.version, kind)
    if key not in _SCHEMAS:
        with torch.random.fork_rng(devices=[]):
            model = backbone.build()
            if kind == "adapter":
                insert_adapters(model)
        state = model.state_dict()
        names = adapter_state_keys(model) if kind == "adapter" else list(state)
        _SCHEMAS[key] = {k: (tuple(state[k].shape), dtype_name(state[k].dtype)) for k in names}
    return dict(_SCHEMAS[key])


def serialize_state(state: Mapping[str, Tensor]) -> bytes:
    """The safetensors bytes of ``state``: CPU, contiguous, unshared copies, sorted by name."""
    tensors: dict[str, Tensor] = {}
    for name, tensor in sorted(state.items()):
        if not isinstance(name, str) or not isinstance(tensor, Tensor):
            raise ModuleFormatError(f"module state entry {name!r} is not a named tensor; pass a "
                                    "state_dict of torch tensors")
        try:
            dtype_name(tensor.dtype)
        except ValueError as exc:
            raise ModuleFormatError(f"module tensor {name!r}: {exc}") from None
        tensors[name] = tensor.detach().to("cpu").contiguous().clone()
    return safetensors.torch.save(tensors)


def sha256_state(state: Mapping[str, Tensor]) -> str:
    """The module id ``state`` would get from :func:`save_module`."""
    return hashlib.sha256(serialize_state(state)).hexdigest()


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _schema_for(card: ModuleCard, source: str) -> tuple[Schema, str]:
    try:
        backbone = get_backbone(card.backbone)
    except MomaError as exc:
        raise ModuleFormatError(f"{source}: {exc}") from None
    if card.backbone_version != backbone.version:
        raise ModuleFormatError(
            f"{source}: module is for {card.backbone} version {card.backbone_version!r} but this "
            f"MoMa has version {backbone.version!r}; use a matching MoMa or re-export the module")
    return module_schema(backbone, card.kind), f"the {card.backbone} {card.kind}-module schema"


def _checked_card(card: ModuleCard, source: str) -> ModuleCard:
    """The card after a JSON round trip, so only cards that load again are ever written."""
    try:
        text = json.dumps(card.to_json(), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ModuleFormatError(f"{source}: card is not plain JSON ({exc}); keep card fields to "
                                "strings, finite numbers, lists and objects") from None
    return ModuleCard.from_json(json.loads(text), source=source)


def save_module_bytes(out_dir: Path, data: bytes, card: ModuleCard, *,
                      verify_id: bool = True) -> ModuleCard:
    """Check safetensors ``data`` fully against ``card``, then write the module folder.

    For bytes that already are a module (an import, a download): they are written unchanged,
    so the id stays the sha256 the source stated. With ``verify_id`` a card that names another
    id is refused. Returns the card as written (``module_id`` filled in).
    """
    out_dir = Path(out_dir)
    source = str(out_dir / MODULE_FILE)
    module_id = hashlib.sha256(data).hexdigest()
    if verify_id and card.module_id and card.module_id != module_id:
        raise ModuleFormatError(f"{source}: card says module_id {card.module_id} but the bytes "
                                f"hash to {module_id}; the weights do not belong to this card")
    card = _checked_card(replace(card, module_id=module_id), str(out_dir / CARD_FILE))
    schema, schema_name = _schema_for(card, source)
    read_safetensors_bytes(data, expected=schema, source=source, schema_name=schema_name,
                           max_abs=weight_bound(card.backbone))
    write_bytes(out_dir / MODULE_FILE, data)
    write_json(out_dir / CARD_FILE, card.to_json())
    return card


def adopt_module_file(out_dir: Path, weights: Path, data: bytes, card: ModuleCard,
                      module_id: str) -> LoadedModule:
    """Make the fsynced file ``weights`` the module file of a new folder ``out_dir``.

    For a download, whose sha256 ``module_id`` the receiver computed while the bytes streamed
    in (and compared with the signed one): hashing the file again and writing a second copy,
    as :func:`save_module_bytes` does, doubled a client's per-byte work. ``data`` are the file's
    bytes; every check of :func:`load_module` but the hash is made before the file is moved.
    """
    out_dir = Path(out_dir)
    source = str(out_dir / MODULE_FILE)
    if card.module_id and card.module_id != module_id:
        raise ModuleFormatError(f"{source}: card says module_id {card.module_id} but the bytes "
                                f"hash to {module_id}; the weights do not belong to this card")
    card = _checked_card(replace(card, module_id=module_id), str(out_dir / CARD_FILE))
    schema, schema_name = _schema_for(card, source)
    state = read_safetensors_bytes(data, expected=schema, source=source, schema_name=schema_name,
                                   max_abs=weight_bound(card.backbone))
    out_dir.mkdir(parents=True, exist_ok=True)
    os.replace(weights, out_dir / MODULE_FILE)
    write_json(out_dir / CARD_FILE, card.to_json())  # fsyncs the folder, with the rename above
    return LoadedModule(path=out_dir, card=card, state=state, module_id=module_id)


def save_module(out_dir: Path, state: Mapping[str, Tensor], card: ModuleCard) -> ModuleCard:
    """Write ``state`` and ``card`` as a module folder; returns the card with its module_id.

    Non-finite tensors, a state that does not fit the card's backbone schema and an invalid card
    are all refused before anything is written. Each file is written atomically, weights first.
    """
    return save_module_bytes(out_dir, serialize_state(state), card, verify_id=False)


@dataclass
class LoadedModule:
    """A module that passed every check: its folder, card, tensors and verified id."""

    path: Path
    card: ModuleCard
    state: dict[str, Tensor]
    module_id: str


def _module_folder(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        return path
    if path.name in (CARD_FILE, MODULE_FILE):
        return path.parent
    if not path.exists():
        raise ModuleFormatError(f"{path}: no such module folder; pass a folder holding "
                                f"{MODULE_FILE} and {CARD_FILE}")
    raise ModuleFormatError(f"{path}: not a module; pass the module folder (holding "
                            f"{MODULE_FILE} and {CARD_FILE}) or one of those two files")


def load_card(path: Path) -> ModuleCard:
    """The checked card of a module folder (or of a ``card.json`` given directly)."""
    path = Path(path)
    is_card = path.is_file() and path.suffix == ".json"
    card_path = path if is_card else _module_folder(path) / CARD_FILE
    if not card_path.is_file():
        raise ModuleFormatError(f"{card_path}: card not found; a module folder needs {CARD_FILE} "
                                f"beside {MODULE_FILE}")
    if card_path.stat().st_size > MAX_CARD_BYTES:
        raise ModuleFormatError(f"{card_path}: card is over {MAX_CARD_BYTES} bytes; a card holds "
                                "metadata only: re-export the module")

    def no_constants(token: str) -> None:
        raise ValueError(f"{token} is not valid JSON")

    try:
        data = json.loads(card_path.read_bytes().decode("utf-8"), parse_constant=no_constants)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModuleFormatError(f"{card_path}: card is not valid UTF-8 JSON ({exc}); re-export "
                                "the module") from None
    return ModuleCard.from_json(data, source=str(card_path))


def load_module(path: Path, *, verify_id: bool = True,
                max_bytes: int = MAX_MODULE_BYTES) -> LoadedModule:
    """Load a module folder (or its card.json / module.safetensors) with every check.

    Order: card; safetensors header; schema of the card's backbone and kind; module_id against
    the sha256 of the bytes (unless ``verify_id`` is False); then tensors, refused if not finite.
    """
    folder = _module_folder(path)
    card = load_card(folder)
    weights = folder / MODULE_FILE
    source = str(weights)
    data = read_file_capped(weights, max_bytes)
    infos = check_header(data, source=source, max_bytes=max_bytes)
    schema, schema_name = _schema_for(card, source)
    check_schema(infos, schema, source, schema_name)
    module_id = hashlib.sha256(data).hexdigest()
    if verify_id and card.module_id and card.module_id != module_id:
        raise ModuleFormatError(
            f"{source}: bytes hash to {module_id} but {folder / CARD_FILE} says module_id "
            f"{card.module_id}; the weights were changed or belong to another card: fetch the "
            "module again")
    state = read_safetensors_bytes(data, expected=schema, source=source, max_bytes=max_bytes,
                                   schema_name=schema_name, max_abs=weight_bound(card.backbone))
    return LoadedModule(path=folder, card=card, state=state, module_id=module_id)


def list_modules(folder: Path) -> list[tuple[Path, ModuleCard]]:
    """Every module folder below ``folder`` (hidden folders skipped), sorted by card name.

    A card that does not load is an error naming it, not a silent omission.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MomaError(f"{folder}: not a folder; pass the folder that holds module folders")
    found = []
    for card_path in folder.rglob(CARD_FILE):
        relative = card_path.parent.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        found.append((card_path.parent, load_card(card_path)))
    return sorted(found, key=lambda item: (item[1].name, str(item[0])))


__all__ = [
    "CARD_FILE",
    "MAX_CARD_BYTES",
    "MODULE_FILE",
    "LoadedModule",
    "list_modules",
    "load_card",
    "load_module",
    "module_schema",
    "save_module",
    "save_module_bytes",
    "serialize_state",
    "sha256_file",
    "sha256_state",
]
