"""matminer:<dataset> through matminer's real loader, offline.

matminer reads ``<data_home>/<name>.<file_type>`` when it exists (no hash check on a local
file) and downloads it otherwise. The local file is written by matminer's own writer from real
shared records; the download failure is real too, with the proxy pointed at a closed port.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from matminer.utils.io import store_dataframe_as_json

from moma.data.readers import load_dataset
from moma.data.records import Dataset
from moma.errors import DataError
from moma.paths import downstream_task_path


@pytest.fixture(scope="module")
def real() -> Dataset:
    full = load_dataset(downstream_task_path("jarvis_2d_exfoliation"))
    return full.subset(list(range(0, 600, 25)))  # 24 records


def write_jarvis_2d(home: Path, real: Dataset, *, nan_at: int | None = None) -> Path:
    """A jarvis_dft_2d file in matminer's format (pandas 'split' JSON, monty-encoded)."""
    frame = pd.DataFrame({
        "mpid": [r.id for r in real.records],
        "structure": [r.structure for r in real.records],
        "exfoliation_en": [r.target for r in real.records],
        "e_form": [0.1 * k for k in range(len(real))],
    })
    if nan_at is not None:
        frame.loc[nan_at, "exfoliation_en"] = math.nan
    path = home / "jarvis_dft_2d.json.gz"
    store_dataframe_as_json(frame, str(path), compression="gz", orient="split", pbar=False)
    return path


def test_local_file_in_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 real: Dataset) -> None:
    monkeypatch.setenv("MOMA_MATMINER_HOME", str(tmp_path))
    write_jarvis_2d(tmp_path, real)
    dataset = load_dataset("matminer:jarvis_dft_2d", target="exfoliation_en")
    assert dataset.name == "jarvis_dft_2d:exfoliation_en"
    assert dataset.unit == "Exfoliation energy (monolayer formation E) in meV/atom"
    assert dataset.splits == {}
    assert dataset.report.n_read == len(dataset) == 24
    assert dataset.ids == real.ids  # from the mpid column
    assert [r.target for r in dataset.records] == [r.target for r in real.records]
    for got, want in zip(dataset.records, real.records, strict=True):
        assert got.structure == want.structure
    assert load_dataset("matminer:jarvis_dft_2d", target="e_form", task="t").name == "t"


def test_invalid_rows_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   real: Dataset) -> None:
    monkeypatch.setenv("MOMA_MATMINER_HOME", str(tmp_path))
    write_jarvis_2d(tmp_path, real, nan_at=3)
    with pytest.raises(DataError, match=rf"^matminer:jarvis_dft_2d: 1 invalid record\(s\): record "
                                        rf"'{real.ids[3]}': target is NaN\. .*23 valid records$"):
        load_dataset("matminer:jarvis_dft_2d", target="exfoliation_en")
    dataset = load_dataset("matminer:jarvis_dft_2d", target="exfoliation_en", skip_invalid=True)
    assert len(dataset) == 23
    assert [(r.id, r.reason) for r in dataset.report.rejected] == [(real.ids[3], "target is NaN")]


def test_target_and_name_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOMA_MATMINER_HOME", str(tmp_path))
    with pytest.raises(DataError, match=r"pick the target column with --target \(columns: .*exf"):
        load_dataset("matminer:jarvis_dft_2d")
    with pytest.raises(DataError, match="has no column 'band_gap'; pick one of"):
        load_dataset("matminer:jarvis_dft_2d", target="band_gap")
    with pytest.raises(DataError, match=r"no dataset 'jarvis_2d' \(similar: .*jarvis_dft_2d"):
        load_dataset("matminer:jarvis_2d", target="x")
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded for a bad request


def test_download_failure_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "matminer-home"
    monkeypatch.setenv("MOMA_MATMINER_HOME", str(home))
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there: no network
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(DataError) as info:
        load_dataset("matminer:jarvis_dft_2d", target="exfoliation_en")
    message = str(info.value)
    assert message.startswith(
        f"matminer:jarvis_dft_2d: jarvis_dft_2d.json.gz is not in {home} and could not be "
        "downloaded ("
    )
    assert "download it once on a machine with internet" in message
    assert f"copy jarvis_dft_2d.json.gz into {home}, or set MOMA_MATMINER_HOME" in message
    assert not (home / "jarvis_dft_2d.json.gz").exists()
