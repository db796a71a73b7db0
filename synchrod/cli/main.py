"""Command line: parses, loads the configuration, dispatches. No logic here."""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import json
import sys

from .. import __version__, exits
from ..config import ConfigError, load, load_target_dsn, resolve_path
from . import helptext


def _parser() -> argparse.ArgumentParser:
    """The ``synchrod`` argument parser: one subcommand per command, each but ``passwd``
    with ``-c/--config``; exits 2 (argparse) on a bad command line. Purposes and examples
    of ``--help`` come from :mod:`.helptext`."""
    ap = argparse.ArgumentParser(prog="synchrod", **helptext.options(()))
    ap.add_argument("--version", action="version", version=f"synchrod {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str) -> argparse.ArgumentParser:
        p = helptext.add(sub, (name,))
        if name != "passwd":
            p.add_argument("-c", "--config", help="configuration file (default: $SYNCHROD_CONFIG "
                                                  "or /etc/synchrod/synchrod.yaml)")
        return p

    p = cmd("run")
    p.add_argument("--ready-file", metavar="FILE",
                   help="write the daemon's pid to FILE once it is ready (what sd_notify READY=1 "
                        "tells systemd), remove it at exit; for init scripts without systemd")
    p = cmd("once")
    p.add_argument("--source", help="only this source")
    p.add_argument("--until-idle", action="store_true", help="cycle back to back until nothing is left")
    p.add_argument("--dry-run", action="store_true", help="show what would be done; change nothing")
    cmd("check")
    cmd("init-db")
    p = cmd("status")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--watch", action="store_true", help="refresh every 2 seconds")
    p = cmd("run-now")
    p.add_argument("--source", help="only this source (its group)")
    p = cmd("retry")
    p.add_argument("--source", required=True, help="the source whose calls to retry")
    p.add_argument("--sid", action="append", metavar="SID",
                   help="only this call (repeatable); default: every erroneous call")
    p = cmd("storage")
    p.add_argument("--json", action="store_true", help="the object of GET /api/v1/storage")
    p = cmd("purge")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--before", metavar="DATE", type=_date,
                       help="calls that started before DATE (ISO 8601; local time if no zone)")
    which.add_argument("--older-than", metavar="DAYS", type=_days,
                       help="calls that started more than DAYS days ago")
    which.add_argument("--sid", action="append", metavar="SID", help="this call (repeatable)")
    p.add_argument("--source", help="only calls synchronized from this source")
    p.add_argument("--metadata", action="store_true",
                   help="delete the couples too, not only their media (their call once empty)")
    p.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    p.add_argument("--comment", help="kept with each call's audit record")
    p = cmd("archive")
    what = p.add_subparsers(dest="archive_command", metavar="list|run|history", required=True)
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("-c", "--config", default=argparse.SUPPRESS,
                        help="configuration file (as for every command)")
    helptext.add(what, ("archive", "list"), parents=[config])
    one = helptext.add(what, ("archive", "run"), parents=[config])
    one.add_argument("name", help="the task's name")
    hist = helptext.add(what, ("archive", "history"), parents=[config])
    hist.add_argument("name", nargs="?", help="only this task's runs")
    hist.add_argument("--run", type=int, metavar="ID", help="this run with every file's entry")
    hist.add_argument("--limit", type=int, default=20, help="runs shown (default 20)")
    cmd("passwd")
    return ap


def _date(text: str) -> dt.datetime:
    """``--before``: an ISO 8601 date or date and time; without a zone, local time."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date: {text!r}") from None
    return value if value.tzinfo else value.astimezone()


def _days(text: str) -> dt.datetime:
    """``--older-than``: a whole number of days back from now."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of days (1 or more), not {text!r}")
    return dt.datetime.now(dt.UTC) - dt.timedelta(days=int(text))


def main(argv: list[str] | None = None) -> int:
    """Runs the command of ``argv`` (default: ``sys.argv``) and returns its exit
    status. A configuration that fails to load prints one line per error
    and returns 78 (exits.CONFIG); `status` then still tries to show the
    running daemons (:func:`_status_despite`)."""
    args = _parser().parse_args(argv)
    if args.command == "passwd":
        return _passwd()
    path = resolve_path(args.config)
    try:
        cfg = load(path)
    except ConfigError as exc:
        for one in exc.errors:
            print(f"synchrod: configuration error: {one}", file=sys.stderr)
        if args.command == "status":
            return _status_despite(path, exc, args)
        return exits.CONFIG
    from . import archive, commands  # heavy imports only once the config is valid
    handler = {"archive": archive.command,"run": commands.run, "once": commands.once, "check": commands.check,
               "init-db": commands.init_db, "status": commands.status,
               "run-now": commands.run_now, "retry": commands.retry,
               "purge": commands.purge, "storage": commands.storage}[args.command]
    try:
        return asyncio.run(handler(cfg, args))
    except KeyboardInterrupt:
        return 130


def _status_despite(path: str, error: ConfigError, args) -> int:
    """A daemon keeps running on its last valid configuration after a bad
    edit; `status` still reaches it when the file names the replay database."""
    try:
        dsn = load_target_dsn(path)
    except ConfigError:
        return exits.CONFIG
    from . import commands
    return asyncio.run(commands.status(None, args, dsn=dsn, config_error=str(error)))


def _passwd() -> int:
    from ..monitor.passwords import hash_password
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Again: "):
            print("synchrod: passwords differ", file=sys.stderr)
            return exits.FAILED
    else:
        first = sys.stdin.readline().rstrip("\n")
    if not first:
        print("synchrod: empty password", file=sys.stderr)
        return exits.FAILED
    print(hash_password(first))
    return exits.OK


def print_json(obj) -> None:
    """Writes ``obj`` to standard output as indented JSON (other values as ``str``) and a
    newline."""
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
