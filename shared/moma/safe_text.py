"""Untrusted text made safe to print: one escaping helper for both CLIs.

Card fields, lab names, task names, audit details and error messages from a hub all come
from someone else. Printed raw, an escape sequence can rewrite the operator's terminal, a
newline can forge a line (a fake "approved"), and a ``[/]`` crashes rich's markup parser.
Every print site of ``moma-client`` and ``moma-hub`` passes such strings through here:

- :func:`clean`: one printable line: control, format (bidi overrides, zero-width), private,
  surrogate and unassigned characters and line/paragraph separators become visible ``\\x..``
  / ``\\u....`` escapes, and a backslash is doubled so an escape cannot be faked;
- :func:`for_markup`: :func:`clean`, then rich markup escaped, for tables and markup lines;
- :func:`json_text`: JSON with every non-ASCII and control character escaped by ``json``.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from rich.markup import escape as _markup_escape

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})


def unsafe_char(ch: str) -> bool:
    """True for a character that must never reach a terminal raw."""
    return unicodedata.category(ch) in _UNSAFE_CATEGORIES


def _escaped(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if not unsafe_char(ch):
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 \
        else f"\\U{code:08x}"


def clean(value: object, limit: int | None = None) -> str:
    """``value`` as one printable line; cut to ``limit`` characters (with a count) if given."""
    text = "".join(map(_escaped, str(value)))
    if limit is not None and len(text) > limit:
        return f"{text[:limit]}... ({len(text)} characters)"
    return text


def for_markup(value: object, limit: int | None = None) -> str:
    """:func:`clean`, and safe inside rich markup (tables, ``Console.print``)."""
    return _markup_escape(clean(value, limit))


def json_text(payload: Any, *, indent: int | None = 2) -> str:
    """JSON for a terminal or a pipe: pure ASCII, every control character escaped."""
    return json.dumps(payload, indent=indent, sort_keys=True, ensure_ascii=True, default=str)
