"""The Grafana dashboard etc/grafana/synchrod-dashboard.json (issue 14):

- its shape, as Grafana imports it: unique panel ids, a title and a grid
  position on every panel, every query on the dashboard's ``datasource``
  variable, the ``source`` variable (multi, with "All") and a row repeated by
  it whose panels all use it, no two panels on the same cells;
- every PromQL expression (panel targets, rows' nested panels, annotations,
  the variables' ``label_values`` selectors), with the template variables
  replaced by concrete values, parses: ``promtool check rules`` on a rules
  file holding one recording rule per expression (promtool 2.42 has no
  command that parses a bare expression);
- every metric an expression names is in the exposition of a real daemon
  that synchronized a call and ran an archive task, with samples, and every
  label the dashboard filters, groups or names a legend by is one those
  samples carry (or ``job`` / ``instance``, which Prometheus adds).
"""
from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from pathlib import Path

import _daemon
import pytest
import yaml
from _daemon import wait_until
from _monitor import enable_monitor, start_monitor
from _sync_helpers import wav
from conftest import REPO
from test_metrics import promtool, scrape

from synchrod.testing.recorders import CallSpec

daemons = _daemon.daemons   # the fixture (bound, not imported: no unused-import warning)

DASHBOARD = REPO / "etc" / "grafana" / "synchrod-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: what the variables stand for when an expression is checked: the dashboard's
#: own variables get a value they could have, Grafana's globals a typical one
VALUES = {"source": "rec1", "job": ".*", "instance": ".*", "task": "nightly",
          "__rate_interval": "1m", "__interval": "30s", "__interval_ms": "30000",
          "__range": "6h", "__range_s": "21600", "__range_ms": "21600000"}
GRAFANA_GLOBALS = {k for k in VALUES if k.startswith("__")}
#: $name, ${name}, ${name:format}, [[name]]
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")
#: what the issue asks the dashboard to show (besides the rest it shows)
REQUIRED_METRICS = {
    "synchrod_calls_total", "synchrod_bytes_copied_total", "synchrod_files_copied_total",
    "synchrod_sync_lag_seconds", "synchrod_backlog_calls",
    "synchrod_cycle_duration_seconds_bucket", "synchrod_cycles_total",
    "synchrod_source_up", "synchrod_source_stalled", "synchrod_source_paused",
    "synchrod_source_enabled", "synchrod_source_owned",
    "synchrod_storage_level", "synchrod_target_path_usage_ratio",
    "synchrod_target_path_watermark_ratio", "synchrod_storage_accepting",
    "synchrod_target_path_available", "synchrod_pruned_calls_total",
    "synchrod_pruned_bytes_total", "synchrod_deletion_jobs_total",
    "synchrod_archive_runs_total", "synchrod_archive_files_total",
    "synchrod_archive_bytes_total", "synchrod_archive_last_success_timestamp_seconds",
    "synchrod_config_reloads_total", "synchrod_build_info"}
#: labels every series gets from the scrape, not from synchrod
SCRAPE_LABELS = {"job", "instance"}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
             "unless", "bool", "offset", "inf", "nan"}


def _load() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panels(panels: list[dict]):
    """Every panel, the nested panels of collapsed rows too."""
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


def _variable_query(var: dict) -> str:
    q = var.get("query")
    return q.get("query", "") if isinstance(q, dict) else (q or "")


def _expressions(dash: dict) -> list[tuple[str, str]]:
    """(where, PromQL as written) of every query of the dashboard."""
    found = []
    for p in _panels(dash["panels"]):
        for t in p.get("targets", []):
            found.append((f"panel {p['id']} {p['title']!r} target {t.get('refId')}", t["expr"]))
    for a in dash.get("annotations", {}).get("list", []):
        if "expr" in a:
            found.append((f"annotation {a['name']!r}", a["expr"]))
    for var in dash["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", _variable_query(var), re.DOTALL)
        assert m, f"variable {var['name']}: not a label_values(selector, label) query"
        found.append((f"variable {var['name']}", m.group(1)))
    return found


def _variables_used(expr: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(expr)}


def _substitute(expr: str) -> str:
    def value(m: re.Match) -> str:
        name = next(g for g in m.groups() if g)
        assert name in VALUES, f"no value for ${name} in {expr}: add it to VALUES"
        return VALUES[name]
    return _VARIABLE.sub(value, expr)


def _promtool_parses(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return subprocess.run([promtool(), "check", "rules", str(path)], check=False,
                          capture_output=True, text=True, timeout=60)


# --- what an expression names ------------------------------------------------------------

def _without_strings(expr: str) -> str:
    return re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)


def _selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, label names of its matchers) of every ``metric{...}``."""
    out = []
    for m in re.finditer(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", _without_strings(expr)):
        out.append((m.group(1), set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", m.group(2)))))
    return out


def _grouping_labels(expr: str) -> set[str]:
    """Labels of by / without / on / ignoring / group_left / group_right lists."""
    labels = set()
    for m in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)",
                         _without_strings(expr)):
        labels |= {x.strip() for x in m.group(1).split(",") if x.strip()}
    return labels


def _metric_names(expr: str) -> set[str]:
    """The metric names of a PromQL expression: its identifiers less functions,
    keywords, label names (matchers, grouping lists) and durations."""
    rest = _without_strings(expr)
    rest = re.sub(r"\{[^}]*\}", " ", rest)      # matchers
    rest = re.sub(r"\[[^\]]*\]", " ", rest)     # ranges and subqueries
    rest = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", rest)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", rest):
        if not m.group(2) and m.group(1).lower() not in _KEYWORDS:
            names.add(m.group(1))
    return names


def test_metric_names_are_found_in_expressions():
    """The extraction the exposition check relies on."""
    expr = ('histogram_quantile(0.95, sum by (source, le) (rate(synchrod_cycle_duration_'
            'seconds_bucket{job=~"a|b", source="x{y}"}[5m] offset 1h))) / on (source) '
            'group_left (instance) synchrod_backlog_calls > bool 1e3 and time() - up')
    assert _metric_names(expr) == {"synchrod_cycle_duration_seconds_bucket",
                                   "synchrod_backlog_calls", "up"}
    assert _selectors(expr) == [("synchrod_cycle_duration_seconds_bucket", {"job", "source"})]
    assert _grouping_labels(expr) == {"source", "le", "instance"}
    assert _variables_used('a{s=~"$source", t="${task:regex}"}[$__rate_interval] [[job]]') == \
        {"source", "task", "__rate_interval", "job"}


# --- the dashboard's shape ---------------------------------------------------------------

def test_dashboard_is_importable_grafana_json():
    dash = _load()
    assert dash["schemaVersion"] >= 36 and dash["uid"] == "synchrod" and dash["title"]
    assert dash.get("id") is None, "an exported dashboard carries no database id"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus", ds
    source = variables["source"]
    assert source["type"] == "query" and source["multi"] and source["includeAll"], source
    assert source["datasource"] == DATASOURCE
    assert re.fullmatch(r"label_values\(synchrod_calls_total(\{.*\})?,\s*source\)",
                        _variable_query(source)), _variable_query(source)

    panels = list(_panels(dash["panels"]))
    ids = [p.get("id") for p in panels]
    assert all(isinstance(i, int) for i in ids), ids
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for p in panels:
        where = f"panel {p.get('id')}"
        assert isinstance(p.get("title"), str) and p["title"].strip(), where
        grid = p.get("gridPos")
        assert grid and all(isinstance(grid.get(k), int) for k in "xywh"), (where, grid)
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["h"] > 0 and \
            grid["x"] + grid["w"] <= 24, (where, grid)
        if p["type"] == "row":
            assert not p.get("targets"), where
            continue
        assert p.get("datasource") == DATASOURCE, (where, p.get("datasource"))
        assert p.get("targets"), f"{where} {p['title']!r} has no query"
        for t in p["targets"]:
            assert t.get("datasource", DATASOURCE) == DATASOURCE, (where, t)
            assert t.get("expr", "").strip() and t.get("refId"), (where, t)
    for a in dash["annotations"]["list"]:
        if "expr" in a:
            assert a["datasource"] == DATASOURCE, a


def test_repeated_row_is_by_source():
    dash = _load()
    rows = [p for p in dash["panels"] if p["type"] == "row" and p.get("repeat")]
    assert [r["repeat"] for r in rows] == ["source"], rows
    (row,) = rows
    # collapsed: its panels travel with it, one copy per selected source
    assert row["collapsed"] and row["panels"], row
    assert "$source" in row["title"]
    for p in row["panels"]:
        for t in p["targets"]:
            assert "source" in _variables_used(t["expr"]), (p["title"], t["expr"])


def _overlaps(panels: list[dict]) -> list[tuple[str, str]]:
    cells: dict[tuple[int, int], str] = {}
    clashes = []
    for p in panels:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    clashes.append((cells[(x, y)], p["title"]))
                cells[(x, y)] = p["title"]
    return sorted(set(clashes))


def test_panels_do_not_overlap():
    dash = _load()
    assert not _overlaps(dash["panels"])
    for row in dash["panels"]:
        if row["type"] == "row" and row.get("panels"):
            assert not _overlaps(row["panels"]), row["title"]


def test_dashboard_shows_what_the_issue_asks():
    names = set().union(*(_metric_names(e) for _, e in _expressions(_load())))
    assert not REQUIRED_METRICS - names, sorted(REQUIRED_METRICS - names)


# --- the expressions parse ---------------------------------------------------------------

def test_every_variable_used_is_declared():
    dash = _load()
    declared = {v["name"] for v in dash["templating"]["list"]} | GRAFANA_GLOBALS
    for where, expr in _expressions(dash):
        unknown = _variables_used(expr) - declared
        assert not unknown, (where, expr, unknown)
        assert not _variables_used(_substitute(expr)), (where, expr)


def test_promtool_rejects_a_broken_expression(tmp_path):
    """The check below fails when it should."""
    proc = _promtool_parses(["rate(synchrod_calls_total[5m])",
                             "sum by (source (rate(synchrod_calls_total[5m]))"], tmp_path)
    assert proc.returncode != 0, (proc.stdout, proc.stderr)


def test_every_expression_parses(tmp_path):
    found = _expressions(_load())
    assert len(found) > 40, len(found)
    exprs = [_substitute(e) for _, e in found]
    proc = _promtool_parses(exprs, tmp_path)
    listing = "\n".join(f"{i}: {where}: {e}" for i, ((where, _), e) in enumerate(zip(found, exprs)))
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{listing}"
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout, proc.stdout


# --- against a real daemon's exposition --------------------------------------------------

@pytest.fixture
def exposition(env, daemons, tmp_path):
    """A scrape of a daemon with space management on that synchronized a call
    and ran an archive task (its counters, gauges and histogram all have
    samples then)."""
    now = dt.datetime.now(dt.UTC)
    env.add_calls(0, [CallSpec("g1", now - dt.timedelta(hours=2), files=[wav("/calls/g1/0.wav")])])
    env.raw["archive"] = {"enabled": True, "timezone": "Europe/Prague", "tasks": [
        {"name": "nightly", "destination": str(tmp_path / "arch"), "schedule": "daily",
         "at": "02:00", "min_age_minutes": 0},
        {"name": "first", "destination": str(tmp_path / "arch"), "schedule": "once",
         "at": "now", "min_age_minutes": 0}]}
    env.raw["storage"] = {"enabled": True, "check_interval": 1}
    enable_monitor(env, tmp_path)
    mon = start_monitor(daemons, env)
    wait_until(lambda: env.marks(0) == {"g1": "S"}, 30, "g1 synchronized")
    wait_until(lambda: any(r["task"] == "first" and r["state"] == "completed"
                           for r in mon.get_json("/api/v1/archive/runs")["runs"]),
               30, "the archive task 'first' to complete")

    def complete():
        m = scrape(mon)
        return m if m.get("synchrod_archive_last_success_timestamp_seconds", task="first") \
            and m.get("synchrod_cycles_total", source="rec1", state="ok") \
            and any(name == "synchrod_storage_level" for name, _ in m.samples) \
            else None
    m = wait_until(complete, 15, "the archive, cycle and storage series")
    yield m
    assert mon.daemon.stop() == 0


def test_every_metric_and_label_is_exported(exposition):
    labels: dict[str, set[str]] = {}
    for (name, pairs) in exposition.samples:
        labels.setdefault(name, set()).update(k for k, _ in pairs)
    dash = _load()
    problems = []
    for where, expr in _expressions(dash):
        names = _metric_names(expr)
        if not names:
            problems.append(f"{where}: names no metric: {expr}")
        missing = sorted(n for n in names if n not in labels)
        if missing:
            problems.append(f"{where}: not exported: {missing}")
            continue
        for metric, matched in _selectors(expr):
            unknown = matched - labels[metric] - SCRAPE_LABELS
            if unknown:
                problems.append(f"{where}: {metric} has no label {sorted(unknown)}")
        known = set().union(*(labels[n] for n in names)) | SCRAPE_LABELS
        unknown = _grouping_labels(expr) - known
        if unknown:
            problems.append(f"{where}: groups by unknown label(s) {sorted(unknown)}")
    for p in _panels(dash["panels"]):
        for t in p.get("targets", []):
            known = set().union(*(labels.get(n, set()) for n in _metric_names(t["expr"])))
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")))
            if legend - known - SCRAPE_LABELS:
                problems.append(f"panel {p['title']!r}: legend names "
                                f"{sorted(legend - known - SCRAPE_LABELS)}")
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            metric, label = re.fullmatch(r"label_values\(([\w:]+).*,\s*(\w+)\)",
                                         _variable_query(var), re.DOTALL).groups()
            if label not in labels.get(metric, set()) | SCRAPE_LABELS:
                problems.append(f"variable {var['name']}: {metric} has no label {label}")
    assert not problems, "\n".join(problems)
