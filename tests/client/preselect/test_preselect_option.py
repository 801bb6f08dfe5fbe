"""The --preselect option's values."""

from __future__ import annotations

import pytest

from moma.errors import MomaError
from moma_client.cli.preselect_options import parse_preselect


def test_values() -> None:
    assert parse_preselect("none") is None and parse_preselect("None") is None
    assert parse_preselect("50") == 50 and parse_preselect("1") == 1
    for bad in ("0", "-3", "ten", ""):
        with pytest.raises(MomaError, match="--preselect"):
            parse_preselect(bad)
