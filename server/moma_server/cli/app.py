"""The ``moma-hub`` entry point (operator commands)."""

from __future__ import annotations

import sys

import typer

import moma
from moma.errors import MomaError

app = typer.Typer(name="moma-hub", help="MoMa hub: serve modules and curate them.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@app.command("version")
def version() -> None:
    """Print the software version."""
    typer.echo(f"moma-hub {moma.__version__}")


@app.callback()
def _root() -> None:
    """MoMa hub: serve modules and curate them."""


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=False)
    except MomaError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(int(exc.exit_code))


if __name__ == "__main__":
    main()
