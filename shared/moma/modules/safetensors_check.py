"""Safetensors files checked before a single tensor is touched.

Module weights come from other labs and over the network, so a module file is untrusted input.
The safetensors format (8-byte little-endian header length, a JSON header mapping tensor names to
``{dtype, shape, data_offsets}``, then the raw data area) can be validated completely from its
header: this file does that, with its own caps on sizes, and only then lets the ``safetensors``
library materialize the tensors, which are finally checked for NaN/inf and, when a schema is
given, against the expected names, shapes and dtypes.

Pickle files (plain pickles and PyTorch checkpoints, zip or legacy) are recognised by their
first bytes and refused with a message saying so: MoMa never unpickles.

Every failure is a :class:`~moma.errors.ModuleFormatError` naming the file, the problem and the
fix.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import torch as safetensors_torch

from moma.errors import ModuleFormatError

MAX_HEADER_BYTES = 8 * 1024 * 1024
"""Default cap on the JSON header (a CHGNet module's header is ~30 kB)."""
MAX_MODULE_BYTES = 1024 * 1024 * 1024
"""Default cap on a whole module file (CGCNN ~0.4 MB, CHGNet ~2 MB)."""

DTYPE_SIZES: dict[str, int] = {
    "F16": 2, "BF16": 2, "F32": 4, "F64": 8,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
TORCH_DTYPE_NAMES: dict[torch.dtype, str] = {
    torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}

Schema = Mapping[str, tuple[tuple[int, ...], str]]
_PREFIX = 8
_REFETCH = "fetch or export the module again"
_NO_PICKLE = "MoMa never unpickles; convert it to safetensors on a trusted machine"


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header describes it; offsets are relative to the data area."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def dtype_name(dtype: torch.dtype) -> str:
    """The safetensors name (``"F32"``...) of an allowed torch dtype; ``ValueError`` otherwise."""
    if dtype not in TORCH_DTYPE_NAMES:
        raise ValueError(f"dtype {dtype} is not allowed in a module; use one of "
                         f"{', '.join(DTYPE_SIZES)}")
    return TORCH_DTYPE_NAMES[dtype]


def _fail(source: str, problem: str) -> ModuleFormatError:
    return ModuleFormatError(f"{source}: {problem}")


def _sniff(head: bytes | bytearray, size: int, source: str) -> None:
    """Refuse empty, tiny and pickle files from their first bytes."""
    if size == 0:
        raise _fail(source, f"file is empty (0 bytes); the copy or download was cut: {_REFETCH}")
    if head.startswith(b"PK\x03\x04"):
        raise _fail(source, f"this is a PyTorch pickle checkpoint (a zip archive); {_NO_PICKLE}")
    # Pickle protocol >= 2 starts with 0x80 and the protocol number. A real safetensors file can
    # also start with 0x80 (a header length ending in 0x80) but then its header opens with "{".
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5 and head[8:9] != b"{":
        raise _fail(source, f"this is a pickle file (a Python pickle or legacy PyTorch "
                            f"checkpoint), not safetensors; {_NO_PICKLE}")
    if size < _PREFIX:
        raise _fail(source, f"file is {size} bytes, too small for the 8-byte header length of "
                            f"a safetensors file; {_REFETCH}")


def _header_length(head: bytes | bytearray, size: int, source: str, max_header_bytes: int) -> int:
    (length,) = struct.unpack("<Q", head[:_PREFIX])
    if length > max_header_bytes:
        raise _fail(source, f"header length {length} bytes exceeds the cap of {max_header_bytes}; "
                            "this is not a MoMa module (or a hostile one): do not use it")
    if length > size - _PREFIX:
        raise _fail(source, f"header claims {length} bytes but only {size - _PREFIX} follow the "
                            f"8-byte prefix: the file is truncated or not safetensors; {_REFETCH}")
    if length < 2:
        raise _fail(source, f"header length is {length}, too small for a JSON object; {_REFETCH}")
    return int(length)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tensor_info(name: str, entry: Any, source: str) -> TensorInfo:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise _fail(source, f"header entry {name!r} must be an object with exactly dtype, shape "
                            f"and data_offsets; {_REFETCH}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_SIZES:
        raise _fail(source, f"tensor {name!r} has dtype {dtype!r}, not one of "
                            f"{', '.join(DTYPE_SIZES)}; save the tensors in an allowed dtype")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise _fail(source, f"tensor {name!r} has shape {shape!r}, not a list of non-negative "
                            f"integers; {_REFETCH}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_int, offsets))
            or not 0 <= offsets[0] <= offsets[1]):
        raise _fail(source, f"tensor {name!r} has data_offsets {offsets!r}, not [begin, end] "
                            f"integers with 0 <= begin <= end; {_REFETCH}")
    info = TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1])
    nbytes = info.numel * DTYPE_SIZES[dtype]
    if info.end - info.begin != nbytes:
        raise _fail(source, f"tensor {name!r} data_offsets {offsets} span {info.end - info.begin} "
                            f"bytes but shape {shape} of {dtype} needs {nbytes}; {_REFETCH}")
    return info


def _check_layout(infos: list[TensorInfo], data_len: int, source: str) -> None:
    """Tensors must tile the data area exactly: no overlap, no gap, nothing past the end."""
    cursor, previous = 0, None
    for info in sorted(infos, key=lambda i: (i.begin, i.end)):
        if info.begin < cursor:
            raise _fail(source, f"tensor {info.name!r} (bytes {info.begin}..{info.end}) overlaps "
                                f"tensor {previous!r} (ends at {cursor}); the header is corrupt "
                                f"or hostile: {_REFETCH}")
        if info.begin > cursor:
            raise _fail(source, f"bytes {cursor}..{info.begin} of the data area belong to no "
                                f"tensor (gap before {info.name!r}); {_REFETCH}")
        if info.end > data_len:
            raise _fail(source, f"tensor {info.name!r} needs bytes {info.begin}..{info.end} but "
                                f"the data area holds only {data_len}: the file is truncated or "
                                f"the header claims more bytes than the file holds; {_REFETCH}")
        cursor, previous = info.end, info.name
    if cursor != data_len:
        raise _fail(source, f"data area is {data_len} bytes but the header describes {cursor}: "
                            f"{data_len - cursor} unexplained trailing bytes; {_REFETCH}")


def _parse_header(raw: bytes | bytearray, data_len: int, source: str) -> dict[str, TensorInfo]:
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _fail(source, f"header is not valid UTF-8 JSON ({exc}); the file is corrupt or not "
                            f"safetensors: {_REFETCH}") from None
    if not isinstance(header, dict):
        raise _fail(source, f"header is a JSON {type(header).__name__}, not an object mapping "
                            f"tensor names to dtype/shape/data_offsets; {_REFETCH}")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _fail(source, "header __metadata__ must map strings to strings; " + _REFETCH)
    infos = {name: _tensor_info(name, entry, source) for name, entry in header.items()}
    _check_layout(list(infos.values()), data_len, source)
    return infos


def _read_head(path: Path, source: str, max_bytes: int, max_header_bytes: int) -> tuple[bytes, int]:
    """Prefix and header of a file on disk (not the data area), and the file size."""
    size = _file_size(path, source, max_bytes)
    with path.open("rb") as handle:
        head = handle.read(16)
        _sniff(head, size, source)
        length = _header_length(head, size, source, max_header_bytes)
        handle.seek(0)
        return handle.read(_PREFIX + length), size


def _file_size(path: Path, source: str, max_bytes: int) -> int:
    if not path.is_file():
        raise _fail(source, "module weights file not found; check the path (a module folder "
                            "holds module.safetensors and card.json)")
    size = path.stat().st_size
    if size > max_bytes:
        raise _fail(source, f"file is {size} bytes, over the cap of {max_bytes}; raise max_bytes "
                            "only for a module you trust")
    return size


def check_header(
    data: bytes | bytearray | Path,
    *,
    source: str | None = None,
    max_bytes: int = MAX_MODULE_BYTES,
    max_header_bytes: int = MAX_HEADER_BYTES,
) -> dict[str, TensorInfo]:
    """Parse and check the header of a safetensors file or buffer without reading any tensor.

    ``max_bytes`` caps the whole file, ``max_header_bytes`` the JSON header. Returns the tensors
    described by the header (``__metadata__`` excluded), keyed by name.
    """
    head: bytes | bytearray
    if isinstance(data, Path):
        src = source or str(data)
        head, size = _read_head(data, src, max_bytes, max_header_bytes)
    else:
        src, head, size = source or "<bytes>", data, len(data)
        if size > max_bytes:
            raise _fail(src, f"module is {size} bytes, over the cap of {max_bytes}; raise "
                             "max_bytes only for a module you trust")
        _sniff(head, size, src)
    length = _header_length(head, size, src, max_header_bytes)
    return _parse_header(head[_PREFIX : _PREFIX + length], size - _PREFIX - length, src)


def check_schema(infos: Mapping[str, TensorInfo], expected: Schema, source: str,
                 schema_name: str = "the expected schema") -> None:
    """Names, shapes and dtypes must equal ``expected`` exactly; every difference is named."""
    problems: list[str] = []
    missing = sorted(set(expected) - set(infos))
    unexpected = sorted(set(infos) - set(expected))
    if missing:
        problems.append(f"{len(missing)} missing tensor(s): {', '.join(missing[:5])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s): {', '.join(unexpected[:5])}")
    for name in sorted(set(infos) & set(expected)):
        shape, dtype = expected[name]
        info = infos[name]
        if info.shape != tuple(shape):
            problems.append(f"tensor {name!r} has shape {list(info.shape)}, expected {list(shape)}")
        if info.dtype != dtype:
            problems.append(f"tensor {name!r} has dtype {info.dtype}, expected {dtype}")
    if problems:
        shown = "; ".join(problems[:6]) + ("; ..." if len(problems) > 6 else "")
        raise _fail(source, f"does not match {schema_name}: {shown}; the module was saved from "
                            "another architecture or kind: use a module of this backbone")


def check_finite(state: Mapping[str, torch.Tensor], source: str,
                 max_abs: float | None = None) -> None:
    """Refuse NaN/inf in any floating tensor (a diverged or tampered module), and with
    ``max_abs`` any weight of larger magnitude (see :mod:`moma.modules.weight_bounds`)."""
    bad = [(name, int((~torch.isfinite(t)).sum())) for name, t in sorted(state.items())
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        listed = ", ".join(f"{name!r} ({count})" for name, count in bad[:5])
        raise _fail(source, f"non-finite values (NaN/inf) in tensor(s) {listed}; the module "
                            "comes from a diverged or corrupted run: retrain or re-export it")
    if max_abs is not None:
        over = [(name, int((t.abs() > max_abs).sum()), float(t.abs().max()))
                for name, t in sorted(state.items())
                if t.is_floating_point() and t.numel() and float(t.abs().max()) > max_abs]
        _refuse_large(over, max_abs, source)


def _refuse_large(over: list[tuple[str, int, float]], max_abs: float, source: str) -> None:
    if over:
        listed = ", ".join(f"{name!r} ({count}, largest {top:.3g})"
                           for name, count, top in over[:5])
        raise _fail(source, f"weights of magnitude above {max_abs:g}, this backbone's bound, "
                            f"in tensor(s) {listed}; the module comes from a diverged or "
                            "tampered run: retrain it")


def read_safetensors_bytes(
    data: bytes,
    *,
    expected: Schema | None = None,
    source: str = "<bytes>",
    max_bytes: int = MAX_MODULE_BYTES,
    max_header_bytes: int = MAX_HEADER_BYTES,
    schema_name: str = "the expected schema",
    max_abs: float | None = None,
) -> dict[str, torch.Tensor]:
    """Check a safetensors buffer completely, then return its tensors (all finite, and with
    ``max_abs`` none larger in magnitude)."""
    infos = check_header(data, source=source, max_bytes=max_bytes,
                         max_header_bytes=max_header_bytes)
    if expected is not None:
        check_schema(infos, expected, source, schema_name)
    try:
        state = safetensors_torch.load(data)
    except Exception as exc:  # the library's own checks, after ours: should not happen
        raise _fail(source, f"safetensors could not read the file ({exc}); {_REFETCH}") from None
    check_finite(state, source, max_abs)
    return state


_NUMPY_FLOATS = {"F16": np.float16, "F32": np.float32, "F64": np.float64}


def _float_values(view: memoryview, dtype: str) -> np.ndarray | None:
    """The raw little-endian tensor bytes as numbers (None for integer dtypes); no copy except
    for BF16, widened to float32 (numpy has no bfloat16)."""
    if dtype == "BF16":
        bits = np.frombuffer(view, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32)
    if dtype not in _NUMPY_FLOATS:
        return None
    return np.frombuffer(view, dtype=np.dtype(_NUMPY_FLOATS[dtype]).newbyteorder("<"))


def _non_finite(view: memoryview, dtype: str) -> int:
    """How many NaN/inf values the raw little-endian tensor bytes hold (0 for integer dtypes)."""
    values = _float_values(view, dtype)
    if values is None:
        return 0
    finite = np.isfinite(values)
    return 0 if finite.all() else int(values.size - np.count_nonzero(finite))


def _over(view: memoryview, dtype: str, max_abs: float) -> tuple[int, float]:
    """How many values are larger in magnitude than ``max_abs``, and the largest magnitude."""
    values = _float_values(view, dtype)
    if values is None or values.size == 0:
        return 0, 0.0
    magnitude = np.abs(values)
    return int(np.count_nonzero(magnitude > max_abs)), float(magnitude.max())


def check_safetensors_bytes(
    data: bytes | bytearray,
    *,
    expected: Schema | None = None,
    source: str = "<bytes>",
    max_bytes: int = MAX_MODULE_BYTES,
    max_header_bytes: int = MAX_HEADER_BYTES,
    schema_name: str = "the expected schema",
    max_abs: float | None = None,
) -> dict[str, TensorInfo]:
    """Every check of :func:`read_safetensors_bytes` without building tensors.

    For a receiver that stores the bytes rather than using them (the hub): the finiteness check
    reads the tensors in place with numpy, so no copy of the module is made.
    """
    infos = check_header(data, source=source, max_bytes=max_bytes,
                         max_header_bytes=max_header_bytes)
    if expected is not None:
        check_schema(infos, expected, source, schema_name)
    view = memoryview(data)
    start = _PREFIX + struct.unpack("<Q", bytes(data[:_PREFIX]))[0]  # the data area
    bad = [(i.name, n) for i in sorted(infos.values(), key=lambda i: i.name)
           if (n := _non_finite(view[start + i.begin:start + i.end], i.dtype))]
    if bad:
        listed = ", ".join(f"{name!r} ({count})" for name, count in bad[:5])
        raise _fail(source, f"non-finite values (NaN/inf) in tensor(s) {listed}; the module "
                            "comes from a diverged or corrupted run: retrain or re-export it")
    if max_abs is not None:
        over = [(i.name, n, top) for i in sorted(infos.values(), key=lambda i: i.name)
                for n, top in [_over(view[start + i.begin:start + i.end], i.dtype, max_abs)]
                if n]
        _refuse_large(over, max_abs, source)
    return infos


def read_file_capped(path: Path, max_bytes: int = MAX_MODULE_BYTES) -> bytes:
    """All bytes of ``path``, refusing a missing file or one over ``max_bytes`` before reading."""
    _file_size(path, str(path), max_bytes)
    with path.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _fail(str(path), f"file grew over the cap of {max_bytes} bytes while being read")
    return data


def read_safetensors(
    path: Path,
    *,
    expected: Schema | None = None,
    max_bytes: int = MAX_MODULE_BYTES,
    max_header_bytes: int = MAX_HEADER_BYTES,
    schema_name: str = "the expected schema",
) -> dict[str, torch.Tensor]:
    """Read a safetensors file once into memory, check it completely, return its tensors.

    Reading the bytes once means the checked bytes are the loaded bytes (no window in which the
    file could change between check and load).
    """
    data = read_file_capped(path, max_bytes)
    return read_safetensors_bytes(data, expected=expected, source=str(path), max_bytes=max_bytes,
                                  max_header_bytes=max_header_bytes, schema_name=schema_name)


__all__ = [
    "DTYPE_SIZES",
    "FLOAT_DTYPES",
    "MAX_HEADER_BYTES",
    "MAX_MODULE_BYTES",
    "Schema",
    "TensorInfo",
    "check_finite",
    "check_header",
    "check_schema",
    "dtype_name",
    "read_file_capped",
    "read_safetensors",
    "read_safetensors_bytes",
]
