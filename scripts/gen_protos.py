"""Generate the Python protobuf/gRPC stubs of ``protos/`` into ``shared/moma/proto/``.

Usage::

    python scripts/gen_protos.py           # regenerate the stubs in place
    python scripts/gen_protos.py --check   # exit 1 if the committed stubs are stale

Why the post-processing: the protocol lives in ``protos/moma/hub/v1/hub.proto`` (package
``moma.hub.v1``), and protoc names generated Python modules after the proto file path, so
``hub_pb2_grpc.py`` says ``from moma.hub.v1 import hub_pb2``. In this project the stubs are part
of the ``moma`` core package, under ``moma.proto``. Moving the .proto files to
``moma/proto/...`` would change the file names registered in the protobuf descriptor pool and
shown by server reflection, which are part of the public contract. Instead protoc runs with
``-I protos`` into a temporary folder, the ``moma/`` level of its output is mapped to
``shared/moma/proto/``, and every generated import of ``moma.<x>`` (only our own protos live
under ``protos/moma/``) is rewritten to ``moma.proto.<x>``. The result imports as
``moma.proto.hub.v1.hub_pb2``; descriptors still say ``moma/hub/v1/hub.proto``.

``--check`` runs the same generation into memory and compares byte for byte with the files on
disk, so a test fails when someone edits a .proto without regenerating (or edits a stub by
hand). The generated code pins the grpcio-tools version that produced it, so upgrading
grpcio-tools also means regenerating.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PROTOS = REPO_ROOT / "protos"
DEFAULT_OUT = REPO_ROOT / "shared" / "moma" / "proto"
PROTO_ROOT_PACKAGE = "moma"
TARGET_PACKAGE = "moma.proto"
REGENERATE_COMMAND = "python scripts/gen_protos.py (or: make protos)"

_GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
_IMPORT_RE = re.compile(rf"^(\s*)(from|import) {PROTO_ROOT_PACKAGE}\.", re.MULTILINE)
_HEADER = (
    "# Post-processed by scripts/gen_protos.py: imports rewritten to moma.proto.\n"
    "# ruff: noqa\n"  # generated code follows protoc's style, not ours
)
_INIT_TEXT = '"""Generated protobuf and gRPC stubs (see scripts/gen_protos.py)."""\n'


def generate(protos_dir: Path) -> dict[Path, bytes]:
    """All stub files for ``protos_dir``, as {path relative to the output folder: bytes}."""
    from grpc_tools import protoc  # imported here so --help works without grpcio-tools

    proto_files = sorted(protos_dir.rglob("*.proto"))
    if not proto_files:
        raise SystemExit(f"no .proto files under {protos_dir}")
    well_known = resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory(prefix="moma-protos-") as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{protos_dir}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(path) for path in proto_files),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed (see the messages above)")
        root = Path(tmp) / PROTO_ROOT_PACKAGE
        files: dict[Path, bytes] = {}
        for path in sorted(root.rglob("*")):
            if path.is_file():
                rel = path.relative_to(root)
                files[rel] = _postprocess(path.read_text(encoding="utf-8")).encode("utf-8")
    for rel in list(files):
        for folder in rel.parents:
            if folder != Path("."):
                files.setdefault(folder / "__init__.py", _INIT_TEXT.encode("utf-8"))
    return files


def _postprocess(text: str) -> str:
    """Rewrite imports and add our header (after a coding cookie, which must stay on line 1)."""
    text = _IMPORT_RE.sub(rf"\1\2 {TARGET_PACKAGE}.", text)
    first, sep, rest = text.partition("\n")
    if re.match(r"#.*coding[:=]", first):
        return first + sep + _HEADER + rest
    return _HEADER + text


def _existing_generated(out_dir: Path) -> set[Path]:
    """Generated-looking files already on disk (stale ones included), relative to ``out_dir``."""
    found = set()
    for path in out_dir.rglob("*"):
        if path.is_file() and path.name.endswith(_GENERATED_SUFFIXES):
            found.add(path.relative_to(out_dir))
    return found


def check(files: dict[Path, bytes], out_dir: Path) -> list[str]:
    """Problems with the stubs in ``out_dir`` compared with ``files``; empty if up to date."""
    problems = []
    for rel, data in sorted(files.items()):
        target = out_dir / rel
        if not target.is_file():
            problems.append(f"{_show(target)} is missing")
        elif target.read_bytes() != data:
            problems.append(f"{_show(target)} is stale (differs from what protos/ generates)")
    for rel in sorted(_existing_generated(out_dir) - set(files)):
        problems.append(f"{_show(out_dir / rel)} matches no .proto file any more")
    return problems


def write(files: dict[Path, bytes], out_dir: Path) -> list[Path]:
    """Write changed stubs into ``out_dir`` and delete orphaned ones; returns what changed."""
    changed = []
    for rel, data in sorted(files.items()):
        target = out_dir / rel
        if not target.is_file() or target.read_bytes() != data:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
            changed.append(target)
    for rel in sorted(_existing_generated(out_dir) - set(files)):
        (out_dir / rel).unlink()
        changed.append(out_dir / rel)
    return changed


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description="Generate or check the protobuf/gRPC stubs.")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if stale")
    parser.add_argument("--protos", type=Path, default=DEFAULT_PROTOS, help="proto root (-I)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="stub package folder")
    args = parser.parse_args(argv)
    files = generate(args.protos.resolve())
    if args.check:
        problems = check(files, args.out)
        for problem in problems:
            print(f"stale protobuf stubs: {problem}; run: {REGENERATE_COMMAND}", file=sys.stderr)
        return 1 if problems else 0
    for path in write(files, args.out):
        print(f"updated {_show(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
