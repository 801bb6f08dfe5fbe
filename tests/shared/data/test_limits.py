"""Bounded decompression and parsing (issue class 4): every reader stops at its documented
limit, while streaming, with one line naming the limit and the variable that raises it."""

from __future__ import annotations

import copy
import gzip
import json
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from moma.data.readers import load_dataset
from moma.data.structure_files import read_structures
from moma.errors import DataError, ExitCode
from moma_client.cli.app import main
from tests.conftest import to_structure

MiB = 1024 * 1024


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_gzip_bomb_stops_at_the_limit_while_inflating(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bomb = tmp_path / "bomb.json.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as handle:
        handle.write(b'{"records": [' + b" " * (64 * MiB))
    assert bomb.stat().st_size < MiB // 4  # expands 256-fold or more
    monkeypatch.setenv("MOMA_MAX_DATA_BYTES", str(4 * MiB))
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as err:
            load_dataset(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "MOMA_MAX_DATA_BYTES" in str(err.value) and "expands past 4194304" in str(err.value)
    assert peak < 16 * MiB, peak  # never the 64 MiB the bomb expands to
    code, out, errors = run(["train", "--data", str(bomb), "--out", str(tmp_path / "m")], capsys)
    assert code == ExitCode.BAD_DATA and out == ""
    assert "decompression bomb" in errors and "MOMA_MAX_DATA_BYTES=8388608" in errors
    assert "Traceback" not in errors and not (tmp_path / "m").exists()


def test_plain_json_csv_and_extxyz_over_the_limit(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  jarvis_2d_eform: dict[str, Any]) -> None:
    monkeypatch.setenv("MOMA_MAX_DATA_BYTES", str(MiB))
    big = tmp_path / "big.json"
    big.write_text(json.dumps(jarvis_2d_eform, indent=8))  # 0.4 MB compact, over 1 MiB here
    assert big.stat().st_size > MiB
    cgcnn = tmp_path / "cgcnn"
    cgcnn.mkdir()
    (cgcnn / "id_prop.csv").write_text("".join(f"x{i},1.0\n" for i in range(200_000)))
    xyz = tmp_path / "many.extxyz"
    xyz.write_text("1\nLattice=\"5 0 0 0 5 0 0 0 5\" Properties=species:S:1:pos:R:3 target=1\n"
                   "H 0 0 0\n" * 30_000)
    for path in (big, cgcnn, xyz):
        with pytest.raises(DataError, match=r"over the limit of 1048576 bytes "
                                            r"\(MOMA_MAX_DATA_BYTES\)"):
            load_dataset(path)
    monkeypatch.setenv("MOMA_MAX_DATA_BYTES", str(64 * MiB))
    assert len(load_dataset(big).records) == len(jarvis_2d_eform["records"])


def test_structure_file_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              jarvis_2d_eform: dict[str, Any]) -> None:
    cif = tmp_path / "a.cif"
    to_structure(jarvis_2d_eform["records"][0]).to(filename=str(cif))
    cif.write_text(cif.read_text() + "#" * 4096 + "\n")
    assert len(read_structures([cif])) == 1
    monkeypatch.setenv("MOMA_MAX_STRUCTURE_FILE_BYTES", "2048")
    with pytest.raises(DataError, match=r"over the limit of 2048 bytes "
                                        r"\(MOMA_MAX_STRUCTURE_FILE_BYTES\)"):
        read_structures([cif])


def _cell_dataset(raw: dict[str, Any], repeat: int, scale: float = 1.0) -> dict[str, Any]:
    """The first record made a supercell of ``repeat``^3 cells (lattice scaled by ``scale``)."""
    data = copy.deepcopy(raw)
    record = data["records"][0]
    structure = to_structure(record)
    structure.make_supercell([repeat] * 3)
    record["structure"] = {"lattice": (structure.lattice.matrix * scale).tolist(),
                           "species": [str(s.specie) for s in structure],
                           "frac_coords": structure.frac_coords.tolist()}
    data["records"] = data["records"][:20]
    data["splits"] = {"seed0": {"train": list(range(12)), "val": list(range(12, 16)),
                                "test": list(range(16, 20))}}
    return data


def test_large_and_impossibly_dense_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          jarvis_2d_eform: dict[str, Any]) -> None:
    n0 = len(jarvis_2d_eform["records"][0]["structure"]["species"])
    repeat = int(np.ceil((1001 / n0) ** (1 / 3)))
    big = tmp_path / "big.json"
    big.write_text(json.dumps(_cell_dataset(jarvis_2d_eform, repeat)))
    n_atoms = n0 * repeat**3
    with pytest.raises(DataError, match=rf"structure has {n_atoms} atoms, over the limit of "
                                        r"1000 \(MOMA_MAX_ATOMS"):
        load_dataset(big)
    monkeypatch.setenv("MOMA_MAX_ATOMS", str(n_atoms))
    assert len(load_dataset(big).records) == 20
    dense = tmp_path / "dense.json"
    dense.write_text(json.dumps(_cell_dataset(jarvis_2d_eform, 1, scale=0.05)))
    with pytest.raises(DataError, match="denser than any material"):
        load_dataset(dense)


def test_deeply_nested_json(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(DataError, match="nested deeper"):
        load_dataset(deep)
