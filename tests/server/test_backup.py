"""deploy/scale/backup.py: metadata (pg_dump) plus blobs (bucket) out, and back into new ones."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from moma_server.store.metadata import MetadataStore
from moma_server.store.s3 import S3BlobStore
from tests.server import postgres
from tests.server.seaweed import Seaweed

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "scale" / "backup.py"


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[None]:
    with postgres.cluster():
        yield


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scale_backup", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_backup_and_restore_metadata_and_blobs(pg_cluster: None, seaweed: Seaweed,
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in seaweed.env.items():
        monkeypatch.setenv(name, value)
    backup = _script()
    with postgres.database() as source_db, postgres.database() as target_db:
        meta = MetadataStore(source_db)
        with meta.write() as session:
            meta.append_audit(session, actor="a" * 16, action="test.event", subject="s")
        meta.close()
        source = f"s3://{seaweed.bucket()}/hub"
        blobs = S3BlobStore.from_url(source)
        data = [os.urandom(3000), os.urandom(5000)]
        for piece in data:
            blobs.commit_temp("0" * 32, hashlib.sha256(piece).hexdigest(), piece)
        out = tmp_path / "backup"
        backup.backup(source_db, source, out)
        assert sorted(p.name for p in (out / "sha256").iterdir()) == sorted(
            hashlib.sha256(p).hexdigest() for p in data)
        backup.backup(source_db, source, out)  # incremental: nothing new, nothing rewritten

        target = f"s3://{seaweed.bucket()}/restored"
        backup.restore(target_db, target, out)
        restored = S3BlobStore.from_url(target)
        for piece in data:
            sha = hashlib.sha256(piece).hexdigest()
            assert b"".join(restored.iter_range(sha, 0, 1 << 20)) == piece
        copy = MetadataStore(target_db)
        try:
            assert copy.verify_audit() == 1
        finally:
            copy.close()
