"""Chunks of a streamed module: the error check every sender adds and every receiver makes.

Uploads and downloads move a module in chunks of about 1 MiB (DESIGN.md section 7). Each chunk
carries zlib's CRC-32 of its bytes so that a chunk altered between the sender's memory and the
receiver's disk is refused at once, with its offset, instead of only when the whole file is
complete. CRC-32 rather than a per-chunk sha256: a chunk digest is never signed, so a stronger
hash would not stop anyone who can alter the stream; the security check is the sha256 of the
whole file against the signed manifest, which both sides compute once, while the bytes stream.
CRC-32 costs about a twentieth of a sha256 pass, and hashing every byte twice was the largest
avoidable cost of a transfer (docs/hub.md, transfer benchmark).

The CRC is computed by zlib-ng when it is installed (a dependency of the project): the same
CRC-32 (polynomial, reflection and final xor are zlib's, so every value is identical) with the
processor's carry-less multiply, about four times faster than the system zlib on this machine,
and both ends of every chunk pay for it. Without it, the standard library's zlib gives the same
numbers more slowly.

Building the messages: a protobuf ``bytes`` field copies its value in and out. The helpers here
copy each chunk once on the way in (:func:`upload_request` fills the nested message in place
instead of building a ``Chunk`` and copying it into the request) and read it once on the way out
(:func:`chunk_intact` checks the bytes a receiver already read, so it never copies a chunk twice).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from moma.proto.hub.v1 import hub_pb2

try:  # the same CRC-32, accelerated; optional so that a bare install still works
    from zlib_ng.zlib_ng import crc32 as _crc32_impl
except ImportError:  # pragma: no cover - exercised only without zlib-ng
    _crc32_impl = zlib.crc32

_CRC32: Callable[[bytes | bytearray | memoryview], int] = _crc32_impl
CRC32_BACKEND = "zlib-ng" if _crc32_impl is not zlib.crc32 else "zlib"
"""Which implementation computes :func:`crc32` in this process (reported by the benchmarks)."""


def crc32(data: bytes | bytearray | memoryview) -> int:
    """zlib's CRC-32 of ``data`` as an unsigned 32-bit integer."""
    return _CRC32(data) & 0xFFFFFFFF


def make_chunk(offset: int, data: bytes) -> hub_pb2.Chunk:
    """The protocol message for ``data`` found at ``offset`` of the module file."""
    return hub_pb2.Chunk(offset=offset, data=data, crc32=crc32(data))


def upload_request(upload_id: str, offset: int, data: bytes) -> hub_pb2.UploadRequest:
    """One ``UploadRequest`` carrying ``data`` found at ``offset`` (one copy of the bytes)."""
    request = hub_pb2.UploadRequest(upload_id=upload_id)
    chunk = request.chunk
    chunk.offset = offset
    chunk.data = data
    chunk.crc32 = crc32(data)
    return request


def chunk_intact(chunk: hub_pb2.Chunk, data: bytes | None = None) -> bool:
    """True if the chunk carries a CRC-32 and its bytes match it.

    ``data``: the chunk's bytes if the caller already read them (each read of the field copies
    them out of the message)."""
    if not chunk.HasField("crc32"):
        return False
    return crc32(chunk.data if data is None else data) == chunk.crc32


__all__ = ["CRC32_BACKEND", "chunk_intact", "crc32", "make_chunk",
           "upload_request"]
