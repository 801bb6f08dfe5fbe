"""Back up or restore a scaled-out hub: PostgreSQL metadata plus the blobs in the bucket.

    python deploy/scale/backup.py backup  --db URL --store s3://BUCKET/PREFIX --out DIR
    python deploy/scale/backup.py restore --db URL --store s3://BUCKET/PREFIX --from DIR

The object store is reached as the hub reaches it (AWS_ENDPOINT_URL_S3 and credentials from the
environment or AWS config files); the database password from PGPASSFILE / PGPASSWORD, never
the URL. Order matters: **database first, then blobs**. FinishUpload writes a blob before the
row that refers to it and blobs are immutable (content-addressed), so every row of the dump has
its blob in a blob copy taken afterwards; newer blobs without a row are harmless (start-up
reconciliation sets them aside). Blob copies are incremental: a blob already in DIR is skipped
(its name is its sha256, and it is re-hashed when restored).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import make_url


def _libpq(url: str) -> tuple[list[str], dict[str, str]]:
    """pg_dump/pg_restore connection arguments for a SQLAlchemy URL (password via env only)."""
    parsed = make_url(url)
    args = ["-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432),
            "-U", parsed.username or "moma", "-d", parsed.database or "moma"]
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return args, env


def backup(db: str, store: str, out: Path) -> None:
    from moma_server.store.s3 import S3BlobStore

    out.mkdir(parents=True, exist_ok=True)
    args, env = _libpq(db)
    dump = out / "metadata.dump"
    subprocess.run(["pg_dump", "-Fc", "-f", str(dump) + ".tmp", *args], env=env, check=True)
    os.replace(str(dump) + ".tmp", dump)
    blobs = S3BlobStore.from_url(store)
    folder = out / "sha256"
    folder.mkdir(exist_ok=True)
    copied = 0
    for sha in blobs.list_blobs():
        target = folder / sha
        if target.exists():
            continue
        data = b"".join(blobs.iter_range(sha, 0, 8 << 20))
        if hashlib.sha256(data).hexdigest() != sha:
            raise SystemExit(f"blob {sha} in the store does not match its digest: not copied")
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        copied += 1
    print(f"backup: metadata -> {dump}; {copied} new blob(s) -> {folder}")


def restore(db: str, store: str, source: Path) -> None:
    from moma_server.store.s3 import S3BlobStore

    args, env = _libpq(db)
    subprocess.run(["pg_restore", "--clean", "--if-exists", "--no-owner", *args,
                    str(source / "metadata.dump")], env=env, check=True)
    blobs = S3BlobStore.from_url(store)
    present = set(blobs.list_blobs())
    restored = 0
    for path in sorted((source / "sha256").iterdir()):
        if path.name in present:
            continue
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != path.name:
            print(f"skipping {path}: its content does not match its name", file=sys.stderr)
            continue
        blobs.commit_temp("0" * 32, path.name, data)
        restored += 1
    print(f"restore: metadata from {source / 'metadata.dump'}; {restored} blob(s) uploaded")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["backup", "restore"])
    parser.add_argument("--db", required=True, help="postgresql+psycopg://user@host:port/db")
    parser.add_argument("--store", required=True, help="s3://BUCKET/PREFIX")
    parser.add_argument("--out", "--from", dest="folder", type=Path, required=True)
    args = parser.parse_args()
    if args.action == "backup":
        backup(args.db, args.store, args.folder)
    else:
        restore(args.db, args.store, args.folder)


if __name__ == "__main__":
    main()
