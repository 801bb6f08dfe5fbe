"""``moma-client contribute``: sign a module for a hub and upload it (resumable), or train one
first with the options of ``moma-client train`` and upload the result."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from moma.errors import MomaError
from moma_client.cli import train as train_cli
from moma_client.cli.common import err, print_json, step
from moma_client.cli.hub_options import (
    HubAddr,
    connect,
    line,
    take_connection,
    warn,
    with_connection_options,
)
from moma_client.cli.options import TRAINING, with_options_of


@with_connection_options
@with_options_of(train_cli.train, TRAINING)
def contribute(
    hub: HubAddr,
    key: Annotated[Path, typer.Option("--key", envvar="MOMA_LAB_KEY", help="The lab's private key (moma-client keys init), enrolled on the hub.")],
    module: Annotated[Path | None, typer.Option("--module", help="Contribute this module folder (module.safetensors + card.json).")] = None,
    data: Annotated[str | None, typer.Option("--data", help="Or train a module on this dataset first, with the options of moma-client train (same forms as train --data).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="With --data: folder for the trained module.")] = None,
    chunk_size: Annotated[int | None, typer.Option(min=1024, hidden=True, help="Largest chunk sent (default 1 MiB; the hub may ask for less).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the hub's listing entry as JSON.")] = False,
    **training: Any,
) -> None:
    """Sign a module's manifest for the hub and upload it; it waits there as pending."""
    connection = take_connection(training)
    if (module is None) == (data is None):
        raise MomaError("contribute needs exactly one of --module DIR (an existing module) or "
                        "--data DATASET (train one first, with the options of moma-client train)")
    from moma.trust.keys import load_private_key
    from moma_client.hub.client import state_name, summary_dict
    from moma_client.hub.upload import DEFAULT_CHUNK
    from moma_client.hub.upload import contribute as upload_module

    private = load_private_key(key)  # fail on a bad key before training or connecting
    if data is not None:
        if out_dir is None:
            raise MomaError("training before contributing needs --out DIR to keep the module")
        # Training prints a summary; keep stdout for this command's own (JSON) result.
        redirect = contextlib.redirect_stdout(sys.stderr) if json_output else contextlib.nullcontext()
        with redirect:
            train_cli.train(data=data, out_dir=out_dir, json_output=False, **training)
        module = out_dir
    assert module is not None
    with connect(hub, connection) as client, \
            step(f"upload to {client.hub_id}", 1) as update:
        done = upload_module(client, private, module, chunk_size=chunk_size or DEFAULT_CHUNK,
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
