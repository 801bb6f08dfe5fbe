"""The ``moma-client`` entry point: registers one command per file and turns errors into
one-line messages with typed exit codes (see :class:`moma.errors.ExitCode`)."""

from __future__ import annotations

import sys

import click
import typer

from moma.errors import ExitCode, MomaError
from moma.safe_text import for_markup
from moma_client.cli.common import err
from moma_client.cli.compose import compose
from moma_client.cli.contribute import contribute
from moma_client.cli.federate import federate_app
from moma_client.cli.hub_modules import extend_modules_app
from moma_client.cli.keys_init import keys_app
from moma_client.cli.modules import modules_app
from moma_client.cli.predict import predict
from moma_client.cli.train import train

app = typer.Typer(
    name="moma-client",
    help="MoMa client: train property modules, predict, and compose modules for a new task.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("train")(train)
app.command("predict")(predict)
app.command("compose")(compose)
app.command("contribute")(contribute)
extend_modules_app(modules_app)  # list/show/pull also read a hub (--hub)
app.add_typer(modules_app, name="modules")
app.add_typer(keys_app, name="keys")
app.add_typer(federate_app, name="federate")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a :class:`MomaError` becomes ``error: ...`` on stderr and its exit code."""
    try:
        result = app(args=argv, standalone_mode=False)
    except MomaError as exc:
        err.print(f"[red]error:[/red] {for_markup(exc)}", soft_wrap=True)
        sys.exit(int(exc.exit_code))
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else int(ExitCode.SUCCESS))


if __name__ == "__main__":
    main()
