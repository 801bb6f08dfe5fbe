"""``moma-client federate``'s CA option is ``--ca``, as on every hub command of both programs;
Flower's spelling ``--root-certificates`` still works but is not advertised."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from moma_client.cli.app import main
from moma_server.cli.app import main as hub_main


def invoke(argv: list[str], capsys: pytest.CaptureFixture[str],
           program: Callable[[list[str]], None] = main) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        program(argv)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


@pytest.mark.parametrize("command", ["lab", "run"])
def test_help_names_ca_not_root_certificates(command: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(["federate", command, "--help"], capsys)
    assert code == 0 and "--ca" in out and "--root-certificates" not in out


def test_the_hub_commands_use_the_same_name(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, program in ((["modules", "list", "--help"], main),
                          (["modules", "approve", "--help"], hub_main)):
        code, out, _ = invoke(argv, capsys, program)
        assert code == 0 and "--ca " in out.replace("\n", " ")


@pytest.mark.parametrize("spelling", ["--ca", "--root-certificates"])
def test_a_missing_ca_file_is_one_usage_line(spelling: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = invoke(["federate", "lab", "--superlink", "10.1.2.3:8000", "--data",
                             str(tmp_path / "d.json"), "--key", str(tmp_path / "k.pem"),
                             spelling, str(tmp_path / "no-ca.pem")], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and spelling in err and "does not exist" in err


def test_two_different_cas_are_refused(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a.pem", "b.pem"):
        (tmp_path / name).write_text("not read before the options are checked")
    code, _, err = invoke(["federate", "run", "--superlink", "10.1.2.3:8000", "--task", "t",
                           "--property", "p", "--unit", "u", "--out", str(tmp_path / "o"),
                           "--key", str(tmp_path / "k.pem"), "--ca", str(tmp_path / "a.pem"),
                           "--root-certificates", str(tmp_path / "b.pem")], capsys)
    assert code == 2 and "give the CA once, as --ca" in err
