"""Canonical JSON and signed times: the one byte form of every signed statement.

Signatures cover exact bytes, so every signed payload (manifest, countersignature, operator
request, federation join statement) is written in one canonical form: UTF-8, sorted keys, no
insignificant whitespace, no NaN/inf; times are ISO-8601 UTC to the second.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from moma.errors import TrustError

_UTC_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def canonical_json(obj: Any) -> bytes:
    """The one byte string that represents ``obj``: UTF-8, sorted keys, no spaces, no NaN/inf.

    Object keys must be strings (``json`` would silently turn ``1`` into ``"1"`` and let two
    keys collide). Floats are written in Python's shortest round-trip form.
    """
    _check_json_value(obj, "$")
    text = json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def _check_json_value(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise TrustError(
            f"cannot sign a non-finite number ({value}) at {where}: replace NaN/inf with null"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TrustError(f"JSON key {key!r} at {where} is not a string: use str keys")
            _check_json_value(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json_value(item, f"{where}[{index}]")
    elif not isinstance(value, str | int | float | bool | type(None)):
        raise TrustError(
            f"value of type {type(value).__name__} at {where} is not JSON: use str, number, "
            "bool, null, list or object"
        )


def format_utc(moment: datetime) -> str:
    """ISO-8601 UTC to the second, ``2025-01-31T12:00:00Z``: the only time form that is signed."""
    if moment.tzinfo is None:
        raise ValueError("format_utc needs a timezone-aware datetime (use datetime.now(UTC))")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> datetime:
    """Parse the form written by :func:`format_utc`; any other spelling is refused."""
    if not isinstance(text, str) or not _UTC_RE.fullmatch(text):
        raise TrustError(f"time {text!r} is not ISO-8601 UTC like 2025-01-31T12:00:00Z")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise TrustError(f"time {text!r} is not a valid calendar time") from None
