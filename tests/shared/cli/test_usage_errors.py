"""Every command of both programs answers a usage mistake with one line and exit code 2."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import click
import pytest
import typer

import moma
from moma_client.cli.app import app as client_app
from moma_client.cli.app import main as client_main
from moma_server.cli.app import app as hub_app
from moma_server.cli.app import main as hub_main

PROGRAMS: dict[str, tuple[typer.Typer, Callable[[list[str]], None]]] = {
    "moma-client": (client_app, client_main),
    "moma-hub": (hub_app, hub_main),
}


def leaf_commands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], click.Command]]:
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from leaf_commands(sub, (*path, name))
    else:
        yield path, command


def all_commands() -> list[tuple[str, tuple[str, ...], click.Command]]:
    return [(program, path, command) for program, (app, _) in PROGRAMS.items()
            for path, command in leaf_commands(typer.main.get_command(app))]


COMMANDS = all_commands()
IDS = [" ".join((program, *path)) for program, path, _ in COMMANDS]


def invoke(program: str, argv: list[str], capsys: pytest.CaptureFixture[str]
           ) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        PROGRAMS[program][1](argv)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def assert_one_line_usage_error(code: int, out: str, err: str, command_path: str) -> None:
    assert code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and f"'{command_path} --help'" in lines[0]


def test_the_walk_covers_both_programs() -> None:
    names = set(IDS)
    assert {"moma-client compose", "moma-client modules list", "moma-client federate run",
            "moma-hub keys enroll", "moma-hub modules approve", "moma-hub serve"} <= names
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize(("program", "path", "command"), COMMANDS, ids=IDS)
def test_unknown_option_is_one_line_and_exit_2(program: str, path: tuple[str, ...],
                                               command: click.Command,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = invoke(program, [*path, "--no-such-option"], capsys)
    assert_one_line_usage_error(code, out, err, " ".join((program, *path)))
    assert "No such option" in err


@pytest.mark.parametrize(("program", "path", "command"), COMMANDS, ids=IDS)
def test_missing_required_argument_is_one_line_and_exit_2(
        program: str, path: tuple[str, ...], command: click.Command,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    required = [p for p in command.params if p.required]
    if not required:
        pytest.skip("no required argument")
    for param in command.params:  # options filled from the environment would not be missing
        for var in getattr(param, "envvar", None) or []:
            monkeypatch.delenv(var, raising=False)
        if isinstance(getattr(param, "envvar", None), str):
            monkeypatch.delenv(param.envvar, raising=False)  # type: ignore[arg-type]
    code, out, err = invoke(program, list(path), capsys)
    assert_one_line_usage_error(code, out, err, " ".join((program, *path)))
    assert "Missing" in err


@pytest.mark.parametrize("program", list(PROGRAMS))
def test_version(program: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = invoke(program, ["--version"], capsys)
    assert code == 0 and out.strip() == f"{program} {moma.__version__}" and not err


def test_a_bad_choice_names_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = invoke("moma-client", ["compose", "--data", "x", "--out", "y",
                                            "--strategy", "bogus"], capsys)
    assert_one_line_usage_error(code, out, err, "moma-client compose")
    assert "'bogus' is not one of 'amc', 'select-average'" in err
