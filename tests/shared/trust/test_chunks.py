"""The chunk check both ends of a transfer make: same CRC-32 values whatever computes them."""

from __future__ import annotations

import random
import zlib

import pytest

from moma.proto.hub.v1 import hub_pb2
from moma.trust import chunks


@pytest.mark.parametrize("size", [0, 1, 7, 64, 4095, 65_537, 1024 * 1024])
def test_crc32_is_zlibs_crc32(size: int) -> None:
    data = random.Random(size).randbytes(size)
    assert chunks.crc32(data) == zlib.crc32(data) & 0xFFFFFFFF
    assert chunks.crc32(memoryview(data)) == zlib.crc32(data) & 0xFFFFFFFF


def test_known_crc32_values() -> None:
    # the standard check value of CRC-32 (ISO-HDLC) and the empty string
    assert chunks.crc32(b"123456789") == 0xCBF43926
    assert chunks.crc32(b"") == 0


def test_the_accelerated_backend_is_in_use() -> None:
    # zlib-ng is a dependency: a missing install would silently cost every transfer
    assert chunks.CRC32_BACKEND == "zlib-ng"


def test_upload_request_round_trips_and_is_intact() -> None:
    data = random.Random(3).randbytes(100_000)
    request = chunks.upload_request("ab" * 16, 4096, data)
    parsed = hub_pb2.UploadRequest.FromString(request.SerializeToString())
    assert parsed.upload_id == "ab" * 16
    assert parsed.chunk.offset == 4096
    assert parsed.chunk.data == data
    assert parsed.chunk.crc32 == zlib.crc32(data)
    assert chunks.chunk_intact(parsed.chunk)
    assert chunks.chunk_intact(parsed.chunk, parsed.chunk.data)
    assert request == hub_pb2.UploadRequest(upload_id="ab" * 16,
                                            chunk=chunks.make_chunk(4096, data))


def test_an_altered_or_unchecked_chunk_is_not_intact() -> None:
    chunk = chunks.make_chunk(0, b"module bytes")
    altered = hub_pb2.Chunk()
    altered.CopyFrom(chunk)
    altered.data = b"Module bytes"
    assert not chunks.chunk_intact(altered)
    assert not chunks.chunk_intact(chunk, b"Module bytes")  # the bytes the caller read
    chunk.ClearField("crc32")
    assert not chunks.chunk_intact(chunk)
