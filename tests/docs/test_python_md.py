"""``docs/python.md`` runs as written: its example composes and predicts a DataFrame."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

DOC = Path(__file__).resolve().parents[2] / "docs" / "python.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_python_md_example_composes_and_predicts_a_dataframe() -> None:
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) == 1
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)
    result = namespace["result"]
    table = namespace["table"]
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["id", "prediction", "unit"]
    assert list(table["id"]) == ["NaCl", "MgO"]
    assert set(table["unit"]) == {"formation energy, eV/atom"}
    assert np.all(np.isfinite(table["prediction"]))
    # The same model through the other entry points gives the same numbers.
    again = namespace["model"].predict(list(namespace["structures"].values()))  # type: ignore[attr-defined]
    np.testing.assert_allclose(again["prediction"], table["prediction"], rtol=1e-6)
    copper = namespace["copper"]
    assert isinstance(copper, pd.DataFrame) and len(copper) == 1
    assert np.isfinite(copper["prediction"][0])
    weights = result.weights  # type: ignore[attr-defined]
    assert weights and abs(sum(weights.values()) - 1.0) < 1e-6
    metrics = result.metrics  # type: ignore[attr-defined]
    assert metrics["test_mae"] > 0 and np.isfinite(metrics["test_mae"])
    assert result.report["train_size"] == 60  # type: ignore[attr-defined]
