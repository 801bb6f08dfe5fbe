"""The Flower ServerApp the coordinator's SuperLink runs (``flwr run``); see
:mod:`moma_client.federation.coordinator.run` for what a run does."""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from moma.atomic_io import write_json
from moma_client.federation.coordinator.run import REPORT_FILE, run_federation
from moma_client.federation.protocol import RunSpec

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Parse the run config into a :class:`RunSpec` and run the federation."""
    spec = RunSpec.from_run_config(dict(context.run_config))
    # The nonce binds the labs' join statements to this run; a run started with plain
    # `flwr run` (no nonce in its config) gets a fresh one here.
    try:
        run_federation(grid, spec if spec.nonce else spec.with_nonce())
    except Exception as exc:
        # The coordinator's CLI waits for this report; say why instead of leaving it waiting.
        report = Path(spec.out) / REPORT_FILE
        if not report.exists():
            write_json(report, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        raise
