"""A whole federation on one machine: a SuperLink, N SuperNodes and ``flwr run`` on loopback.

Used by ``moma-client federate local`` (to try a run before involving other labs), by the
integration tests and by the benchmark. The processes are the real Flower ones; only the
addresses are local. :func:`split_dataset` makes lab files from one shared-format dataset
(each lab keeps its share of the published train/val/test split) for those demonstrations.
"""

from __future__ import annotations

import gzip
import json
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moma.errors import DataError
from moma_client.federation import processes as fp
from moma_client.federation.coordinator.run import PROGRESS_FILE, REPORT_FILE
from moma_client.federation.protocol import FederationError, RunSpec


def split_dataset(src: Path, n_labs: int, out_dir: Path, *, split: str = "seed0",
                  seed: int = 0) -> list[Path]:
    """Deal a shared-format dataset's records to ``n_labs`` files, each with its own share of
    ``split`` (train, val and test parts dealt separately, so the parts stay disjoint)."""
    opener = gzip.open if str(src).endswith(".gz") else open
    with opener(src, "rt", encoding="utf-8") as handle:
        data = json.load(handle)
    parts = data.get("splits", {}).get(split)
    if not parts:
        raise DataError(f"{src}: no published split {split!r} to deal to labs")
    rng = np.random.default_rng(seed)
    shares: list[dict[str, list[int]]] = [{} for _ in range(n_labs)]
    for part, indices in parts.items():
        order = rng.permutation(np.asarray(indices))
        for lab, chunk in enumerate(np.array_split(order, n_labs)):
            shares[lab][part] = sorted(int(i) for i in chunk)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for lab, share in enumerate(shares):
        keep = sorted(i for idx in share.values() for i in idx)
        position = {old: new for new, old in enumerate(keep)}
        lab_data = {k: v for k, v in data.items() if k not in ("records", "splits", "n")}
        lab_data["records"] = [data["records"][i] for i in keep]
        lab_data["n"] = len(keep)
        lab_data["splits"] = {split: {p: [position[i] for i in idx] for p, idx in share.items()}}
        path = out_dir / f"lab{lab + 1}.json.gz"
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            json.dump(lab_data, handle)
        paths.append(path)
    return paths


@dataclass
class LocalFederation:
    """Running SuperLink and SuperNodes; :meth:`run` starts ``flwr run`` for a spec."""

    workdir: Path
    port: int
    superlink: fp.Proc
    nodes: list[fp.Proc] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add_lab(self, node_config: Mapping[str, Any]) -> fp.Proc:
        """Start one more SuperNode (its own Runtime API port) with ``node_config``."""
        index = len(self.nodes) + 1
        args = fp.supernode_args(self.address, fp.free_port(), node_config, fp.Tls(insecure=True))
        proc = fp.start(f"supernode-{index}", args, self.workdir / f"supernode-{index}.log",
                        self.env)
        self.nodes.append(proc)
        return proc

    def start_run(self, spec: RunSpec) -> fp.Proc:
        """``flwr run`` in the background (its log: ``flwr-run.log`` in the workdir)."""
        config = fp.write_run_config(self.workdir / "run-config.toml", spec.to_run_config())
        return fp.start("flwr run", fp.flwr_run_args(config), self.workdir / "flwr-run.log",
                        self.env)

    def wait(self, run: fp.Proc, spec: RunSpec, timeout: float) -> dict[str, Any]:
        """Until the ServerApp wrote its report (or failed); returns the report."""
        return wait_for_report(run, Path(spec.out), timeout, superlink=self.superlink)

    def progress(self, spec: RunSpec) -> dict[str, Any]:
        """The ServerApp's last progress note (stage, round)."""
        return _read_json(Path(spec.out) / PROGRESS_FILE)

    def stop(self) -> None:
        for proc in [*self.nodes, self.superlink]:
            proc.stop()


def wait_for_report(run: fp.Proc, out: Path, timeout: float, *,
                    superlink: fp.Proc | None = None,
                    on_progress: Callable[[dict[str, Any]], None] | None = None
                    ) -> dict[str, Any]:
    """Until the ServerApp wrote ``federation.json`` in ``out``; fail early, with the log's
    tail, when ``flwr run`` (or the SuperLink) ended without one."""
    report = out / REPORT_FILE
    deadline = time.monotonic() + timeout
    seen: Any = None
    while time.monotonic() < deadline:
        if report.exists():
            data: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
            if data.get("status") in ("done", "refused"):
                return data
            if data.get("status") == "failed":
                raise FederationError(f"the run failed: {data.get('error')}")
        if on_progress is not None:
            progress = _read_json(out / PROGRESS_FILE)
            if progress and progress != seen:
                seen = progress
                on_progress(progress)
        if not run.alive() and not report.exists():
            time.sleep(2.0)  # the report may land just after flwr run returns
            if not report.exists():
                raise FederationError(f"flwr run ended without a result:\n{run.tail()}")
        if superlink is not None and not superlink.alive():
            raise FederationError(f"the SuperLink exited:\n{superlink.tail()}")
        time.sleep(1.0)
    raise FederationError(f"no result within {timeout:.0f}s; flwr run log:\n{run.tail()}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


@contextmanager
def local_federation(workdir: Path | None = None) -> Iterator[LocalFederation]:
    """A SuperLink on a free loopback port (plaintext, loopback only), stopped on exit.

    ``FLWR_HOME`` points into the workdir, because ``flwr run`` rewrites its config file.
    """
    with contextlib_tempdir(workdir) as root:
        # All labs share this machine's cores: one torch thread each avoids oversubscription.
        env = fp.flower_env({"FLWR_HOME": str(root / "flwr-home"), "OMP_NUM_THREADS": "1"})
        port = fp.free_port()
        fp.write_connection(root / "flwr-home", f"127.0.0.1:{port}", fp.Tls(insecure=True))
        link = fp.start("superlink", fp.superlink_args("127.0.0.1", port, fp.Tls(insecure=True)),
                        root / "superlink.log", env)
        fed = LocalFederation(root, port, link, env=env)
        try:
            fp.wait_for_port("127.0.0.1", port, link)
            yield fed
        finally:
            fed.stop()


@contextmanager
def contextlib_tempdir(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix="moma-fed-") as tmp:
        yield Path(tmp)
