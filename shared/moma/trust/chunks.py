"""Chunks of a streamed module: the error check every sender adds and every receiver makes.

Uploads and downloads move a module in chunks of about 1 MiB (DESIGN.md section 7). Each chunk
carries zlib's CRC-32 of its bytes so that a chunk altered between the sender's memory and the
receiver's disk is refused at once, with its offset, instead of only when the whole file is
complete. CRC-32 rather than a per-chunk sha256: a chunk digest is never signed, so a stronger
hash would not stop anyone who can alter the stream; the security check is the sha256 of the
whole file against the signed manifest, which both sides compute once, while the bytes stream.
CRC-32 costs about a twentieth of a sha256 pass, and hashing every byte twice was the largest
avoidable cost of a transfer (docs/hub.md, transfer benchmark).
"""

from __future__ import annotations

import zlib

from moma.proto.hub.v1 import hub_pb2


def crc32(data: bytes | bytearray | memoryview) -> int:
    """zlib's CRC-32 of ``data`` as an unsigned 32-bit integer."""
    return zlib.crc32(data) & 0xFFFFFFFF


def make_chunk(offset: int, data: bytes) -> hub_pb2.Chunk:
    """The protocol message for ``data`` found at ``offset`` of the module file."""
    return hub_pb2.Chunk(offset=offset, data=data, crc32=crc32(data))


def chunk_intact(chunk: hub_pb2.Chunk) -> bool:
    """True if the chunk carries a CRC-32 and its bytes match it."""
    return chunk.HasField("crc32") and crc32(chunk.data) == chunk.crc32


__all__ = ["chunk_intact", "crc32", "make_chunk"]
