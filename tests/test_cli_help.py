"""Issue 14: every command's ``--help`` says in one line what the command is for
and shows how it is run. The commands are found by walking the real parser, so
a command added without help text fails here; each help is read both from the
parser in-process and from the installed console script; each example is parsed
by the real parser, so examples stay valid when options change."""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synchrod.cli import helptext
from synchrod.cli.main import _parser

#: the console script pip installed beside this interpreter (.venv/bin/synchrod)
ENTRY = Path(sys.executable).with_name("synchrod")
EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "etc" / "synchrod.yaml"
#: the width argparse lays help out in; the listing of commands must fit it
COLUMNS = "80"


def _commands(parser: argparse.ArgumentParser, path=(), dests=()):
    """(command path, its parser, the namespace attribute naming each word of the
    path) of ``synchrod`` and of every subcommand below it, at any depth."""
    yield path, parser, dests
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _commands(child, path + (name,), dests + (action.dest,))


def _children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {name: child for action in parser._actions
            if isinstance(action, argparse._SubParsersAction)
            for name, child in action.choices.items()}


COMMANDS = list(_commands(_parser()))
IDS = [" ".join(path) or "synchrod" for path, _, _ in COMMANDS]


def _examples(text: str, path: tuple[str, ...]) -> list[str]:
    """The example lines of a help text's "Example(s):" section, each checked to
    run the command of ``path``."""
    sections = [s for s in text.split("\n\n") if re.match(r"Examples?:\n", s)]
    assert len(sections) == 1, f"no single Example section in:\n{text}"
    heading, *lines = sections[0].splitlines()
    assert 1 <= len(lines) <= 2 and heading == ("Example:" if len(lines) == 1 else "Examples:")
    command = " ".join(("synchrod", *path))
    for line in lines:
        assert line.startswith(f"  {command} ") or line == f"  {command}", line
    return [line.strip() for line in lines]


def _check_help(text: str, path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    """The help of ``path``: usage, then its purpose on one line, the parent's
    list of subcommands each with its purpose on one line, and examples."""
    usage, purpose, *_ = text.split("\n\n")
    assert usage.startswith(" ".join(("usage: synchrod", *path))), usage
    assert purpose == parser.description == helptext.HELP[path][0]
    # the convention of helptext.py, that of argparse's own "show this help message and exit"
    assert "\n" not in purpose and purpose == purpose.strip(), repr(purpose)
    assert purpose[0].islower() and not purpose.endswith("."), repr(purpose)
    for name, child in _children(parser).items():
        assert re.search(rf"^ +{re.escape(name)} +{re.escape(child.description)}$", text, re.MULTILINE), \
            f"{name!r} is not listed with its purpose on one line in:\n{text}"
    _examples(text, path)


@pytest.fixture
def columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", COLUMNS)


def test_every_command_has_an_entry_and_every_entry_a_command():
    """The table of helptext.py and the parser agree both ways: no command without
    help (the parser would not even build), no help of a command that is gone."""
    assert {path for path, _, _ in COMMANDS} == set(helptext.HELP)


@pytest.mark.parametrize("path, parser, dests", COMMANDS, ids=IDS)
def test_help_in_process(path, parser, dests, columns, capsys):
    with pytest.raises(SystemExit) as leave:
        _parser().parse_args([*path, "--help"])
    assert leave.value.code == 0
    _check_help(capsys.readouterr().out, path, parser)


@pytest.mark.parametrize("path, parser, dests", COMMANDS, ids=IDS)
def test_help_of_the_installed_command(path, parser, dests):
    # no configuration anywhere: --help needs none
    env = {**os.environ, "COLUMNS": COLUMNS, "SYNCHROD_CONFIG": "/nonexistent/synchrod.yaml"}
    proc = subprocess.run([str(ENTRY), *path, "--help"], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    _check_help(proc.stdout, path, parser)


@pytest.mark.parametrize("path, parser, dests", COMMANDS, ids=IDS)
def test_examples_parse_and_run_their_command(path, parser, dests, columns):
    """Each example is a valid command line for the real parser, runs the command
    it is shown under, names its configuration file where the command reads one,
    and names a source of the example configuration."""
    sources = {s["sysname"] for s in yaml.safe_load(EXAMPLE_CONFIG.read_text())["sources"]}
    for example in _examples(parser.format_help(), path):
        argv = shlex.split(example)[1:]
        try:
            args = _parser().parse_args(argv)
        except SystemExit as exc:   # argparse printed why on stderr
            pytest.fail(f"{example!r} does not parse (exit {exc.code})")
        assert argv[:len(path)] == list(path)
        for dest, word in zip(dests, path):
            assert getattr(args, dest) == word, example
        if args.command != "passwd":
            assert getattr(args, "config", None), f"{example!r} names no configuration file"
        if getattr(args, "source", None) is not None:
            assert args.source in sources, f"{example!r}: no source {args.source!r} in {EXAMPLE_CONFIG}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
