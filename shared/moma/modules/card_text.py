"""Allowed characters and lengths of a card's text, checked when a hub accepts a card.

A card's strings reach other people's terminals and tools (the operator's review queue, a
downstream owner's listing), so the hub refuses, at StartUpload, a card whose text could do
harm there; printing escapes them as well (:mod:`moma.safe_text`). The rules
(docs/hub.md, "Card text"):

- identifiers (``backbone``, ``backbone_version``, ``kind``, ``task``,
  ``split``, ``software_version``, ``format``): ASCII letters, digits and ``_ . : + @ = / -``,
  starting with a letter or digit, 1 to 128 characters (versions 64);
- labels (``name``, ``unit``, ``property``, which is named in words, e.g. "e_form expt"):
  1 to 128 characters, no leading or trailing space, none of the
  unsafe characters below;
- every other string anywhere in the card (``created``, ``extra``, ``hyperparameters``,
  ``participants``, ``parents``, ``featurizer``, keys of ``metrics``...): at most 1,024
  characters (keys 128), none of the unsafe characters;
- unsafe: Unicode control, format (bidi overrides, zero-width), private-use, surrogate and
  unassigned characters and line/paragraph separators (newlines and escape sequences
  included);
- the card as canonical JSON is at most 64 KiB, nested at most 8 levels.
"""

from __future__ import annotations

import json
import re
from typing import Any

from moma.errors import ModuleFormatError
from moma.safe_text import clean, unsafe_char

IDENTIFIER_FIELDS = {"backbone": 128, "backbone_version": 64, "kind": 128, "task": 128,
                     "split": 128, "software_version": 64, "format": 128}
LABEL_FIELDS = {"name": 128, "unit": 128, "property": 128}
MAX_STRING = 1024
MAX_KEY = 128
MAX_CARD_BYTES = 64 * 1024
MAX_DEPTH = 8
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+@=/-]*")


def _fail(path: str, value: str, rule: str) -> ModuleFormatError:
    return ModuleFormatError(f"card field {path} = {clean(repr(value), 48)} {rule}: fix the "
                             "card (rules: docs/hub.md, 'Card text') and sign a new manifest")


def _check_string(path: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise _fail(path, value, f"is {len(value)} characters, over the limit of {limit}")
    bad = next((ch for ch in value if unsafe_char(ch)), None)
    if bad is not None:
        raise _fail(path, value, f"contains the control or invisible character U+{ord(bad):04X}")


def _walk(path: str, value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ModuleFormatError(f"card field {path} is nested deeper than {MAX_DEPTH} levels: "
                                "flatten it")
    if isinstance(value, str):
        _check_string(path, value, MAX_STRING)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_string(f"{path} key", str(key), MAX_KEY)
            _walk(f"{path}.{key}", item, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(f"{path}[{i}]", item, depth + 1)


def check_card_text(card: dict[str, Any]) -> None:
    """Raise :class:`ModuleFormatError` naming the first field that breaks a rule."""
    if not isinstance(card, dict):
        raise ModuleFormatError("a module card must be a JSON object")
    size = len(json.dumps(card, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_CARD_BYTES:
        raise ModuleFormatError(f"the card is {size} bytes of JSON, over the limit of "
                                f"{MAX_CARD_BYTES}: move bulky data out of the card")
    for field, limit in IDENTIFIER_FIELDS.items():
        value = card.get(field)
        if isinstance(value, str) and value:
            _check_string(field, value, limit)
            if _IDENTIFIER.fullmatch(value) is None:
                raise _fail(field, value, "may only hold ASCII letters, digits and _ . : + @ = / -"
                                          " (starting with a letter or digit)")
    for field, limit in LABEL_FIELDS.items():
        value = card.get(field)
        if isinstance(value, str):
            _check_string(field, value, limit)
            if value != value.strip() or (field == "name" and not value):
                raise _fail(field, value, "must not be empty or start or end with a space")
    for key, value in card.items():
        _check_string("card key", str(key), MAX_KEY)
        if key not in IDENTIFIER_FIELDS and key not in LABEL_FIELDS:
            _walk(str(key), value, 1)
