"""The blob store contract, on the local folder and on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc
import pytest

from moma_server.services.errors import HubError
from moma_server.store.blobs import BlobStore, FileBlobStore
from moma_server.store.s3 import S3BlobStore
from tests.server.seaweed import Seaweed


@pytest.fixture(params=["file", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "file":
        return FileBlobStore(tmp_path / "store")
    weed: Seaweed = request.getfixturevalue("seaweed")
    return S3BlobStore(weed.bucket(), "hub-a", client=weed.client())


def _temp(blobs: BlobStore, upload_id: str, data: bytes) -> None:
    if blobs.shared:
        blobs.write_part(upload_id, 0, data)
    else:
        with blobs.open_temp_append(upload_id) as handle:
            handle.write(data)


def test_commit_ranges_listing_quarantine(blobs: BlobStore) -> None:
    data = bytes(range(256)) * 5000 + b"tail"  # 1.28 MB: several download pieces
    sha = hashlib.sha256(data).hexdigest()
    upload_id = "ab" * 16
    _temp(blobs, upload_id, data)
    assert blobs.temp_ids() == [upload_id]
    assert not blobs.has(sha)
    blobs.commit_temp(upload_id, sha, data)
    blobs.discard_temp(upload_id)
    assert blobs.temp_ids() == []
    assert blobs.has(sha) and blobs.size(sha) == len(data)
    pieces = list(blobs.iter_range(sha, 0, 1 << 20))
    assert [len(p) for p in pieces] == [1 << 20, len(data) - (1 << 20)]
    assert b"".join(pieces) == data
    assert b"".join(blobs.iter_range(sha, 1_000_003, 4096)) == data[1_000_003:]
    assert list(blobs.iter_range(sha, len(data), 4096)) == []
    assert blobs.list_blobs() == [sha]
    assert blobs.list_blobs(older_than_s=3600) == []  # just written: inside the grace period
    blobs.quarantine(sha)
    assert not blobs.has(sha) and blobs.list_blobs() == []


def test_s3_parts_are_immutable_and_read_in_order(seaweed: Seaweed) -> None:
    store = S3BlobStore(seaweed.bucket(), "p", client=seaweed.client())
    upload_id = "cd" * 16
    first = store.write_part(upload_id, 0, b"a" * 10)
    loser = store.write_part(upload_id, 10, b"X" * 5)  # a racing stream's part
    second = store.write_part(upload_id, 10, b"b" * 5)
    assert len({first, loser, second}) == 3  # never overwritten: each write is its own object
    assert store.read_parts(upload_id, [first, second], 100) == b"a" * 10 + b"b" * 5
    with pytest.raises(ValueError, match="over 12 bytes"):
        store.read_parts(upload_id, [first, second], 12)
    store.remove_part(loser)
    store.discard_temp(upload_id)
    assert store.temp_ids() == []


def test_s3_wrong_credentials_and_outage_are_clear(seaweed: Seaweed, tmp_path: Path) -> None:
    import boto3

    bucket = seaweed.bucket()
    forged = boto3.client("s3", endpoint_url=seaweed.endpoint, aws_access_key_id=seaweed.access_key,
                          aws_secret_access_key="not-the-secret", region_name="us-east-1")
    with pytest.raises(Exception, match=r"SignatureDoesNotMatch|AccessDenied|Forbidden"):
        S3BlobStore(bucket, "", client=forged)
    down = Seaweed(tmp_path / "down")
    down.ports = {"s3": 9}  # the discard port: nothing listens there
    with pytest.raises(HubError) as err:
        S3BlobStore(bucket, "", client=down.client())
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert "object store" in err.value.message and "retry" in err.value.message
