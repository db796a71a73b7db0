"""The Prometheus alerting rules shipped for operators
(etc/prometheus/synchrod-alerts.yml), checked with Prometheus' own tool:
``promtool check rules`` accepts them, ``promtool test rules`` runs their
unit tests (tests/promtool/), and every alert is made to fire and then to
resolve there, so an alert added without a test fails the suite. Every alert
carries ``for:``, a severity, a summary naming the source, path, filesystem
or task it is about, a description and a runbook entry in docs/operations.md.
Every metric and label value a rule selects is one a running daemon really
exports (scraped from a real ``synchrod run``), and ``rate``/``increase``
are only taken of counters."""
from __future__ import annotations

import collections
import re
import subprocess

import _daemon
import yaml
from _daemon import wait_until
from _monitor import enable_monitor, start_monitor
from conftest import REPO
from prometheus_client.parser import text_string_to_metric_families
from test_metrics import promtool, scrape

daemons = _daemon.daemons   # the fixture (bound, not imported: no unused-import warning)

RULES = REPO / "etc" / "prometheus" / "synchrod-alerts.yml"
UNIT_TESTS = REPO / "tests" / "promtool" / "synchrod-alerts-test.yml"
RUNBOOK = REPO / "docs" / "operations.md"
SEVERITIES = {"info", "warning", "critical"}
#: labels that say what an alert is about: a summary must name each one its series carry
SUBJECTS = ("source", "path", "filesystem", "task")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_NOT_METRICS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                "group_left", "group_right", "inf", "nan"}


def _promtool_run(*args: str) -> str:
    proc = subprocess.run([promtool(), *args], cwd=REPO, capture_output=True, text=True, check=False,
                          timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"promtool {' '.join(args)} exited {proc.returncode}:\n{out}"
    return out


def _alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def _seconds(text: str) -> float:
    """A Prometheus duration (``90s``, ``1h30m``, ``2d``) in seconds."""
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", str(text))
    assert parts and "".join(n + u for n, u in parts) == str(text), f"not a duration: {text!r}"
    return sum(int(n) * _UNITS[u] for n, u in parts)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are neither
    functions nor aggregations (followed by ``(``), keywords, label names
    (in ``{...}`` or after ``by``/``on``/...), durations nor numbers."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", s):
        if s[m.end():].lstrip().startswith("(") or m.group(0).lower() in _NOT_METRICS:
            continue
        names.add(m.group(0))
    return names


def selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Each ``name{label op "value", ...}`` of an expression, its matchers parsed."""
    out = []
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}", expr):
        matchers = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', m.group(2))
        out.append((m.group(1), matchers))
    return out


def test_promtool_check_rules_accepts_the_file():
    out = _promtool_run("check", "rules", str(RULES.relative_to(REPO)))
    assert f"SUCCESS: {len(_alerts())} rules found" in out, out


def test_promtool_unit_tests_pass():
    out = _promtool_run("test", "rules", str(UNIT_TESTS.relative_to(REPO)))
    assert "SUCCESS" in out and "FAILED" not in out, out


def test_every_alert_has_for_severity_summary_description_and_runbook():
    alerts = _alerts()
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names)), collections.Counter(names)
    headings = set(re.findall(r"^### (\w+)\s*$", RUNBOOK.read_text(), re.MULTILINE))
    for a in alerts:
        name = a["alert"]
        assert name.startswith("Synchrod"), name
        assert "for" in a and _seconds(a["for"]) > 0, (name, a.get("for"))
        assert a.get("labels", {}).get("severity") in SEVERITIES, (name, a.get("labels"))
        notes = a.get("annotations", {})
        assert notes.get("summary", "").strip() and notes.get("description", "").strip(), name
        assert notes.get("runbook_url") == f"docs/operations.md#{name.lower()}", (name, notes)
        assert name in headings, f"docs/operations.md has no '### {name}' runbook entry"
    # the runbook has no entry for an alert that is gone
    assert {h for h in headings if h.startswith("Synchrod")} == set(names)
    # the alerts named by the issue are all there
    for expr in ("synchrod_sync_lag_seconds", "synchrod_source_up", "synchrod_source_stalled",
                 'result="failed"', 'result="erroneous"', "synchrod_source_owned",
                 "synchrod_storage_level == 1", "synchrod_storage_level == 2",
                 "synchrod_storage_level == 3", 'state="failed"', "missed",
                 "synchrod_config_last_reload_successful", "absent(synchrod_build_info)"):
        assert any(expr in a["expr"] for a in alerts), f"no alert on {expr}"


def test_every_alert_fires_and_then_resolves_in_the_unit_tests():
    spec = yaml.safe_load(UNIT_TESTS.read_text())
    assert [(UNIT_TESTS.parent / f).resolve() for f in spec["rule_files"]] == [RULES.resolve()]
    alerts = {a["alert"]: a for a in _alerts()}
    fired_then_resolved: set[str] = set()
    for group in spec["tests"]:
        checks = collections.defaultdict(list)   # alert -> [(eval time, fires)]
        for t in group.get("alert_rule_test", []):
            name = t["alertname"]
            assert name in alerts, f"test {group.get('name')!r} checks an unknown alert {name}"
            expected = t.get("exp_alerts") or []
            for e in expected:
                assert e["exp_labels"]["severity"] == alerts[name]["labels"]["severity"], (name, e)
                assert e.get("exp_annotations", {}).get("summary"), (name, e)
            checks[name].append((_seconds(t["eval_time"]), bool(expected)))
        for name, points in checks.items():
            if any(fires and any(later > when and not f for later, f in points)
                   for when, fires in points):
                fired_then_resolved.add(name)
    missing = sorted(set(alerts) - fired_then_resolved)
    assert not missing, f"alerts no unit test makes fire and then resolve: {missing}"


def _used(alerts: list[dict]) -> set[str]:
    return set().union(*(metric_names(a["expr"]) for a in alerts))


def test_the_expression_reader_finds_every_metric():
    """The lexer the next test relies on, on the shapes the rules use."""
    assert metric_names('absent(synchrod_build_info)') == {"synchrod_build_info"}
    assert metric_names('(max by (source) (a_total{x="y", z=~"b|c"}) == 1) and on (source) '
                        'max by (source) (b) == 0') == {"a_total", "b"}
    assert metric_names('sum by (task, state) (increase(c_total{s="m"}[1d])) > 1e3 '
                        'unless time() - d offset 5m > 3600') == {"c_total", "d"}
    assert selectors('increase(c_total{s=~"m|n", r="f"}[1h])') == \
        [("c_total", [("s", "=~", "m|n"), ("r", "=", "f")])]


def test_rules_use_only_what_a_running_daemon_exports(env, daemons, tmp_path):
    # a daemon with every part whose series the rules select: sources, storage levels, an
    # archive task (its series exist from the start)
    env.raw["storage"] = {"enabled": True, "check_interval": 1}
    env.raw["archive"] = {"enabled": True, "timezone": "UTC", "tasks": [
        {"name": "nightly", "destination": str(tmp_path / "archive"), "schedule": "daily",
         "at": "02:00"}]}
    enable_monitor(env, tmp_path)
    mon = start_monitor(daemons, env)
    alerts = _alerts()
    used = _used(alerts)
    assert used, "no metric found in the rules"

    def exported():
        m = scrape(mon)
        have = {s.name for f in m.families.values() for s in f.samples}
        return m if used <= have else None
    try:
        m = wait_until(exported, 30, "every metric the rules use")
    except AssertionError:
        m = scrape(mon)
        have = {s.name for f in m.families.values() for s in f.samples}
        raise AssertionError(f"the rules use metrics the daemon does not export: "
                             f"{sorted(used - have)}\n{m.text}") from None
    samples = collections.defaultdict(list)   # sample name -> label sets
    kinds = {}
    for f in text_string_to_metric_families(m.text):
        for s in f.samples:
            samples[s.name].append(s.labels)
            kinds[s.name] = f.type
    for a in alerts:
        expr = a["expr"]
        # the label values selected exist (an alternation of plain words: each word)
        for name, matchers in selectors(expr):
            for label, op, value in matchers:
                if op == "=" or (op == "=~" and re.fullmatch(r"\w+(\|\w+)*", value)):
                    for v in value.split("|"):
                        assert any(ls.get(label) == v for ls in samples[name]), \
                            f"{a['alert']}: no {name}{{{label}={v!r}}} in the exposition"
        # rate and increase of counters only
        for fn, name in re.findall(r"\b(rate|irate|increase)\s*\(\s*([A-Za-z_:][\w:]*)", expr):
            assert kinds.get(name) == "counter", (a["alert"], fn, name, kinds.get(name))
        # the summary names what the alert is about (absent() has no series to name)
        if not expr.startswith("absent("):
            carried = {label for n in metric_names(expr) for ls in samples[n] for label in ls}
            summary = a["annotations"]["summary"]
            for label in (lbl for lbl in SUBJECTS if lbl in carried):
                assert "$labels." + label in summary, (a["alert"], label, summary)
    assert mon.daemon.stop() == 0
