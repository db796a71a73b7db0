"""What ``--help`` says of each command, in one table: its one-line purpose
(the description, and its line in the parent's list of commands) and one or
two example invocations (the epilog). main.py builds every parser through
:func:`options` and :func:`add`, so a command missing here fails at once.

Convention: a purpose starts in lower case and has no final period, like
argparse's own "show this help message and exit"; an example is a whole
command line, valid for the parser (tests/test_cli_help.py parses each)."""
from __future__ import annotations

import argparse

CONFIG = "-c /etc/synchrod/synchrod.yaml"

#: command path (() is ``synchrod`` itself) -> (purpose, examples)
HELP: dict[tuple[str, ...], tuple[str, tuple[str, ...]]] = {
    (): ("replicate CallREC call recordings from the recorders to the replay server", (
        f"synchrod check {CONFIG}",
        f"synchrod once {CONFIG} --until-idle")),
    ("run",): ("run the daemon in the foreground until SIGTERM (SIGHUP reloads)", (
        f"synchrod run {CONFIG}",
        f"synchrod run {CONFIG} --ready-file /run/synchrod/synchrod.ready")),
    ("once",): ("run one cycle for every enabled source and print a summary", (
        f"synchrod once {CONFIG} --dry-run",
        f"synchrod once {CONFIG} --source rec1 --until-idle")),
    ("check",): ("check configuration, databases, mount and target paths", (
        f"synchrod check {CONFIG}",
        "synchrod check -c /etc/synchrod/synchrod.yaml.new")),
    ("init-db",): ("create or migrate synchrod's schema in the replay database", (
        f"synchrod init-db {CONFIG}",)),
    ("status",): ("show the live daemons and the state of every source and job", (
        f"synchrod status {CONFIG} --watch",
        f"synchrod status {CONFIG} --json")),
    ("run-now",): ("wake the running daemons: skip the current sleep", (
        f"synchrod run-now {CONFIG}",
        f"synchrod run-now {CONFIG} --source rec1")),
    ("retry",): ("clear E marks and failure records so the calls are tried again", (
        f"synchrod retry {CONFIG} --source rec1",
        f"synchrod retry {CONFIG} --source rec1 --sid 8f3e2a71c4d0 --sid 91ab07e5d2f3")),
    ("storage",): ("show each filesystem's storage level and the next pruning round", (
        f"synchrod storage {CONFIG}",
        f"synchrod storage {CONFIG} --json")),
    ("purge",): ("remove the media (or the calls) of old or named target calls", (
        f"synchrod purge {CONFIG} --older-than 365 --dry-run",
        f"synchrod purge {CONFIG} --before 2025-01-01 --source rec1 --comment 'rec1 retired'")),
    ("archive",): ("archive export tasks: list them, run one, show their history", (
        f"synchrod archive list {CONFIG}",
        f"synchrod archive run {CONFIG} nightly")),
    ("archive", "list"): ("list every task, its schedule, next run and last run", (
        f"synchrod archive list {CONFIG}",)),
    ("archive", "run"): ("run a task now in the foreground and print a summary", (
        f"synchrod archive run {CONFIG} nightly",)),
    ("archive", "history"): ("show the runs, newest first, or one run's files", (
        f"synchrod archive history {CONFIG} weekly-vip --limit 5",
        f"synchrod archive history {CONFIG} --run 42")),
    ("passwd",): ("print the hash of a password read on stdin, for monitor.users", (
        "synchrod passwd",)),
}

#: after the examples of ``synchrod --help``: where the rest is
MORE = "Each command's options and examples: synchrod COMMAND --help"


def options(path: tuple[str, ...]) -> dict:
    """The keyword arguments of the parser of command ``path``: its purpose as the
    description, its examples as the epilog (line breaks kept); KeyError when the
    table has no entry for it."""
    purpose, examples = HELP[path]
    lines = ["Example:" if len(examples) == 1 else "Examples:", *(f"  {e}" for e in examples)]
    if not path:
        lines += ["", MORE]
    return {"description": purpose, "epilog": "\n".join(lines),
            "formatter_class": argparse.RawDescriptionHelpFormatter}


def add(subparsers, path: tuple[str, ...], **kwargs) -> argparse.ArgumentParser:
    """Adds the parser of command ``path`` (its last word) to ``subparsers``, with its
    purpose listed in the parent's help and :func:`options`; ``kwargs`` go to
    ``add_parser`` (``parents=`` …)."""
    return subparsers.add_parser(path[-1], help=HELP[path][0], **options(path), **kwargs)
