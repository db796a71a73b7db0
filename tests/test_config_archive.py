"""The ``archive`` section and ``storage.require_archived`` (SPEC §10):
every rule with its key path, all errors listed at once, exit 78 from the
command line, a valid section built into its objects."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
import yaml
from test_config import base

from synchrod.config import ConfigError, from_dict

NOW = dt.datetime.now(dt.timezone.utc)


def _with(tasks: list[dict], **archive) -> dict:
    raw = base()
    raw["archive"] = {"enabled": True, "timezone": "Europe/Prague", "tasks": tasks, **archive}
    return raw


def _task(**kw) -> dict:
    return {"name": "nightly", "destination": "/srv/archive", "schedule": "daily", "at": "02:00", **kw}


def _errors(raw: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as exc:
        from_dict(raw)
    return {e.path: e.message for e in exc.value.errors}


def test_a_valid_section_is_built():
    cfg = from_dict(_with([_task(), _task(name="weekly run", schedule="weekly", at="03:30",
                                          weekday="sunday", sources=["src1"]),
                           _task(name="m-1", schedule="monthly", at="04:00", day=28),
                           _task(name="h_1", schedule="hourly", at=":15"),
                           _task(name="first", schedule="once", at="now")]))
    assert cfg.archive.enabled and cfg.archive.timezone == "Europe/Prague"
    weekly = cfg.archive.task("weekly run")
    assert weekly.schedule.weekday == "sunday" and weekly.sources == ("src1",)
    assert weekly.folder == "/srv/archive/weekly run" and weekly.lookback_days == 30
    assert weekly.min_age_minutes == 5 and cfg.storage.require_archived is None
    assert from_dict(base()).archive.tasks == ()


@pytest.mark.parametrize("task, key, words", [
    (_task(name="a/b"), "name", "folder"),
    (_task(name=".."), "name", "folder"),
    (_task(name="x" * 65), "name", "1-64"),
    (_task(destination="srv/archive"), "destination", "absolute"),
    (_task(destination="/opt/callrec/data/calls/archive"), "destination", "apart from the target path"),
    (_task(destination="/opt/callrec"), "destination", "apart from the target path"),
    (_task(schedule="yearly"), "schedule", "must be one of"),
    (_task(at=120), "at", "quoted"),
    (_task(at="25:00"), "at", ""),
    (_task(schedule="hourly", at="02:00"), "at", ""),
    (_task(schedule="weekly"), "weekday", ""),
    (_task(schedule="weekly", weekday="funday"), "weekday", "must be one of"),
    (_task(weekday="monday"), "weekday", ""),
    (_task(schedule="monthly"), "day", ""),
    (_task(schedule="monthly", day=29), "day", ""),
    (_task(day=3), "day", ""),
    (_task(schedule="once", at="soon"), "at", ""),
    (_task(schedule="once", at=(NOW + dt.timedelta(days=8)).isoformat()), "at", "7 days"),
    (_task(lookback_days=0), "lookback_days", ""),
    (_task(sources=["src1", "src1"]), "sources[1]", "twice"),
    (_task(colour="red"), "colour", "unknown key"),
])
def test_each_rule_names_its_key(task, key, words):
    errors = _errors(_with([task]))
    assert f"archive.tasks[0].{key}" in errors, errors
    assert words in errors[f"archive.tasks[0].{key}"]


def test_once_in_the_past_is_accepted_it_ran_or_is_missed():
    past = (NOW - dt.timedelta(days=30)).isoformat()
    assert from_dict(_with([_task(schedule="once", at=past)])).archive.tasks[0].schedule.at == past


def test_names_unique_timezone_known_require_archived_names_a_task():
    raw = _with([_task(), _task()], timezone="Mars/Olympus")
    raw["storage"] = {"require_archived": "weekly"}
    errors = _errors(raw)
    assert "already used" in errors["archive.tasks[1].name"]
    assert "time zone" in errors["archive.timezone"]
    assert "names no archive task" in errors["storage.require_archived"]
    raw = _with([_task()])
    raw["storage"] = {"require_archived": "nightly"}
    assert from_dict(raw).storage.require_archived == "nightly"


def test_the_command_line_exits_78_naming_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with([_task(name="a/b")])))
    proc = subprocess.run([sys.executable, "-m", "synchrod", "check", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 78 and "archive.tasks[0].name" in proc.stderr, proc.stderr
