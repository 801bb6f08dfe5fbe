"""Module bytes in an S3-compatible object store (``--store s3://bucket/prefix``).

Layout under the prefix:
  * ``sha256/ab/cdef...``: committed blobs, content-addressed, written once by FinishUpload;
  * ``tmp/<upload_id>/<offset>.<token>``: immutable part objects of open uploads. Which parts
    count is recorded in the database (a part is written first, then recorded by a
    compare-and-set on the session's offset), so two replicas racing on one session can never
    both extend it: the loser deletes its part and the client resumes from the recorded offset;
  * ``orphaned/<sha256>``: blobs that start-up reconciliation set aside (never deleted).

Client library: boto3. It reads the endpoint and credentials the standard AWS way (environment
``AWS_ENDPOINT_URL_S3`` / ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, or the files named
by ``AWS_CONFIG_FILE`` / ``AWS_SHARED_CREDENTIALS_FILE``, with a named ``AWS_PROFILE``), so no
secret ever appears on the hub's command line; its ranged GET streams a download in pieces and
its retry and timeout settings are per client. obstore would be faster for bulk copies, but
the hub's objects are at most a few MiB, its calls are synchronous gRPC handler threads, and
boto3 is the reference client every S3-compatible server is tested against.

An unreachable store raises :class:`HubError` UNAVAILABLE with a message saying so: a client
retries, nothing half-written becomes visible (a blob is one PUT; a part is recorded only after
its PUT succeeded).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlparse

import grpc

from moma.errors import MomaError
from moma_server.services.errors import HubError
from moma_server.store.blobs import BlobStore

T = TypeVar("T")

_SHA256 = re.compile(r"[0-9a-f]{64}")
_UPLOAD_ID = re.compile(r"[0-9a-f]{32,64}")
PART_BYTES = 8 * 1024 * 1024
"""An upload stream writes one part object per 8 MiB received (and one at its end)."""


def _botocore() -> Any:
    import botocore.exceptions

    return botocore.exceptions


class S3BlobStore(BlobStore):
    """Blobs as objects in one bucket under one prefix; safe for many hub processes at once."""

    shared = True
    part_bytes = PART_BYTES

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client if client is not None else make_client()
        self.endpoint = str(getattr(self.client.meta, "endpoint_url", "") or "the default")
        self._call(lambda: self.client.head_bucket(Bucket=bucket), f"opening bucket {bucket}")

    @classmethod
    def from_url(cls, url: str) -> S3BlobStore:
        """``s3://bucket/prefix`` -> a store (endpoint and credentials from the environment)."""
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise MomaError(f"--store {url!r} is not s3://BUCKET[/PREFIX]")
        return cls(parsed.netloc, parsed.path)

    # -- keys ---------------------------------------------------------------------------------

    def blob_key(self, sha256: str) -> str:
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return f"{self.prefix}sha256/{sha256[:2]}/{sha256[2:]}"

    def _temp_prefix(self, upload_id: str) -> str:
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise ValueError(f"not an upload id: {upload_id!r}")
        return f"{self.prefix}tmp/{upload_id}/"

    # -- errors -------------------------------------------------------------------------------

    def _call(self, func: Callable[[], T], what: str) -> T:
        """Run one S3 request; an outage becomes UNAVAILABLE, a missing key FileNotFoundError."""
        exc_mod = _botocore()
        try:
            return func()
        except exc_mod.ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in ("NoSuchKey", "404", "NotFound") or status == 404:
                if code == "NoSuchBucket":
                    raise MomaError(f"bucket {self.bucket} does not exist at {self.endpoint}: "
                                    "create it first") from None
                raise FileNotFoundError(f"{what}: no such object") from None
            if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
                raise self._unavailable(what, f"{code or status}") from None
            raise
        except (exc_mod.BotoCoreError, OSError) as exc:
            raise self._unavailable(what, type(exc).__name__) from None

    def _unavailable(self, what: str, why: str) -> HubError:
        return HubError(grpc.StatusCode.UNAVAILABLE,
                        f"the hub's object store ({self.endpoint}) is unavailable while "
                        f"{what} ({why}): nothing was changed; retry in a few seconds")

    # -- committed blobs ----------------------------------------------------------------------

    def has(self, sha256: str) -> bool:
        try:
            self._call(lambda: self.client.head_object(Bucket=self.bucket,
                                                       Key=self.blob_key(sha256)),
                       f"looking up blob {sha256}")
        except FileNotFoundError:
            return False
        return True

    def size(self, sha256: str) -> int:
        head = self._call(lambda: self.client.head_object(Bucket=self.bucket,
                                                          Key=self.blob_key(sha256)),
                          f"reading the size of blob {sha256}")
        return int(head["ContentLength"])

    def iter_range(self, sha256: str, offset: int, chunk_size: int) -> Iterator[bytes]:
        what = f"reading blob {sha256}"
        try:
            response = self._call(lambda: self.client.get_object(
                Bucket=self.bucket, Key=self.blob_key(sha256), Range=f"bytes={offset}-"), what)
        except _botocore().ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return  # offset == size: nothing left to send
            raise
        body = response["Body"]
        try:
            while True:
                piece = self._call(lambda: body.read(chunk_size), what)
                if not piece:
                    return
                yield piece
        finally:
            body.close()

    def remove(self, sha256: str) -> None:
        self._call(lambda: self.client.delete_object(Bucket=self.bucket,
                                                     Key=self.blob_key(sha256)),
                   f"removing blob {sha256}")

    def quarantine(self, sha256: str) -> None:
        key = self.blob_key(sha256)
        try:
            self._call(lambda: self.client.copy_object(
                Bucket=self.bucket, Key=f"{self.prefix}orphaned/{sha256}",
                CopySource={"Bucket": self.bucket, "Key": key}), f"quarantining blob {sha256}")
        except FileNotFoundError:
            return
        self.remove(sha256)

    def _list(self, prefix: str, delimiter: str = "") -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        pages = self._call(lambda: list(paginator.paginate(**kwargs)), f"listing {prefix}")
        yield from pages

    def list_blobs(self, older_than_s: float = 0.0) -> list[str]:
        base = f"{self.prefix}sha256/"
        horizon = datetime.now(UTC) - timedelta(seconds=older_than_s)
        found = []
        for page in self._list(base):
            for obj in page.get("Contents", []):
                digest = obj["Key"][len(base):].replace("/", "")
                if _SHA256.fullmatch(digest) and (not older_than_s
                                                  or obj["LastModified"] <= horizon):
                    found.append(digest)
        return sorted(found)

    # -- upload parts -------------------------------------------------------------------------

    def write_part(self, upload_id: str, offset: int, data: bytes) -> str:
        key = f"{self._temp_prefix(upload_id)}{offset:020d}.{secrets.token_hex(8)}"
        self._call(lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data),
                   f"storing part {offset} of upload {upload_id}")
        return key

    def read_parts(self, upload_id: str, keys: list[str], max_bytes: int) -> bytes:
        prefix = self._temp_prefix(upload_id)
        out = bytearray()
        for key in keys:
            if not key.startswith(prefix):
                raise ValueError(f"part {key!r} is not a part of upload {upload_id}")
            out += self._read_object(key, max_bytes + 1 - len(out), f"reading upload {upload_id}")
            if len(out) > max_bytes:
                raise ValueError(f"upload {upload_id} holds over {max_bytes} bytes")
        return bytes(out)

    def _read_object(self, key: str, limit: int, what: str) -> bytes:
        def get() -> bytes:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                return bytes(body.read(limit))
            finally:
                body.close()

        return self._call(get, what)

    def remove_part(self, key: str) -> None:
        self._call(lambda: self.client.delete_object(Bucket=self.bucket, Key=key),
                   "removing an upload part")

    def discard_temp(self, upload_id: str) -> None:
        keys = [obj["Key"] for page in self._list(self._temp_prefix(upload_id))
                for obj in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            self._delete_many(keys[start:start + 1000], f"discarding upload {upload_id}")

    def _delete_many(self, keys: list[str], what: str) -> None:
        objects = [{"Key": k} for k in keys]
        self._call(lambda: self.client.delete_objects(
            Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}), what)

    def temp_ids(self) -> list[str]:
        # from object keys, not common prefixes: some servers (SeaweedFS) keep an emptied
        # "folder" listed after its objects were deleted
        base = f"{self.prefix}tmp/"
        ids = set()
        for page in self._list(base):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(base):].split("/", 1)[0]
                if _UPLOAD_ID.fullmatch(name):
                    ids.add(name)
        return sorted(ids)

    def commit_temp(self, upload_id: str, sha256: str, data: bytes | bytearray) -> None:
        self._call(lambda: self.client.put_object(Bucket=self.bucket, Key=self.blob_key(sha256),
                                                  Body=bytes(data)),
                   f"storing module {sha256}")


def make_client() -> Any:
    """A boto3 S3 client configured from the environment / AWS config files.

    Path-style addressing (``endpoint/bucket/key``) works with every S3-compatible server on a
    plain host:port; short timeouts and a few retries turn an outage into a quick UNAVAILABLE
    instead of a hung RPC.
    """
    import boto3
    from botocore.config import Config

    config = Config(s3={"addressing_style": "path"}, connect_timeout=3, read_timeout=30,
                    retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=64,
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.session.Session().client("s3", region_name=region, config=config)


__all__ = ["PART_BYTES", "S3BlobStore", "make_client"]
