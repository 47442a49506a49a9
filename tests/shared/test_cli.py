"""What both command lines share (shared/cli.py): every argument explained, --version, one-line failures."""

from __future__ import annotations

import argparse

import pytest

from shared.cli import add_version_argument, medact_version, run_command


def _commands() -> list[tuple[str, str, argparse.ArgumentParser]]:
    import action.cli
    import medseg.cli

    out = []
    for program, parser in (("medact-seg", medseg.cli.build_parser()), ("medact-action", action.cli.build_parser())):
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        out += [(program, name, command) for name, command in sub.choices.items()]
    return out


def test_every_argument_of_every_command_has_help() -> None:
    commands = _commands()
    assert {"infer", "plan", "predict", "make-demo-data", "extract-features"} <= {name for _, name, _ in commands}
    undocumented = [
        f"{program} {name} {action.option_strings or action.dest}"
        for program, name, parser in commands
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()
    ]
    assert undocumented == []


def test_version_names_the_program_and_medact(capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser(prog="medact-x")
    add_version_argument(parser)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"medact-x (medact {medact_version()})"


def test_a_failing_command_is_one_line_and_exit_code_2(capsys: pytest.CaptureFixture) -> None:
    def fails(_: argparse.Namespace) -> int:
        raise FileNotFoundError("scan.nii.gz: no such file\n(details a user does not need)")

    assert run_command(argparse.Namespace(func=fails)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: scan.nii.gz: no such file") and len(err.strip().splitlines()) == 1
    assert run_command(argparse.Namespace(func=lambda _: 0)) == 0
