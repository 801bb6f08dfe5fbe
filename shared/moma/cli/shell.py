"""Run a typer app the same way in both programs.

- A :class:`moma.errors.MomaError` becomes ``error: ...`` on stderr and its typed exit code.
- A usage mistake (missing or unknown option or argument, a value click rejects) becomes ONE
  line, ``error: ... (see 'PROGRAM COMMAND --help')``, and exit code 2, never a traceback or a
  usage block.
- ``--version`` prints ``PROGRAM VERSION``.

Messages are printed as plain text (no console markup), so brackets in a file name or a
contributor-supplied string print as they are. (No ``from __future__ import annotations``
here: typer reads the ``--version`` option's annotation, whose callback is a local function.)
"""

import sys
from collections.abc import Callable
from typing import Annotated, NoReturn

import click
import typer

from moma.errors import ExitCode, MomaError
from moma.safe_text import clean


def print_error(message: str) -> None:
    """One ``error:`` line; the message may quote a hub or a contributor, so it is escaped
    (:func:`moma.safe_text.clean`: no control characters, no forged second line)."""
    click.echo(f"{click.style('error:', fg='red')} {clean(message)}", err=True)


def usage_line(exc: click.UsageError) -> str:
    """The usage error as one line naming where to read the command's help."""
    message = " ".join(exc.format_message().split())
    if exc.ctx is not None:
        message += f" (see '{exc.ctx.command_path} --help')"
    return message


def run(app: typer.Typer, argv: list[str] | None, program: str) -> NoReturn:
    """Run ``app`` on ``argv`` (default: the process arguments) and exit with its code."""
    try:
        result = app(args=argv, prog_name=program, standalone_mode=False)
    except MomaError as exc:
        print_error(str(exc))
        sys.exit(int(exc.exit_code))
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help(), err=True)
        sys.exit(int(ExitCode.USAGE))
    except click.UsageError as exc:
        print_error(usage_line(exc))
        sys.exit(int(ExitCode.USAGE))
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        print_error(" ".join(exc.format_message().split()))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else int(ExitCode.SUCCESS))


def version_option(program: str) -> Callable[..., None]:
    """A callback for ``app.callback()`` adding ``--version`` to the program's root."""
    from moma import __version__

    def show(value: bool) -> None:
        if value:
            typer.echo(f"{program} {__version__}")
            raise typer.Exit()

    def root(
        version: Annotated[bool, typer.Option("--version", is_eager=True, callback=show,
                                              help="Print the version and exit.")] = False,
    ) -> None:
        pass

    return root
