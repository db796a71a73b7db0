"""Schemathesis against a live daemon: every operation of the description
the daemon serves at /api/v1/openapi.json (but the endless event stream and
shutdown) is called with generated valid and invalid requests, without a
token; no answer may be a server error, and every answer must be documented
(status code, content type, headers, body schema). The served description
must be synchrod/monitor/openapi.yaml."""
from __future__ import annotations

import pytest
import schemathesis
import schemathesis.checks
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

import _daemon
from _daemon import wait_until
from _monitor import enable_monitor, openapi, start_monitor
from conftest import call

daemons = _daemon.daemons   # the fixture (bound, not imported: no unused-import warning)

CHECKS = [schemathesis.checks.not_a_server_error,
          schemathesis.checks.status_code_conformance,
          schemathesis.checks.content_type_conformance,
          schemathesis.checks.response_headers_conformance,
          schemathesis.checks.response_schema_conformance,
          schemathesis.checks.negative_data_rejection]


@pytest.fixture
def live(env, daemons, tmp_path):
    """A daemon with a short history (so that some ids exist) and a monitor."""
    env.raw["synchro"]["sleep_period"] = 300
    enable_monitor(env, tmp_path)
    env.add_calls(0, [call("sc1"), call("sc2", 50)])
    env.add_calls(1, [call("sc3")])
    mon = start_monitor(daemons, env)
    wait_until(lambda: env.target("SELECT count(*) FROM synchrod.runs")[0][0] >= 2, 30,
               "the first runs")
    before = {s["sysname"]: (s["paused"], s["disabled_by"]) for s in mon.status()["sources"]}
    yield mon
    # nothing done without a token changed anything, and the daemon lives
    assert mon.daemon.alive(), mon.daemon.tail()
    after = {s["sysname"]: (s["paused"], s["disabled_by"]) for s in mon.status()["sources"]}
    assert after == before
    assert mon.daemon.stop() == 0


def _operations(live):
    schema = (schemathesis.openapi.from_url(live.url + "/api/v1/openapi.json", timeout=10)
              .exclude(path="/api/v1/events")
              .exclude(path="/api/v1/shutdown"))
    # (schemathesis leaves out the operation that serves the description
    # itself: test_served_description_is_the_contract)
    ops = [result.ok() for result in schema.get_all_operations()]
    assert len(ops) == 21, [op.label for op in ops]
    return ops


SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.generate])


# (schemathesis' own pytest integration, ``schemathesis.pytest.from_fixture``,
# fails with pytest 9 (it sets ``Node._nodeid``): the same run, driven here)
def test_api_conforms_to_its_description(live):
    failures, ran = [], 0
    for op in _operations(live):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            statuses = set()

            @SETTINGS
            @given(case=op.as_strategy(generation_mode=mode))
            def check(case):
                response = case.call_and_validate(base_url=live.url, checks=CHECKS, timeout=10)
                statuses.add(response.status_code)
            try:
                check()
            except Unsatisfiable:
                continue     # nothing invalid to make of it (no parameters, no body)
            except BaseException as exc:   # noqa: BLE001 - every operation is reported
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failures.append(f"{op.label} ({mode.value}): {exc}")
            ran += 1
            print(f"{op.label} {mode.value}: {sorted(statuses)}")
            if op.definition.raw.get("security") and statuses - {401}:
                failures.append(f"{op.label} ({mode.value}): answered {sorted(statuses)} "
                                "without a token (401 only expected)")
    assert ran >= 10
    assert not failures, "\n\n".join(failures)


def test_served_description_is_the_contract(live):
    served = live.get("/api/v1/openapi.json").expect(200)
    assert served.content_type == "application/json"
    assert served.json() == openapi()
