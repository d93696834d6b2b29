"""The tidings command reads as a finished tool: prose help, --version, one-line errors."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.cli import EXIT_CODES, _build_parser, main, tidings_version

ROOT = Path(__file__).resolve().parents[2]
MARKUP = re.compile(r"`|:(?:class|func|data|mod|meth):")


def parsers(
    parser: argparse.ArgumentParser, name: str = "tidings"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the command tree, with its command line."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from parsers(child, f"{name} {sub}")


def test_every_command_and_option_has_prose_help() -> None:
    checked = 0
    for name, parser in parsers(_build_parser()):
        assert parser.description and not MARKUP.search(parser.description), name
        assert parser.epilog and "exit status" in parser.epilog, name
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help and not MARKUP.search(choice.help), (name, choice.dest)
                continue
            where = (name, action.option_strings or action.dest)
            assert action.help and action.help.strip(), where
            assert not MARKUP.search(action.help), where
            checked += 1
    assert checked > 30  # every command's options, not just the top level


def test_deploy_stage_is_explained() -> None:
    deploy = dict(parsers(_build_parser()))["tidings deploy"]
    (stage,) = [a for a in deploy._actions if "--stage" in a.option_strings]
    assert stage.help and "Stage" in stage.help


def test_help_prints_no_markup(capsys: pytest.CaptureFixture[str]) -> None:
    for name, _ in parsers(_build_parser()):
        with pytest.raises(SystemExit) as done:
            main([*name.split()[1:], "--help"])
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert not MARKUP.search(out), name
        assert "exit status:" in out, name


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"tidings {tidings_version()}"
    assert re.fullmatch(r"tidings \d+\.\d+\.\d+\S*", out)


def test_version_falls_back_to_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    import tomllib

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert tidings_version() == f"{project['version']} (not installed: a checkout)"


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_a_usage_error_is_one_line_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["deploy", "--region", "eu-west-1"])
    assert done.value.code == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("tidings deploy: ") and "--stack" in line
    assert "see tidings deploy --help" in line


def test_a_bad_credentials_file_is_one_line_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "creds.json"
    bad.write_text("{not json", encoding="utf-8")
    assert main(["gateway", "--port", "0", "--credentials", str(bad)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("tidings: ") and str(bad) in line


def test_a_missing_template_is_one_line_with_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.yaml"
    assert main(["up", "--state-dir", str(tmp_path), "--template", str(missing)]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("tidings: ") and str(missing) in line and "--template" in line


def test_an_unexpected_error_is_one_line_with_status_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import infra.cli

    def broken(args: argparse.Namespace) -> int:
        raise ValueError("something\nbroke")

    monkeypatch.setattr(infra.cli, "_run_gateway", broken)
    assert main(["gateway"]) == 1
    line = one_line(capsys.readouterr().err)
    assert "unexpected ValueError: something broke" in line and "tidings -v gateway" in line
    with pytest.raises(ValueError):
        main(["-v", "gateway"])  # -v shows the traceback


def test_the_exit_codes_are_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Exit status") :]
    for code in EXIT_CODES:
        assert re.search(rf"^\| `{code}` \|", section, flags=re.MULTILINE), code


def test_no_aws_region_is_one_line_with_status_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "aws-config"
    empty.write_text("", encoding="utf-8")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    assert main(["destroy", "--stack", "tidings-test"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("tidings: no AWS region") and "--region" in line
