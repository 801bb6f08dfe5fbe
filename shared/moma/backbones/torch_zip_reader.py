"""Read a PyTorch zip checkpoint without unpickling it.

``torch.save`` writes a zip archive: ``<prefix>/data.pkl`` is a pickle of the saved object, and
every tensor's storage is a raw little-endian byte record ``<prefix>/data/<key>``. Unpickling
``data.pkl`` (what ``torch.load`` does) can import and call anything the file names, so a
downloaded checkpoint could run code. This reader never unpickles: it walks ``data.pkl`` with
:func:`pickletools.genops` (a tokenizer that builds no object and runs no code) and interprets a
small whitelist of opcodes itself: containers, strings, numbers, ``None``/booleans, the memo,
persistent ids, and calls to a handful of whitelisted globals that are re-implemented here
(``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and friends, the typed storage
classes). Tensors are rebuilt with :func:`numpy.frombuffer` on the storage record, then the
storage offset, size and stride, and copied into a fresh contiguous torch tensor (views that
shared a storage in the file become independent copies). Anything else, such as a reference
to ``os.system``, raises :class:`moma.errors.ModuleFormatError` before any of it is used.
"""

from __future__ import annotations

import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from pickletools import genops
from typing import Any, NoReturn

import numpy as np
import torch

from moma.errors import ModuleFormatError

MAX_PICKLE_BYTES = 64 * 1024 * 1024
"""``data.pkl`` above this size is refused: a weights checkpoint's structure is small."""


@dataclass(frozen=True)
class StorageType:
    """A whitelisted ``torch.<Name>Storage`` class: how its bytes map to numpy and torch."""

    name: str
    numpy_dtype: str
    torch_dtype: torch.dtype


_STORAGE_TYPES: dict[str, StorageType] = {
    st.name: st
    for st in (
        StorageType("FloatStorage", "f4", torch.float32),
        StorageType("DoubleStorage", "f8", torch.float64),
        StorageType("HalfStorage", "f2", torch.float16),
        StorageType("BFloat16Storage", "u2", torch.bfloat16),  # numpy has no bfloat16: bits
        StorageType("LongStorage", "i8", torch.int64),
        StorageType("IntStorage", "i4", torch.int32),
        StorageType("ShortStorage", "i2", torch.int16),
        StorageType("CharStorage", "i1", torch.int8),
        StorageType("ByteStorage", "u1", torch.uint8),
        StorageType("BoolStorage", "b1", torch.bool),
    )
}

_PUSH_ARG = frozenset({
    "BININT", "BININT1", "BININT2", "INT", "LONG", "LONG1", "LONG4", "BINFLOAT", "FLOAT",
    "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "UNICODE",
    "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
})
_PUSH_CONST: dict[str, Any] = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
_IGNORED = frozenset({"PROTO", "FRAME"})
_EMPTY: dict[str, Callable[[], Any]] = {"EMPTY_DICT": dict, "EMPTY_LIST": list,
                                         "EMPTY_TUPLE": tuple}
_TUPLE_N = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}


@dataclass
class _Storage:
    """One storage record, decoded once and shared by every tensor that views it."""

    array: np.ndarray
    storage_type: StorageType


class _Interpreter:
    """Evaluates the whitelisted subset of the pickle machine over :func:`pickletools.genops`."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, source: str) -> None:
        self.archive = archive
        self.prefix = prefix
        self.source = source
        self.storages: dict[str, _Storage] = {}
        order_name = self.record("byteorder")
        order = "little"
        if order_name in archive.namelist():
            order = archive.read(order_name).decode("ascii", "replace").strip()
        if order not in ("little", "big"):
            self.fail(f"byte order record says {order!r}; expected 'little' or 'big'")
        self.byteorder = "<" if order == "little" else ">"
        self.globals: dict[tuple[str, str], Any] = {
            ("collections", "OrderedDict"): self.ordered_dict,
            ("torch._utils", "_rebuild_tensor_v2"): self.rebuild_tensor_v2,
            ("torch._utils", "_rebuild_tensor"): self.rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): self.rebuild_parameter,
        }
        for name, storage_type in _STORAGE_TYPES.items():
            self.globals[("torch", name)] = storage_type

    def record(self, name: str) -> str:
        """The archive member ``name`` under the checkpoint's top-level folder."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def fail(self, problem: str) -> NoReturn:
        raise ModuleFormatError(
            f"{self.source}: {problem}; this reader accepts only weights checkpoints (tensors "
            "in dicts/lists/tuples of plain values): re-save the weights with "
            "torch.save(model.state_dict()) or as safetensors"
        )

    # -- whitelisted globals, re-implemented -------------------------------------------------

    def ordered_dict(self, *args: Any) -> OrderedDict[Any, Any]:
        if len(args) > 1 or (args and not isinstance(args[0], list | tuple)):
            self.fail("collections.OrderedDict called with arguments other than a list of pairs")
        return OrderedDict(args[0] if args else ())

    def rebuild_tensor_v2(self, storage: Any, offset: Any, size: Any, stride: Any,
                          requires_grad: Any = False, backward_hooks: Any = None,
                          metadata: Any = None) -> torch.Tensor:
        if not isinstance(requires_grad, bool) or not isinstance(backward_hooks, dict | None):
            self.fail("_rebuild_tensor_v2 called with unexpected arguments")
        if backward_hooks or metadata:
            self.fail("a tensor carries backward hooks or metadata (they would run code)")
        return self.rebuild_tensor(storage, offset, size, stride)

    def rebuild_parameter(self, data: Any, requires_grad: Any, backward_hooks: Any) -> Any:
        if not isinstance(data, torch.Tensor) or backward_hooks:
            self.fail("_rebuild_parameter called on something other than a plain tensor")
        return data

    def rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any) -> torch.Tensor:
        if not isinstance(storage, _Storage):
            self.fail("a tensor is rebuilt from something that is not a storage record")
        ints = (offset, *size, *stride) if isinstance(size, tuple) and isinstance(
            stride, tuple) else None
        if ints is None or len(size) != len(stride) or not all(
                type(v) is int and v >= 0 for v in ints):
            self.fail(f"tensor geometry offset={offset!r} size={size!r} stride={stride!r} "
                      "is not a list of non-negative integers")
        array = storage.array
        if 0 not in size:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
            if last >= array.size:
                self.fail(f"tensor of size {size} at offset {offset} reads past its storage "
                          f"of {array.size} elements")
            view = np.lib.stride_tricks.as_strided(
                array[offset:], shape=size, strides=[s * array.itemsize for s in stride],
                writeable=False)
        else:
            view = np.empty(size, dtype=array.dtype)
        # A native-order, C-contiguous copy (np.ascontiguousarray would turn 0-d into 1-d).
        native = np.array(view, dtype=array.dtype.newbyteorder("="), order="C", copy=True)
        tensor = torch.from_numpy(native)
        if storage.storage_type.torch_dtype == torch.bfloat16:
            tensor = tensor.view(torch.bfloat16)
        return tensor

    # -- persistent ids: storage records -----------------------------------------------------

    def load_storage(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], StorageType) and isinstance(pid[2], str)
                and isinstance(pid[3], str) and type(pid[4]) is int):
            self.fail(f"persistent id {pid!r} is not ('storage', <Type>Storage, key, "
                      "location, numel)")
        _, storage_type, key, _location, numel = pid
        if key in self.storages:
            return self.storages[key]
        name = self.record(f"data/{key}")
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            self.fail(f"storage record {name} is missing")
        dtype = np.dtype(storage_type.numpy_dtype).newbyteorder(self.byteorder)
        if info.file_size != numel * dtype.itemsize:  # checked before reading a byte of it
            self.fail(f"storage record {name} holds {info.file_size} bytes, expected {numel} x "
                      f"{dtype.itemsize}")
        raw = self.archive.read(info)
        storage = _Storage(np.frombuffer(raw, dtype=dtype), storage_type)
        self.storages[key] = storage
        return storage

    # -- the machine -------------------------------------------------------------------------

    def run(self, data: bytes) -> Any:
        """Interpret ``data`` (the bytes of data.pkl) and return the object it describes."""
        self.stack: list[Any] = []
        self.marks: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        try:
            for opcode, arg, pos in genops(data):
                if opcode.name == "STOP":
                    if len(self.stack) != 1 or self.marks:
                        self.fail("pickle stops with a malformed stack")
                    return self.stack.pop()
                self.step(opcode.name, arg, pos)
        except ModuleFormatError:
            raise
        except (ValueError, IndexError, KeyError, TypeError, OverflowError,
                zipfile.BadZipFile) as exc:
            self.fail(f"data.pkl is malformed ({exc})")
        self.fail("data.pkl ends without a STOP opcode")

    def pop_mark(self) -> list[Any]:
        """The items pushed since the last MARK; the stack below the MARK becomes current."""
        if not self.marks:
            self.fail("pickle pops a MARK that was never pushed")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def target(self, kind: type) -> Any:
        """The container under construction on top of the stack, checked to be a ``kind``."""
        if not self.stack or not isinstance(self.stack[-1], kind):
            found = type(self.stack[-1]).__name__ if self.stack else "nothing"
            self.fail(f"pickle adds items to {found}, expected a {kind.__name__}")
        return self.stack[-1]

    def step(self, name: str, arg: Any, pos: int | None) -> None:
        """Interpret one opcode; anything not handled here is refused."""
        stack = self.stack
        if name in _PUSH_ARG:
            stack.append(arg)
        elif name in _PUSH_CONST:
            stack.append(_PUSH_CONST[name])
        elif name in _IGNORED:
            pass
        elif name == "MARK":
            self.marks.append(stack)
            self.stack = []
        elif name in _EMPTY:
            stack.append(_EMPTY[name]())
        elif name in _TUPLE_N:
            n = _TUPLE_N[name]
            if len(stack) < n:
                self.fail(f"{name} at byte {pos} underflows the stack")
            packed = tuple(stack[len(stack) - n:])
            del stack[len(stack) - n:]
            stack.append(packed)
        elif name in ("TUPLE", "LIST", "DICT", "POP_MARK"):
            items = self.pop_mark()
            if name == "TUPLE":
                self.stack.append(tuple(items))
            elif name == "LIST":
                self.stack.append(items)
            elif name == "DICT":
                self.stack.append(dict(zip(items[::2], items[1::2], strict=True)))
        elif name == "APPENDS":
            items = self.pop_mark()
            self.target(list).extend(items)
        elif name == "SETITEMS":
            items = self.pop_mark()
            self.target(dict).update(zip(items[::2], items[1::2], strict=True))
        elif name == "APPEND":
            value = stack.pop()
            self.target(list).append(value)
        elif name == "SETITEM":
            value, key = stack.pop(), stack.pop()
            self.target(dict)[key] = value
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            self.memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(self.memo[arg])
        elif name == "POP":
            stack.pop()
        elif name == "DUP":
            stack.append(stack[-1])
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            stack.append(self.find_global(name, arg, pos))
        elif name == "REDUCE":
            args, func = stack.pop(), stack.pop()
            if not callable(func) or not isinstance(args, tuple):
                self.fail(f"REDUCE at byte {pos} calls a {type(func).__name__}, not an "
                          "allowed function")
            stack.append(func(*args))
        elif name == "BINPERSID":
            stack.append(self.load_storage(stack.pop()))
        elif name == "BUILD":
            state = stack.pop()
            target = stack[-1] if stack else None
            if not (isinstance(target, OrderedDict) and isinstance(state, dict)
                    and set(state) <= {"_metadata"}):
                self.fail(f"BUILD at byte {pos} sets state on a {type(target).__name__}; only "
                          "a state dict's _metadata is allowed")
            for key, value in state.items():
                setattr(target, key, value)
        else:
            self.fail(f"pickle opcode {name} at byte {pos} is not allowed")

    def find_global(self, name: str, arg: Any, pos: int | None) -> Any:
        """The re-implementation of a whitelisted global; any other global is refused."""
        if name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
        else:
            attr, module = self.stack.pop(), self.stack.pop()
        if (module, attr) not in self.globals:
            self.fail(f"global {module}.{attr} at byte {pos} is not on the allowed list "
                      "(unpickling would import and could call it)")
        return self.globals[(module, attr)]


def read_torch_zip(path: str | Path) -> Any:
    """The object saved in the PyTorch zip checkpoint at ``path``, with tensors, never unpickled.

    Raises :class:`ModuleFormatError` naming the file and the refused opcode or global when the
    checkpoint holds anything but tensors in plain containers.
    """
    source = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModuleFormatError(
            f"{source}: not a PyTorch zip checkpoint ({exc}); legacy (pre-1.6) checkpoints "
            "are refused: re-save the weights with a current torch or as safetensors"
        ) from exc
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise ModuleFormatError(
                f"{source}: expected exactly one data.pkl record, found {len(pickles)}; "
                "this is not a torch.save checkpoint"
            )
        info = archive.getinfo(pickles[0])
        if info.file_size > MAX_PICKLE_BYTES:
            raise ModuleFormatError(
                f"{source}: data.pkl is {info.file_size} bytes (limit {MAX_PICKLE_BYTES}); "
                "a weights checkpoint's structure is far smaller: check the file"
            )
        prefix = pickles[0][: -len("/data.pkl")] if "/" in pickles[0] else ""
        interpreter = _Interpreter(archive, prefix, source)
        return interpreter.run(archive.read(info))
