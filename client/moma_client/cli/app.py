"""The ``moma-client`` entry point: registers one command per file and turns errors into
one-line messages with typed exit codes (see :class:`moma.errors.ExitCode`)."""

from __future__ import annotations

import typer

from moma.cli.shell import run, version_option
from moma_client.cli.compose import compose
from moma_client.cli.contribute import contribute
from moma_client.cli.federate import federate_app
from moma_client.cli.hub_modules import list_command, pull_command, show_command
from moma_client.cli.keys_init import keys_app
from moma_client.cli.modules import import_moe18_command
from moma_client.cli.predict import predict
from moma_client.cli.train import train

app = typer.Typer(
    name="moma-client",
    help="MoMa client: train property modules, predict, and compose modules for a new task.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.callback()(version_option("moma-client"))
app.command("train")(train)
app.command("predict")(predict)
app.command("compose")(compose)
app.command("contribute")(contribute)
modules_app = typer.Typer(
    help="Modules: import the MoE-(18) CGCNNs; list, show and pull local or hub modules.",
    no_args_is_help=True)
modules_app.command("import-moe18")(import_moe18_command)
modules_app.command("list")(list_command)  # a local FOLDER, or --hub
modules_app.command("show")(show_command)  # a module folder, or a module id with --hub
modules_app.command("pull")(pull_command)
app.add_typer(modules_app, name="modules")
app.add_typer(keys_app, name="keys")
app.add_typer(federate_app, name="federate")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: one-line errors and usage mistakes, typed exit codes (:mod:`moma.cli.shell`)."""
    run(app, argv, "moma-client")


if __name__ == "__main__":
    main()
