"""The ``moma-hub`` entry point: serve the hub and curate it (one command per file; the
curation commands are one per row of :data:`moma_server.curation.TRANSITIONS`)."""

from __future__ import annotations

import typer

import moma
from moma.cli.shell import run, version_option
from moma_server.cli import (
    audit,
    init,
    keys_enroll,
    keys_list,
    keys_revoke,
    modules_curate,
    modules_list,
    modules_show,
    serve,
)
from moma_server.curation import TRANSITIONS

app = typer.Typer(name="moma-hub", help="MoMa hub: serve modules and curate them.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
keys_app = typer.Typer(help="Lab keys: enroll, revoke, list.", no_args_is_help=True)
modules_app = typer.Typer(help="Modules: list, show, approve, reject, revoke.",
                          no_args_is_help=True)


@app.command("version")
def version() -> None:
    """Print the software version."""
    typer.echo(f"moma-hub {moma.__version__}")


app.command("serve")(serve.serve_command)
app.command("init")(init.init)
app.command("audit")(audit.audit)
keys_app.command("enroll")(keys_enroll.enroll)
keys_app.command("revoke")(keys_revoke.revoke)
keys_app.command("list")(keys_list.list_keys)
modules_app.command("list")(modules_list.list_modules)
modules_app.command("show")(modules_show.show)
for transition in TRANSITIONS:
    modules_app.command(transition.verb)(modules_curate.command_for(transition))
app.add_typer(keys_app, name="keys")
app.add_typer(modules_app, name="modules")


app.callback()(version_option("moma-hub"))


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: one-line errors and usage mistakes, typed exit codes (:mod:`moma.cli.shell`)."""
    run(app, argv, "moma-hub")


if __name__ == "__main__":
    main()
