"""The safetensors checks: real module files pass, every kind of bad file is refused by name,
and no refused file ever reaches the tensor reader."""

from __future__ import annotations

import io
import json
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch

from moma.errors import ModuleFormatError
from moma.modules.safetensors_check import (
    MAX_HEADER_BYTES,
    check_header,
    check_safetensors_bytes,
    read_safetensors,
    read_safetensors_bytes,
)
from moma.paths import moe18_dir

CASTELLI = moe18_dir() / "castelli_eform.safetensors"


@pytest.fixture(scope="module")
def real_bytes() -> bytes:
    return CASTELLI.read_bytes()


@pytest.fixture
def no_tensor_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if a test's bad file gets as far as the safetensors tensor reader."""

    def refuse(_data: bytes) -> None:
        raise AssertionError("tensor data was read before the checks refused the file")

    monkeypatch.setattr(safetensors.torch, "load", refuse)


def build(header: dict[str, Any], data: bytes, *, length: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def refused(tmp_path: Path, content: bytes, *parts: str) -> str:
    """Write ``content`` as a .safetensors file, check both readers refuse it naming ``parts``."""
    path = tmp_path / "module.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModuleFormatError) as from_file:
        read_safetensors(path)
    with pytest.raises(ModuleFormatError) as from_bytes:
        read_safetensors_bytes(content, source="download")
    for buffer in (content, bytearray(content)):  # the hub's check, without building tensors
        with pytest.raises(ModuleFormatError) as in_place:
            check_safetensors_bytes(buffer, source="download")
        assert str(in_place.value) == str(from_bytes.value)
    message = str(from_file.value)
    assert message.startswith(str(path))
    assert str(from_bytes.value).startswith("download: ")
    for part in parts:
        assert part in message, message
    return message


def test_real_module_header_and_tensors(real_bytes: bytes) -> None:
    infos = check_header(CASTELLI)
    assert len(infos) == 54
    assert infos["embedding.weight"].shape == (64, 92)
    assert infos["embedding.weight"].dtype == "F32"
    assert infos["convs.0.bn1.num_batches_tracked"].shape == ()
    assert sum(i.end - i.begin for i in infos.values()) == len(real_bytes) - 8 - 4480
    # The header length 4480 = 0x1180 makes the first byte 0x80, like a pickle: must still pass.
    assert real_bytes[0] == 0x80
    state = read_safetensors(CASTELLI)
    reference = safetensors.torch.load(real_bytes)
    assert sorted(state) == sorted(reference)
    assert all(torch.equal(state[k], reference[k]) for k in state)


def test_header_only_check_reads_no_tensors(no_tensor_reads: None) -> None:
    assert set(check_header(CASTELLI)) == set(check_header(CASTELLI.read_bytes()))


def test_pickle_file_named_safetensors(tmp_path: Path, no_tensor_reads: None) -> None:
    content = pickle.dumps({"embedding.weight": [[1.0, 2.0]]})
    refused(tmp_path, content, "pickle", "MoMa never unpickles",
            "convert it to safetensors on a trusted machine")


def test_torch_zip_checkpoint(tmp_path: Path, no_tensor_reads: None) -> None:
    buffer = io.BytesIO()
    torch.save({"embedding.weight": torch.ones(2, 2)}, buffer)
    refused(tmp_path, buffer.getvalue(), "this is a PyTorch pickle checkpoint",
            "MoMa never unpickles")


def test_torch_legacy_checkpoint(tmp_path: Path, no_tensor_reads: None) -> None:
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buffer, _use_new_zipfile_serialization=False)
    refused(tmp_path, buffer.getvalue(), "pickle", "MoMa never unpickles")


def test_missing_empty_and_tiny_files(tmp_path: Path) -> None:
    with pytest.raises(ModuleFormatError, match="not found"):
        read_safetensors(tmp_path / "absent.safetensors")
    refused(tmp_path, b"", "empty")
    refused(tmp_path, b"\x02\x00\x00", "3 bytes, too small", "8-byte header length")


def test_truncated_file(tmp_path: Path, real_bytes: bytes, no_tensor_reads: None) -> None:
    message = refused(tmp_path, real_bytes[:-1000], "truncated")
    assert "data area holds only" in message


def test_header_claims_more_than_the_file(tmp_path: Path, no_tensor_reads: None) -> None:
    content = build({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8,
                    length=5000)
    refused(tmp_path, content, "header claims 5000 bytes", "truncated")


def test_huge_header_length(tmp_path: Path, no_tensor_reads: None) -> None:
    content = struct.pack("<Q", 2**40) + b"{}" + b"\0" * 16
    refused(tmp_path, content, f"exceeds the cap of {MAX_HEADER_BYTES}")
    small = build({}, b"")
    with pytest.raises(ModuleFormatError, match="exceeds the cap of 1"):
        read_safetensors_bytes(small, max_header_bytes=1)
    with pytest.raises(ModuleFormatError, match="over the cap of 4"):
        read_safetensors_bytes(small, max_bytes=4)


def test_header_not_json_or_not_object(tmp_path: Path, no_tensor_reads: None) -> None:
    refused(tmp_path, struct.pack("<Q", 4) + b"\xff\xfe{}", "not valid UTF-8 JSON")
    refused(tmp_path, build([], b""), "not an object")  # type: ignore[arg-type]
    dup = b'{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},' \
          b'"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    refused(tmp_path, struct.pack("<Q", len(dup)) + dup + b"\0", "duplicate key 'w'")
    deep = b"[" * 100_000 + b"]" * 100_000
    refused(tmp_path, struct.pack("<Q", len(deep)) + deep, "not valid UTF-8 JSON")
    refused(tmp_path, build({"__metadata__": {"a": 1}}, b""), "__metadata__ must map strings")


def test_safetensors_that_starts_like_a_pickle_is_accepted() -> None:
    """A header of 640 bytes makes the file start with 0x80 0x02, as pickle protocol 2 does."""
    header = {"__metadata__": {"note": "padded"},
              "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    raw = json.dumps(header).encode().ljust(640)
    content = struct.pack("<Q", 640) + raw + struct.pack("<2f", 1.5, -2.0)
    assert content[:2] == b"\x80\x02"
    state = read_safetensors_bytes(content, expected={"w": ((2,), "F32")})
    assert state["w"].tolist() == [1.5, -2.0]


def test_dtype_not_allowed(tmp_path: Path, no_tensor_reads: None) -> None:
    content = build({"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, b"\0\0")
    refused(tmp_path, content, "tensor 'w' has dtype 'F8_E4M3'", "F32")


@pytest.mark.parametrize("shape", [[-1], [2.0], "2", [True]])
def test_bad_shape(tmp_path: Path, shape: Any, no_tensor_reads: None) -> None:
    content = build({"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 8]}}, b"\0" * 8)
    refused(tmp_path, content, "tensor 'w' has shape", "non-negative integers")


def test_offsets_disagree_with_shape(tmp_path: Path, no_tensor_reads: None) -> None:
    content = build({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8)
    refused(tmp_path, content, "span 8 bytes", "needs 12")
    content = build({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8)
    refused(tmp_path, content, "0 <= begin <= end")


def test_overlapping_offsets(tmp_path: Path, no_tensor_reads: None) -> None:
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    refused(tmp_path, build(header, b"\0" * 12), "tensor 'b'", "overlaps tensor 'a'")


def test_gap_and_trailing_bytes(tmp_path: Path, no_tensor_reads: None) -> None:
    header = {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}
    refused(tmp_path, build(header, b"\0" * 8), "bytes 0..4", "belong to no tensor")
    header = {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    refused(tmp_path, build(header, b"\0" * 12), "8 unexplained trailing bytes")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values(tmp_path: Path, bad: float) -> None:
    weights = torch.zeros(3, 2)
    weights[1, 0] = bad
    content = safetensors.torch.save({"fine": torch.ones(2), "w": weights,
                                      "count": torch.tensor(3)})
    refused(tmp_path, content, "non-finite", "'w' (1)", "retrain")


def test_expected_schema(tmp_path: Path, no_tensor_reads: None) -> None:
    content = safetensors.torch.save({"a": torch.zeros(2, 3), "b": torch.zeros(4),
                                      "extra": torch.zeros(1)})
    expected = {"a": ((3, 2), "F32"), "b": ((4,), "F64"), "gone": ((1,), "F32")}
    with pytest.raises(ModuleFormatError) as info:
        read_safetensors_bytes(content, expected=expected, source="m.safetensors",
                               schema_name="the toy schema")
    message = str(info.value)
    assert message.startswith("m.safetensors: does not match the toy schema")
    assert "1 missing tensor(s): gone" in message
    assert "1 unexpected tensor(s): extra" in message
    assert "tensor 'a' has shape [2, 3], expected [3, 2]" in message
    assert "tensor 'b' has dtype F32, expected F64" in message


def test_in_place_check_accepts_real_module(real_bytes: bytes, no_tensor_reads: None) -> None:
    """The hub's check reads no tensor through safetensors and agrees with the header parse."""
    infos = check_safetensors_bytes(bytearray(real_bytes), source="hub")
    assert infos == check_header(real_bytes)
    assert len(infos) > 10


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_in_place_check_counts_non_finite_per_dtype(dtype: torch.dtype) -> None:
    values = torch.arange(12, dtype=torch.float32).reshape(3, 4).to(dtype)
    good = safetensors.torch.save({"a": values, "n": torch.arange(5)})
    assert check_safetensors_bytes(good)
    values[0, 1], values[2, 3], values[1, 0] = float("nan"), float("inf"), -float("inf")
    bad = safetensors.torch.save({"a": values, "n": torch.arange(5)})
    with pytest.raises(ModuleFormatError, match=r"'a' \(3\)"):
        check_safetensors_bytes(bad)
