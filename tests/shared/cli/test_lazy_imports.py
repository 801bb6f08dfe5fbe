"""``--help`` and usage mistakes of both programs import no heavy library.

torch, pymatgen, grpc, protobuf, SQLAlchemy and cryptography cost seconds of CPU to import
(benchmarks/bench_cli_startup.py); the commands import them when they run. Each case runs in
a fresh interpreter, since this test process has imported them all long before.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "pymatgen", "grpc", "google.protobuf", "sqlalchemy", "cryptography", "flwr",
         "numpy", "pandas")
PROBE = """
import json, sys
from {module} import main
try:
    main({argv!r})
except SystemExit:
    pass
heavy = {heavy!r}
print(json.dumps(sorted(h for h in heavy if h in sys.modules)))
"""

CASES = [
    ("moma_client.cli.app", ["--help"]),
    ("moma_client.cli.app", ["compose", "--help"]),
    ("moma_client.cli.app", ["federate", "run", "--help"]),
    ("moma_client.cli.app", ["train", "--no-such-option"]),
    ("moma_server.cli.app", ["--help"]),
    ("moma_server.cli.app", ["serve", "--help"]),
    ("moma_server.cli.app", ["modules", "approve", "--help"]),
    ("moma_server.cli.app", ["keys", "enroll"]),
    ("moma_server.cli.app", ["--version"]),
]


@pytest.mark.parametrize(("module", "argv"), CASES,
                         ids=[f"{m.split('_')[1].split('.')[0]} {' '.join(a)}" for m, a in CASES])
def test_help_and_usage_errors_import_no_heavy_library(module: str, argv: list[str]) -> None:
    code = PROBE.format(module=module, argv=argv, heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
