"""``moma-client federate``: train one module with other labs through Flower (DESIGN.md 8).

- ``federate superlink``: the coordinator's Flower SuperLink (``flower-superlink``).
- ``federate lab``: a lab's Flower SuperNode, pointed at the lab's own data file and key;
  the data never leave this machine.
- ``federate run``: the coordinator starts a run (``flwr run``) for a task, backbone, kind
  and base, waits, and gets a normal module folder, ready for ``moma-client contribute``.

TLS is the default; ``--insecure`` (plaintext) is refused off loopback. See docs/federation.md.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from moma.safe_text import for_markup
from moma_client.cli import options as o
from moma_client.cli.common import err, out, print_json

federate_app = typer.Typer(help="Federated training with other labs (Flower SuperLink/SuperNodes).",
                           no_args_is_help=True)

Insecure = Annotated[bool, typer.Option("--insecure", help="Plaintext (loopback only). TLS is the default.")]
Ca = Annotated[Path | None, typer.Option("--ca", exists=True, dir_okay=False, help="CA certificate (PEM) that signed the SuperLink's TLS certificate.")]
OldCa = Annotated[Path | None, typer.Option("--root-certificates", hidden=True, exists=True,
                                            dir_okay=False,
                                            help="Deprecated spelling of --ca (Flower's name).")]


def _ca(ca: Path | None, old: Path | None) -> Path | None:
    """``--ca``, or the deprecated ``--root-certificates`` (with a note to use ``--ca``): one
    name for the CA option on every command of both programs."""
    if old is not None:
        if ca is not None and ca != old:
            raise typer.BadParameter("give the CA once, as --ca", param_hint="--root-certificates")
        err.print("note: --root-certificates is now --ca")
    return ca or old


def _foreground(args: list[str], env: dict[str, str]) -> None:
    """Run a Flower server process until it exits; Ctrl-C or SIGTERM to this command stops
    it (by its process id, with the helpers it started) instead of orphaning it."""
    from moma_client.federation import processes as fp
    from moma_client.federation.protocol import FederationError

    proc = subprocess.Popen(args, env=env, start_new_session=True)
    handle = fp.Proc(Path(args[0]).name, proc)

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        handle.stop()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code != 0:
        raise FederationError(f"{handle.name} exited with code {code}")


@federate_app.command("superlink")
def superlink(
    host: Annotated[str, typer.Option(help="Address to listen on (Fleet, Control and Runtime APIs).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    ssl_certfile: Annotated[Path | None, typer.Option(help="Server TLS certificate (PEM).")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="Server TLS private key (PEM).")] = None,
    ssl_ca_certfile: Annotated[Path | None, typer.Option(help="CA certificate (PEM) of the server certificate.")] = None,
    database: Annotated[Path | None, typer.Option(help="SQLite file for the SuperLink's state (default: in memory).")] = None,
    insecure: Insecure = False,
) -> None:
    """Run the coordinator's SuperLink in the foreground (Ctrl-C stops it)."""
    from moma_client.federation import processes as fp

    tls = fp.Tls(insecure=insecure, certfile=ssl_certfile, keyfile=ssl_keyfile,
                 ca_certfile=ssl_ca_certfile)
    err.print(f"SuperLink on {host}:{port} ({'plaintext' if insecure else 'TLS'})")
    _foreground(fp.superlink_args(host, port, tls, database), fp.flower_env())


@federate_app.command("lab")
def lab(
    superlink_address: Annotated[str, typer.Option("--superlink", help="The coordinator's SuperLink host:port.")],
    data: Annotated[Path, typer.Option(help="This lab's dataset file (never leaves this machine).")],
    key: Annotated[Path, typer.Option("--key", envvar="MOMA_LAB_KEY", help="The lab's private key (moma-client keys init); signs the join statement.")],
    base: Annotated[Path | None, typer.Option(help="The base module folder this lab agreed to train from (required for adapter runs).")] = None,
    base_sha256: Annotated[str, typer.Option(help="Or pin the base by its sha256.")] = "",
    split: Annotated[str, typer.Option(help="Published split of the data file (seed0..seed4) or 'random'.")] = "seed0",
    target: o.Target = None,
    skip_invalid: o.SkipInvalid = False,
    port: Annotated[int, typer.Option(help="Local port of this SuperNode's Runtime API (one per SuperNode on a machine).")] = 9094,
    ca: Ca = None,
    root_certificates: OldCa = None,
    insecure: Insecure = False,
) -> None:
    """Run this lab's SuperNode in the foreground; it trains whenever the coordinator runs."""
    ca = _ca(ca, root_certificates)
    from moma.trust.keys import load_private_key
    from moma_client.federation import processes as fp
    from moma_client.federation.protocol import FederationError

    data = data.expanduser().resolve()
    if not data.exists():
        raise FederationError(f"{data}: no such data file")
    load_private_key(key)  # a bad key fails here, not in the middle of a run
    config: dict[str, str | bool] = {"data": str(data), "key": str(key.expanduser().resolve()),
                                     "split": split, "skip-invalid": skip_invalid}
    if base is not None:
        config["base"] = str(base.expanduser().resolve())
    if base_sha256:
        config["base-sha256"] = base_sha256
    if target:
        config["target"] = target
    tls = fp.Tls(insecure=insecure, ca_certfile=ca)
    err.print(f"lab SuperNode -> {superlink_address} with {data.name}")
    _foreground(fp.supernode_args(superlink_address, port, config, tls), fp.flower_env())


@federate_app.command("run")
def run(
    superlink_address: Annotated[str, typer.Option("--superlink", help="The SuperLink host:port.")],
    task: Annotated[str, typer.Option(help="Task name for the card.")],
    prop: Annotated[str, typer.Option("--property", help="Target property every lab's data must have (e.g. e_form).")],
    unit: Annotated[str, typer.Option(help="Unit every lab's data must have (as in the data files).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the federated module (on this machine, beside the SuperLink).")],
    key: Annotated[Path, typer.Option("--key", envvar="MOMA_LAB_KEY", help="The coordinator's private key; its id goes on the card.")],
    backbone: o.Backbone = "cgcnn",
    kind: o.Kind = "full",
    base: Annotated[str, typer.Option(help="Base: a full module folder, or 'scratch' (seeded random start).")] = "scratch",
    rounds: Annotated[int, typer.Option(min=1)] = 10,
    local_epochs: Annotated[int, typer.Option(min=1, help="Local epochs per round.")] = 2,
    batch_size: o.BatchSize = 32,
    lr: o.Lr = 1e-3,
    head_lr_factor: o.HeadLrFactor = 1.0,
    seed: o.Seed = 0,
    split: Annotated[str, typer.Option(help="Split name recorded on the card.")] = "seed0",
    labs: Annotated[int, typer.Option(help="Wait for this many labs before starting (0: min-labs).")] = 0,
    min_labs: Annotated[int, typer.Option(min=1, help="Fewest labs a run or a round may average.")] = 2,
    round_timeout: Annotated[float, typer.Option(help="Seconds to wait for a round's replies.")] = 1800.0,
    dp_clipping_norm: Annotated[float, typer.Option(help="Differential privacy: clip each lab's update to this L2 norm (0: off).")] = 0.0,
    dp_noise_multiplier: Annotated[float, typer.Option(help="Differential privacy: Gaussian noise multiplier.")] = 0.0,
    name: Annotated[str, typer.Option(help="Module name for the card.")] = "",
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 86400.0,
    ca: Ca = None,
    root_certificates: OldCa = None,
    insecure: Insecure = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the card as JSON.")] = False,
) -> None:
    """Start a federated run on the SuperLink, wait for it, and report the module."""
    ca = _ca(ca, root_certificates)
    from moma.trust.keys import key_id, load_private_key
    from moma_client.federation import processes as fp
    from moma_client.federation.local import wait_for_report
    from moma_client.federation.protocol import FederationError, RunSpec

    coordinator = key_id(load_private_key(key).public_key())
    out_dir = out_dir.expanduser().resolve()
    if base != "scratch":
        base = str(Path(base).expanduser().resolve())
    spec = RunSpec(task=task, property=prop, unit=unit, out=str(out_dir), backbone=backbone,
                   kind=kind, base=base, split=split, rounds=rounds, local_epochs=local_epochs,
                   batch_size=batch_size, lr=lr, head_lr_factor=head_lr_factor, seed=seed,
                   min_labs=min_labs, expected_labs=labs, round_timeout=round_timeout,
                   dp_clipping_norm=dp_clipping_norm, dp_noise_multiplier=dp_noise_multiplier,
                   coordinator_key_id=coordinator, name=name).with_nonce()
    RunSpec.from_run_config(spec.to_run_config())  # validate before contacting anyone
    tls = fp.Tls(insecure=insecure, ca_certfile=ca)
    tls.check(superlink_address)
    with tempfile.TemporaryDirectory(prefix="moma-flwr-") as tmp:
        home = Path(tmp) / "flwr-home"
        fp.write_connection(home, superlink_address, tls)
        env = fp.flower_env({"FLWR_HOME": str(home)})
        config = fp.write_run_config(Path(tmp) / "run-config.toml", spec.to_run_config())
        err.print(f"run {spec.nonce[:8]} on {superlink_address}: {task} {backbone} {kind} from "
                  f"{'scratch' if base == 'scratch' else base}, {rounds} rounds")
        proc = fp.start("flwr run", fp.flwr_run_args(config), Path(tmp) / "flwr-run.log", env)
        try:
            report = wait_for_report(proc, out_dir, timeout, on_progress=_show)
        finally:
            proc.stop()
    if report.get("status") != "done":
        raise FederationError(f"the run did not produce a module: {report.get('refused')}")
    from moma.modules.store import load_card

    card = load_card(out_dir)
    if json_output:
        print_json(card.to_json())
        return
    m = card.metrics
    out.print(f"federated module {for_markup(card.name)} -> {for_markup(out_dir)}")
    out.print(f"  id {card.module_id}")
    out.print(f"  labs {for_markup(', '.join(p['key_id'] for p in card.participants))}; best round "
              f"{int(m.get('best_round', -1))} of {rounds}")
    if "test_mae" in m:
        out.print(f"  val MAE {m['val_mae']:.4g}, test MAE {m['test_mae']:.4g} {for_markup(card.unit)} "
                  f"(train-mean predictor {m.get('test_mae_train_mean', float('nan')):.4g})")
    out.print(f"  contribute: moma-client contribute --hub HOST:PORT --key {key} "
              f"--module {out_dir}")


def _show(progress: dict[str, object]) -> None:
    stage = progress.get("stage")
    if stage == "round":
        err.print(f"  round {progress.get('round')}/{progress.get('rounds')} done")
    elif stage:
        err.print(f"  {for_markup(stage)}")


__all__ = ["federate_app"]
