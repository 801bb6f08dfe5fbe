"""The pickle-free checkpoint reader: equal to torch.load on real files, refuses anything else."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from moma.backbones.chgnet.checkpoint import checkpoint_path
from moma.backbones.torch_zip_reader import read_torch_zip
from moma.errors import ModuleFormatError


def assert_same_tree(ours: Any, ref: Any, path: str = "") -> int:
    """Recursively compare structures; returns the number of tensors compared."""
    if isinstance(ref, torch.Tensor):
        assert isinstance(ours, torch.Tensor), path
        assert ours.dtype == ref.dtype and ours.shape == ref.shape, path
        assert torch.equal(ours, ref), path
        return 1
    assert type(ours) is type(ref), f"{path}: {type(ours)} != {type(ref)}"
    if isinstance(ref, dict):
        assert list(ours) == list(ref), path
        return sum(assert_same_tree(ours[k], ref[k], f"{path}/{k}") for k in ref)
    if isinstance(ref, list | tuple):
        assert len(ours) == len(ref), path
        return sum(assert_same_tree(a, b, f"{path}/{i}")
                   for i, (a, b) in enumerate(zip(ours, ref, strict=True)))
    assert ours == ref, path
    return 0


def test_chgnet_checkpoint_equals_torch_load() -> None:
    path = checkpoint_path()
    ours = read_torch_zip(path)
    ref = torch.load(path, map_location="cpu", weights_only=True)
    # 136 model tensors + the optimizer's Adam state (step, exp_avg, exp_avg_sq per param).
    assert assert_same_tree(ours, ref) == 517
    state = ours["model"]["state_dict"]
    assert len(state) == 136
    assert state._metadata == ref["model"]["state_dict"]._metadata
    assert ours["model"]["model_args"]["atom_graph_cutoff"] == 6
    assert ours["model"]["model_args"]["bond_graph_cutoff"] == 3


def test_dtypes_views_and_plain_values_equal_torch_load(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    obj = {
        "f32": torch.randn(3, 5, generator=gen),
        "f16": torch.randn(7, generator=gen).half(),
        "bf16": torch.randn(2, 3, generator=gen).bfloat16(),
        "i64": torch.arange(-5, 5),
        "i32": torch.arange(12, dtype=torch.int32).reshape(3, 4),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 200, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 5),
        "transposed": base.t(),  # non-contiguous stride
        "sliced": base[1:, 2:5],  # storage offset and shared storage
        "strided": base[:, ::2],
        "nested": [1, 2.5, None, True, "text", (3, (4, "x")), {"k": [torch.ones(2)]}],
        "param": torch.nn.Parameter(torch.full((2,), 7.0)),
        "odict": torch.nn.Linear(3, 2).state_dict(),
    }
    path = tmp_path / "mixed.pt"
    torch.save(obj, path)
    ours = read_torch_zip(path)
    ref = torch.load(path, weights_only=True)
    assert assert_same_tree(ours, ref) == 17
    assert ours["sliced"].tolist() == base[1:, 2:5].tolist()
    assert ours["scalar"].shape == ()
    # Views become independent copies: writing one does not change another.
    ours["sliced"][0, 0] = -1.0
    assert ours["transposed"][2, 1] == base[1, 2]


# -- hand-crafted pickles (assembled from opcodes; never handed to pickle) -----------------

def _str(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _ints(values: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(_int(v) for v in values) + b"t"


def _tensor_pickle(size: tuple[int, ...], stride: tuple[int, ...], offset: int, numel: int,
                   key: str = "0") -> bytes:
    pid = b"(" + _str("storage") + b"ctorch\nFloatStorage\n" + _str(key) + _str("cpu") + \
        _int(numel) + b"tQ"
    return (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(" + pid + _int(offset) + _ints(size)
            + _ints(stride) + b"\x89ccollections\nOrderedDict\n)RtR.")


def _checkpoint(path: Path, pickle_bytes: bytes, storages: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        for key, data in (storages or {}).items():
            archive.writestr(f"archive/data/{key}", data)
    return path


def test_handmade_strided_tensor(tmp_path: Path) -> None:
    values = torch.arange(8, dtype=torch.float32)
    path = _checkpoint(tmp_path / "t.pt", _tensor_pickle((2, 3), (1, 2), 1, 8),
                       {"0": values.numpy().tobytes()})
    tensor = read_torch_zip(path)
    assert tensor.tolist() == [[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]
    assert tensor.is_contiguous()


@pytest.mark.parametrize(
    ("size", "stride", "offset", "numel", "data_elems", "message"),
    [
        ((2, 3), (1, 3), 1, 8, 8, "reads past its storage"),
        ((2,), (1,), 0, 8, 7, "holds 28 bytes"),
        ((-1,), (1,), 0, 8, 8, "non-negative integers"),
    ],
)
def test_bad_tensor_geometry_refused(tmp_path: Path, size: tuple[int, ...],
                                     stride: tuple[int, ...], offset: int, numel: int,
                                     data_elems: int, message: str) -> None:
    path = _checkpoint(tmp_path / "bad.pt", _tensor_pickle(size, stride, offset, numel),
                       {"0": bytes(4 * data_elems)})
    with pytest.raises(ModuleFormatError, match=message):
        read_torch_zip(path)


def test_missing_storage_record_refused(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path / "missing.pt", _tensor_pickle((2,), (1,), 0, 2, key="9"))
    with pytest.raises(ModuleFormatError, match=r"archive/data/9 is missing"):
        read_torch_zip(path)


def test_os_system_global_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    command = f"touch {marker}"
    payloads = {
        # protocol 2: GLOBAL 'os system', a string argument, TUPLE1, REDUCE
        "global": b"\x80\x02cos\nsystem\n" + _str(command) + b"\x85R.",
        # protocol 4: the module and name pushed as strings, then STACK_GLOBAL
        "stack_global": (b"\x80\x04\x8c\x02os\x8c\x06system\x93" + _str(command) + b"\x85R."),
        # nested inside an otherwise valid state dict
        "nested": (b"\x80\x02ccollections\nOrderedDict\n)R" + _str("w") + b"cposix\nsystem\n"
                   + _str(command) + b"\x85Rs."),
    }
    for kind, payload in payloads.items():
        path = _checkpoint(tmp_path / f"{kind}.pt", payload)
        with pytest.raises(ModuleFormatError, match=r"global (os|posix)\.system") as info:
            read_torch_zip(path)
        assert str(path) in str(info.value)
        assert "\n" not in str(info.value)
    assert not marker.exists()


def test_builtins_eval_refused(tmp_path: Path) -> None:
    payload = b"\x80\x02cbuiltins\neval\n" + _str("1+1") + b"\x85R."
    with pytest.raises(ModuleFormatError, match=r"global builtins\.eval"):
        read_torch_zip(_checkpoint(tmp_path / "eval.pt", payload))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"(S'echo hi'\nios\nsystem\n.", "opcode STRING"),  # protocol-0 text string first
        (b"\x80\x02(ios\nsystem\n.", "opcode INST"),  # INST imports and calls in one opcode
        (b"\x80\x02ctorch\nFloatStorage\n)R.", "calls a StorageType"),  # a class is no function
        (b"\x80\x02]}b.", "BUILD"),  # BUILD on a list
        (b"\x80\x02}" + _str("x") + b"K\x01s", "before seeing STOP"),
    ],
)
def test_other_constructs_refused(tmp_path: Path, payload: bytes, message: str) -> None:
    with pytest.raises(ModuleFormatError, match=message):
        read_torch_zip(_checkpoint(tmp_path / "x.pt", payload))


def test_not_a_zip_refused(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pt"
    path.write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(ModuleFormatError, match="not a PyTorch zip checkpoint"):
        read_torch_zip(path)
