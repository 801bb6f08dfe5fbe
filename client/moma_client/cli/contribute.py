"""``moma-client contribute``: sign a module for a hub and upload it (resumable), or train one
first with the options of ``moma-client train`` and upload the result."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from moma.errors import MomaError
from moma.trust.keys import load_private_key
from moma_client.cli import train as train_cli
from moma_client.cli.common import err, print_json, step
from moma_client.cli.hub_options import (
    Ca,
    ClientCert,
    ClientKey,
    HubAddr,
    HubKey,
    Insecure,
    connect,
    line,
    warn,
)
from moma_client.hub.client import state_name, summary_dict
from moma_client.hub.upload import DEFAULT_CHUNK
from moma_client.hub.upload import contribute as upload_module


def contribute(
    hub: HubAddr,
    key: Annotated[Path, typer.Option("--key", envvar="MOMA_LAB_KEY", help="The lab's private key (moma-client keys init), enrolled on the hub.")],
    module: Annotated[Path | None, typer.Option("--module", help="Contribute this module folder (module.safetensors + card.json).")] = None,
    data: Annotated[str | None, typer.Option(help="Or train a module on this dataset first (same forms as train --data).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="With --data: folder for the trained module.")] = None,
    task: Annotated[str | None, typer.Option(help="Training: task name (default: the dataset's).")] = None,
    target: Annotated[str | None, typer.Option(help="Training: target column for multi-target data.")] = None,
    backbone: Annotated[str, typer.Option(help="Training: cgcnn or chgnet.")] = "cgcnn",
    kind: Annotated[str, typer.Option(help="Training: full or adapter.")] = "full",
    init: Annotated[Path | None, typer.Option(help="Training: start from this full module (folder).")] = None,
    split: Annotated[str, typer.Option(help="Training: published split (seed0..seed4) or 'random'.")] = "seed0",
    epochs: Annotated[int, typer.Option(min=1)] = 100,
    batch_size: Annotated[int, typer.Option(min=2)] = 32,
    lr: Annotated[float, typer.Option()] = 1e-3,
    head_lr_factor: Annotated[float, typer.Option()] = 1.0,
    patience: Annotated[int, typer.Option()] = 20,
    loss: Annotated[str, typer.Option(help="Training: l1, mse or huber.")] = "l1",
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option()] = "cpu",
    skip_invalid: Annotated[bool, typer.Option()] = False,
    max_train: Annotated[int | None, typer.Option(help="Training: at most N training records.")] = None,
    name: Annotated[str | None, typer.Option(help="Training: module name for the card.")] = None,
    unit: Annotated[str | None, typer.Option(help="Training: unit of the target (default: the data's, else the --init module's).")] = None,
    prop: Annotated[str | None, typer.Option("--property", help="Training: property name for the card.")] = None,
    publish_data_fingerprint: Annotated[bool, typer.Option(help="Training: put a salted fingerprint of the training structures on the card, so downstream owners can check overlap with their test data (docs/hub.md says what it reveals).")] = False,
    hub_key: HubKey = None,
    ca: Ca = None,
    client_cert: ClientCert = None,
    client_key: ClientKey = None,
    insecure: Insecure = False,
    chunk_size: Annotated[int, typer.Option(min=1024, hidden=True, help="Largest chunk sent (the hub may ask for less).")] = DEFAULT_CHUNK,
    json_output: Annotated[bool, typer.Option("--json", help="Print the hub's listing entry as JSON.")] = False,
) -> None:
    """Sign a module's manifest for the hub and upload it; it waits there as pending."""
    if (module is None) == (data is None):
        raise MomaError("contribute needs exactly one of --module DIR (an existing module) or "
                        "--data DATASET (train one first, with the options of moma-client train)")
    private = load_private_key(key)  # fail on a bad key before training or connecting
    if data is not None:
        if out_dir is None:
            raise MomaError("training before contributing needs --out DIR to keep the module")
        # Training prints a summary; keep stdout for this command's own (JSON) result.
        redirect = contextlib.redirect_stdout(sys.stderr) if json_output else contextlib.nullcontext()
        with redirect:
            train_cli.train(data=data, out_dir=out_dir, task=task, target=target,
                            backbone=backbone, kind=kind, init=init, split=split, epochs=epochs,
                            batch_size=batch_size, lr=lr, head_lr_factor=head_lr_factor,
                            patience=patience, loss=loss, seed=seed, device=device,
                            skip_invalid=skip_invalid, max_train=max_train, name=name,
                            unit=unit, prop=prop,
                            publish_data_fingerprint=publish_data_fingerprint,
                            json_output=False)
        module = out_dir
    assert module is not None
    with connect(hub, hub_key, ca, client_cert, client_key, insecure) as client, \
            step(f"upload to {client.hub_id}", 1) as update:
        done = upload_module(client, private, module, chunk_size=chunk_size,
                             on_bytes=update, warn=warn)
    summary = done.module
    if json_output:
        print_json({**summary_dict(summary), "resumed_from": done.resumed_from})
        return
    line(f"contributed {summary.module_id} to hub {client.hub_id} "
              f"({summary.size} bytes{', resumed' if done.resumed_from else ''})")
    line(f"  state {state_name(summary.state)}: a hub operator must approve it before "
              "others can compose with it")
    err.print(f"operator: moma-hub modules approve {summary.module_id}", soft_wrap=True)
