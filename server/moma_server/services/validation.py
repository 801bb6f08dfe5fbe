"""Checks on what a contributor sends: the card inside the manifest and the module bytes.

The card is validated at StartUpload (so a hopeless upload is refused before any byte moves)
and again with the bytes at FinishUpload, where the safetensors header, the tensor names,
shapes and dtypes of the declared backbone and kind, and finiteness are checked with the same
code that loads modules on the client side (:mod:`moma.modules.safetensors_check`). Nothing
here unpickles: pickles are recognised by their first bytes and refused.
"""

from __future__ import annotations

import logging
import threading

import grpc

from moma.backbones.registry import get_backbone
from moma.errors import ModuleFormatError, MomaError
from moma.modules.card import ModuleCard
from moma.modules.card_text import check_card_text
from moma.modules.safetensors_check import check_safetensors_bytes
from moma.modules.store import module_schema
from moma.modules.weight_bounds import weight_bound
from moma.trust.manifest import Manifest
from moma_server.services.errors import HubError, invalid
from moma_server.store.metadata import MetadataStore

_log = logging.getLogger("moma_server")
_BUILTIN_BASES: dict[str, str | None] = {}
_BASE_LOCK = threading.Lock()


def builtin_base(backbone: str) -> str | None:
    """sha256 of the backbone's own pretrained weights (computed once per process), if any."""
    with _BASE_LOCK:
        if backbone not in _BUILTIN_BASES:
            pretrained = get_backbone(backbone).pretrained_base()
            _BUILTIN_BASES[backbone] = pretrained[1] if pretrained else None
        return _BUILTIN_BASES[backbone]


def warm_up(backbones: tuple[str, ...] = ("cgcnn", "chgnet")) -> None:
    """Build the schemas and base digests before the first upload needs them (seconds each)."""
    for name in backbones:
        try:
            backbone = get_backbone(name)
            for kind in ("full", "adapter"):
                module_schema(backbone, kind)
            builtin_base(name)
        except Exception as exc:  # a missing backbone must not stop the hub: say so at start
            _log.warning("backbone %s is not usable on this hub (%s): uploads of %s modules "
                         "will be refused until this is fixed", name, exc, name)
            continue


def card_of(manifest: Manifest) -> ModuleCard:
    """The manifest's card, strictly parsed and consistent with the manifest around it."""
    sha = manifest.module_sha256
    try:
        check_card_text(manifest.card)  # before anything else reads or echoes its strings
        card = ModuleCard.from_json(manifest.card, source=f"card of module {sha}")
    except ModuleFormatError as exc:
        raise invalid(f"{exc}") from None
    if card.module_id and card.module_id != sha:
        raise invalid(f"card says module_id {card.module_id} but the manifest signs module {sha}: "
                      "set the card's module_id to the module's sha256 (or leave it empty)")
    if card.contributor_key_id and card.contributor_key_id != manifest.contributor_key_id:
        raise invalid(f"card names contributor key {card.contributor_key_id} but the manifest is "
                      f"signed by {manifest.contributor_key_id}: sign with the card's key")
    hub_version = get_backbone(card.backbone).version
    if card.backbone_version != hub_version:
        raise invalid(f"module {sha} is for {card.backbone} version {card.backbone_version!r}; "
                      f"this hub serves version {hub_version!r}: retrain or re-export it with a "
                      "matching MoMa")
    return card


def check_backbone_ready(card: ModuleCard) -> None:
    """This hub can check modules of the card's backbone (its schema needs e.g. the CGCNN atom
    table): refused at StartUpload, before any byte moves, if the hub is not set up for it."""
    try:
        module_schema(get_backbone(card.backbone), card.kind)
    except MomaError as exc:
        raise HubError(grpc.StatusCode.FAILED_PRECONDITION,
                       f"this hub cannot check {card.backbone} modules ({exc}): ask the hub "
                       "operator to fix the hub's set-up (the start-up log says the same)"
                       ) from None


def check_base(card: ModuleCard, module_sha256: str, metadata: MetadataStore) -> None:
    """The declared base must be known: the module itself, a stored module, or a built-in base."""
    base = card.base_sha256
    if base == module_sha256:
        return  # trained from scratch: its own base (the imported MoE-(18) CGCNNs)
    row = metadata.get_module(base)
    if row is not None:
        if row.backbone != card.backbone:
            raise invalid(f"module {module_sha256} declares base {base}, which is a "
                          f"{row.backbone} module, but the card says backbone {card.backbone}: "
                          "declare the base the module was really trained from")
        return
    try:
        builtin = builtin_base(card.backbone)
    except MomaError as exc:
        raise invalid(f"cannot load the {card.backbone} pretrained base to check the card: {exc}"
                      ) from None
    if base == builtin:
        return
    known = f"the {card.backbone} pretrained base {builtin}, " if builtin else ""
    raise invalid(f"module {module_sha256} declares base {base}, which this hub does not know: "
                  f"a base must be {known}a module stored on this hub, or the module itself; "
                  "contribute the base first or declare the right one")


def check_module_bytes(data: bytes | bytearray, card: ModuleCard, module_sha256: str,
                       max_bytes: int) -> None:
    """Header, schema of the card's backbone and kind, then every tensor finite."""
    source = f"module {module_sha256}"
    schema_name = f"the {card.backbone} {card.kind}-module schema"
    try:
        schema = module_schema(get_backbone(card.backbone), card.kind)
        check_safetensors_bytes(data, expected=schema, source=source, max_bytes=max_bytes,
                               schema_name=schema_name, max_abs=weight_bound(card.backbone))
    except ModuleFormatError as exc:
        raise invalid(str(exc)) from None
