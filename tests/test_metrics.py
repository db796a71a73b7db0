"""Prometheus metrics at GET /metrics of a real daemon (SPEC §8): valid
exposition (promtool), and values that match what really happened (calls,
files and bytes on disk, backlog and lag, a source that is down, reloads)."""
from __future__ import annotations

import copy
import datetime as dt
import os
import shutil
import signal
import subprocess
import time

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import _daemon
import synchrod
from _daemon import synchrod as synchrod_cli, wait_until
from _monitor import enable_monitor, start_monitor
from conftest import NOW, call

daemons = _daemon.daemons   # the fixture (bound, not imported: no unused-import warning)


class Scrape:
    def __init__(self, text: str):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                        for f in self.families.values() for s in f.samples}

    def get(self, name: str, **labels) -> float | None:
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def value(self, name: str, **labels) -> float:
        v = self.get(name, **labels)
        assert v is not None, f"no sample {name}{labels} in:\n{self.text}"
        return v


def scrape(mon) -> Scrape:
    reply = mon.get("/metrics", headers={"Accept": "text/plain"}).expect(200)
    assert reply.content_type == "text/plain", reply.header("Content-Type")
    return Scrape(reply.text)


def promtool() -> str:
    """The path of promtool (Debian's package prometheus); the test is skipped without it."""
    found = shutil.which("promtool") or ("/usr/bin/promtool"
                                         if os.path.exists("/usr/bin/promtool") else None)
    if found is None:
        pytest.skip("promtool is not installed")
    return found


def promtool_check(text: str) -> None:
    proc = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), \
        (proc.returncode, proc.stdout, proc.stderr)


def _age_seconds(minutes_ago: int) -> float:
    return time.time() - (NOW - dt.timedelta(minutes=minutes_ago)).timestamp()


def test_metrics_before_and_after_a_sync(env, daemons, tmp_path):
    # rec2's database does not exist: down from the start
    env.raw["sources"][1]["database"] = env.cluster.dsn("synchrod_no_such_database")
    # one call per cycle and a long sleep: after the first cycle two calls wait
    env.raw["synchro"].update(sleep_period=300, calls_per_period=1)
    enable_monitor(env, tmp_path)
    env.add_calls(0, [call("m1", 30), call("m2", 20, files=2), call("m3", 10)])
    t0 = time.time()
    mon = start_monitor(daemons, env)
    mon.daemon.wait_event("cycle", source="rec1")

    m = wait_until(lambda: (lambda s: s if s.get("synchrod_backlog_calls", source="rec1") == 2
                            else None)(scrape(mon)), 15, "rec1's backlog 2")
    promtool_check(m.text)
    assert abs(m.value("synchrod_sync_lag_seconds", source="rec1") - _age_seconds(20)) < 60
    assert m.value("synchrod_calls_total", source="rec1", result="synchronized") == 1
    assert m.value("synchrod_source_up", source="rec1") == 1
    assert m.value("synchrod_source_up", source="rec2") == 0

    # the rest, woken by `synchrod run-now` twice
    for n in (2, 3):
        cycles = len(mon.daemon.find("cycle", source="rec1"))
        r = synchrod_cli(env, "run-now", "--source", "rec1")
        assert r.returncode == 0, (r.stdout, r.stderr)
        wait_until(lambda: env.marks(0)[f"m{n}"] == "S" and
                   len(mon.daemon.find("cycle", source="rec1")) > cycles, 10,
                   f"m{n} synchronized by a cycle")
    m = wait_until(lambda: (lambda s: s if s.get("synchrod_backlog_calls", source="rec1") == 0
                            and s.get("synchrod_calls_total", source="rec1",
                                      result="synchronized") == 3 else None)(scrape(mon)),
                   15, "rec1's backlog 0 and 3 calls in the metrics")
    promtool_check(m.text)

    files = sorted(p for p in (env.mounts[0] / "calls").rglob("*") if p.is_file())
    assert len(files) == 4
    size = sum(p.stat().st_size for p in files)
    assert sum(p.stat().st_size for p in env.target_files()) == size
    assert m.value("synchrod_calls_total", source="rec1", result="synchronized") == 3
    for result in ("not_used", "erroneous", "failed", "skipped"):
        assert m.value("synchrod_calls_total", source="rec1", result=result) == 0
    assert m.value("synchrod_files_copied_total", source="rec1") == 4
    assert m.value("synchrod_bytes_copied_total", source="rec1") == size
    assert m.value("synchrod_cycle_duration_seconds_count", source="rec1") >= 3
    assert m.value("synchrod_cycle_duration_seconds_sum", source="rec1") > 0
    assert m.value("synchrod_cycle_duration_seconds_bucket", source="rec1", le="+Inf") == \
        m.value("synchrod_cycle_duration_seconds_count", source="rec1")
    assert m.value("synchrod_backlog_calls", source="rec1") == 0
    assert m.value("synchrod_sync_lag_seconds", source="rec1") == 0
    assert m.value("synchrod_source_up", source="rec1") == 1
    assert m.value("synchrod_source_up", source="rec2") == 0
    assert t0 <= m.value("synchrod_last_success_timestamp_seconds", source="rec1") <= time.time()
    assert not m.get("synchrod_last_success_timestamp_seconds", source="rec2")
    assert 0 <= m.value("synchrod_target_path_usage_ratio", path=str(env.target_path)) <= 1
    assert m.value("synchrod_build_info", version=synchrod.__version__) == 1
    for name, kind in (("synchrod_calls", "counter"), ("synchrod_files_copied", "counter"),
                       ("synchrod_bytes_copied", "counter"),
                       ("synchrod_cycle_duration_seconds", "histogram"),
                       ("synchrod_backlog_calls", "gauge"), ("synchrod_sync_lag_seconds", "gauge"),
                       ("synchrod_source_up", "gauge"),
                       ("synchrod_last_success_timestamp_seconds", "gauge"),
                       ("synchrod_target_path_usage_ratio", "gauge"),
                       ("synchrod_config_reloads", "counter")):
        assert m.families[name].type == kind, (name, m.families[name].type)
    assert mon.daemon.stop() == 0


def _replace(env, raw: dict) -> None:
    tmp = env.config_path.with_name(".synchrod.yaml.swp")
    tmp.write_text(yaml.safe_dump(raw, sort_keys=False))
    os.rename(tmp, env.config_path)


def test_config_reloads_are_counted_by_result(env, daemons, tmp_path):
    env.raw["synchro"]["sleep_period"] = 300
    enable_monitor(env, tmp_path)
    mon = start_monitor(daemons, env)
    d = mon.daemon
    d.wait_event("cycle", source="rec1")
    m0 = scrape(mon)
    ok0 = m0.get("synchrod_config_reloads_total", result="success") or 0
    bad0 = m0.get("synchrod_config_reloads_total", result="failure") or 0

    def counted(ok: int, bad: int):
        def probe():
            m = scrape(mon)
            got = (m.get("synchrod_config_reloads_total", result="success") or 0,
                   m.get("synchrod_config_reloads_total", result="failure") or 0)
            return m if got == (ok0 + ok, bad0 + bad) else None
        return wait_until(probe, 10, f"reloads: {ok} succeeded, {bad} failed")

    # an edit of the file
    raw = copy.deepcopy(env.raw)
    raw["synchro"]["calls_per_period"] = 9
    _replace(env, raw)
    d.wait_event("config_reloaded", reason="file changed")
    counted(len(d.events("config_reloaded")), 0)
    # SIGHUP
    n = len(d.events("config_reloaded"))
    d.signal(signal.SIGHUP)
    wait_until(lambda: len(d.events("config_reloaded")) > n, 10, "the SIGHUP reload")
    counted(len(d.events("config_reloaded")), 0)
    # an invalid edit
    bad = copy.deepcopy(raw)
    bad["sources"][0]["mount_path"] = "relative"
    _replace(env, bad)
    d.wait_event("config_reload_failed")
    m = counted(len(d.events("config_reloaded")), len(d.events("config_reload_failed")))
    assert len(d.events("config_reloaded")) >= 2 and len(d.events("config_reload_failed")) >= 1
    promtool_check(m.text)
    assert mon.daemon.stop() == 0
