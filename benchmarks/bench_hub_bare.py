"""The bare gRPC baseline of the hub benchmarks, and the small timing helpers they share.

A bare service moves the same bytes in the same 1 MiB messages as the hub, with no protobuf
fields, hashing or disk (``Upload``/``Download``), or writing and fsyncing them
(``UploadDisk``), or, the least any durable store that checks what it received must do, also
sha256-hashing them (``UploadHashFsync``: to a file, fsynced; ``UploadHashPut``: one S3
``PutObject`` into ``MOMA_BARE_BUCKET`` with the ``AWS_*`` environment). ``python
benchmarks/bench_hub_bare.py DIR`` serves it in its own process, as the hub runs in its own.
"""


from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hub_harness import (
    CHUNK,
    MIB,
    read_line,
)

BARE_SERVICE = "bench.Bare"


# -- the bare gRPC baseline ----------------------------------------------------------------------


def bare_server(listen: str = "127.0.0.1:0", disk_dir: str | None = None
                ) -> tuple[grpc.Server, int]:
    """Receives chunks and counts them (upload); streams slices of a buffer (download).

    ``UploadDisk`` also writes the chunks to a file in ``disk_dir`` and fsyncs it (then deletes
    it): the floor of any durable store, shown to separate the disk's cost from the hub's."""
    blob = bytes(range(256)) * (CHUNK // 256)

    def upload(chunks: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        total = 0
        for chunk in chunks:
            total += len(chunk)
        return total.to_bytes(8, "little")

    def write_fsync(chunks: Iterator[bytes], hasher: Any = None) -> int:
        """Write the chunks to a file and fsync it (then delete it); hash them if asked."""
        total = 0
        fd, path = tempfile.mkstemp(prefix="bare-", dir=disk_dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    if hasher is not None:
                        hasher.update(chunk)
                    handle.write(chunk)
                    total += len(chunk)
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            os.unlink(path)
        return total

    def upload_disk(chunks: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        # the least a durable store must do: write the bytes to a file and fsync it
        return write_fsync(chunks).to_bytes(8, "little")

    def upload_hash_fsync(chunks: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        hasher = hashlib.sha256()
        total = write_fsync(chunks, hasher)
        return hasher.digest() + total.to_bytes(8, "little")

    s3: list[Any] = []

    def upload_hash_put(chunks: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        if not s3:
            import boto3

            s3.append(boto3.client("s3"))
        hasher = hashlib.sha256()
        received = bytearray()
        for chunk in chunks:
            hasher.update(chunk)
            received += chunk
        key = f"bare/{hasher.hexdigest()}"
        s3[0].put_object(Bucket=os.environ["MOMA_BARE_BUCKET"], Key=key, Body=bytes(received))
        s3[0].delete_object(Bucket=os.environ["MOMA_BARE_BUCKET"], Key=key)  # after the clock
        return hasher.digest() + len(received).to_bytes(8, "little")

    def download(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        size = int.from_bytes(request, "little")
        sent = 0
        while sent < size:
            piece = blob[: min(CHUNK, size - sent)]
            sent += len(piece)
            yield piece

    handler = grpc.method_handlers_generic_handler(BARE_SERVICE, {
        "Upload": grpc.stream_unary_rpc_method_handler(upload),
        "UploadDisk": grpc.stream_unary_rpc_method_handler(upload_disk),
        "UploadHashFsync": grpc.stream_unary_rpc_method_handler(upload_hash_fsync),
        "UploadHashPut": grpc.stream_unary_rpc_method_handler(upload_hash_put),
        "Download": grpc.unary_stream_rpc_method_handler(download),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.max_receive_message_length", 4 * MIB),
                                  ("grpc.max_send_message_length", 4 * MIB)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(listen)
    server.start()
    return server, port


class BareClient:
    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self._up = self.channel.stream_unary(f"/{BARE_SERVICE}/Upload")
        self._down = self.channel.unary_stream(f"/{BARE_SERVICE}/Download")
        self._up_disk = self.channel.stream_unary(f"/{BARE_SERVICE}/UploadDisk")

    def upload(self, data: bytes) -> None:
        view = memoryview(data)
        got = self._up((bytes(view[o:o + CHUNK]) for o in range(0, len(data), CHUNK)),
                       timeout=300)
        assert int.from_bytes(got, "little") == len(data)

    def upload_disk(self, data: bytes) -> None:
        view = memoryview(data)
        got = self._up_disk((bytes(view[o:o + CHUNK]) for o in range(0, len(data), CHUNK)),
                            timeout=300)
        assert int.from_bytes(got, "little") == len(data)

    def upload_durable(self, data: bytes, method: str, digest: bytes) -> None:
        """``UploadHashFsync`` or ``UploadHashPut``; ``digest`` (sha256 of ``data``, computed
        by the caller outside the clock) is checked against the one the server computed."""
        call = self.channel.stream_unary(f"/{BARE_SERVICE}/{method}")
        view = memoryview(data)
        got = call((bytes(view[o:o + CHUNK]) for o in range(0, len(data), CHUNK)), timeout=300)
        assert got[:32] == digest
        assert int.from_bytes(got[32:], "little") == len(data)

    def download(self, size: int) -> None:
        got = sum(len(piece) for piece in self._down(size.to_bytes(8, "little"), timeout=300))
        assert got == size

    def close(self) -> None:
        self.channel.close()


def start_bare_subprocess(disk_dir: Path, env: dict[str, str] | None = None
                          ) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, __file__, str(disk_dir)],
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    line = read_line(proc, 60)
    if not line.startswith("bare listening on "):
        proc.kill()
        raise RuntimeError(f"bare server did not start: {line!r}")
    return proc, line.split()[-1]


# -- small utilities -----------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def mbs(nbytes: float, seconds: float) -> float:
    return nbytes / MIB / seconds



def db_name(db: str) -> str:
    return "PostgreSQL" if db.startswith("postgresql") else "SQLite"


if __name__ == "__main__":
    _server, _port = bare_server(disk_dir=sys.argv[1])
    print(f"bare listening on 127.0.0.1:{_port}", flush=True)
    _server.wait_for_termination()
