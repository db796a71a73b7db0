"""The monitor's authentication against a real daemon (SPEC §8,
openapi.yaml): the token matrix on actions, login (its token, its failures,
its lock-out), logout, the JWT secret file, the refusal to listen beyond the
loopback without users, and reads that need no token and leak nothing."""
from __future__ import annotations

import base64
import datetime as dt
import stat

import jwt

import _daemon
from _daemon import synchrod, wait_until
from _monitor import (PASSWORD, USER, enable_monitor, login_reply, now, password_hash,
                      secret_candidates, sign, signing_key, start_monitor, unsigned_token,
                      validate)
from conftest import call

daemons = _daemon.daemons   # the fixture (bound, not imported: no unused-import warning)

ACTION = "/api/v1/sources/rec1/pause"


def _start(env, daemons, tmp_path, label: str = "daemon", **monitor):
    env.raw["synchro"]["sleep_period"] = 300
    enable_monitor(env, tmp_path, **monitor)
    return start_monitor(daemons, env, label)


def _unauthorized(reply) -> None:
    assert reply.status == 401, str(reply)
    assert reply.content_type == "application/json", str(reply)
    validate(reply.json(), "Error")
    challenge = reply.header("WWW-Authenticate")
    assert challenge and challenge.lower().startswith("bearer"), (str(reply), challenge)


def test_actions_refuse_every_token_but_a_valid_one(env, daemons, tmp_path):
    mon = _start(env, daemons, tmp_path)
    good = mon.login()
    key = signing_key(mon.secret_file, good)
    t = now()
    claims = {"sub": USER, "iat": t, "exp": t + 600}
    tampered = good.split(".")
    tampered[1] = base64.urlsafe_b64encode(
        f'{{"sub":"{USER}","iat":{t},"exp":{t + 86400 * 365}}}'.encode()).rstrip(b"=").decode()
    bad = {
        "no header": None,
        "another scheme": f"Basic {base64.b64encode(f'{USER}:{PASSWORD}'.encode()).decode()}",
        "bearer without a token": "Bearer",
        "garbage": "Bearer garbage",
        "three garbage parts": "Bearer aaaa.bbbb.cccc",
        "signed with another secret": "Bearer " + sign(claims, b"another secret, at least 32 bytes long"),
        "expired": "Bearer " + sign(dict(claims, iat=t - 1200, exp=t - 600), key),
        "alg none": "Bearer " + unsigned_token(claims),
        "alg none, capitalised": "Bearer " + unsigned_token(claims, {"alg": "None", "typ": "JWT"}),
        "real signature, edited payload": "Bearer " + ".".join(tampered),
        "a user not in the configuration": "Bearer " + sign(dict(claims, sub="mallory"), key),
        "without exp": "Bearer " + sign({"sub": USER, "iat": t}, key),
        "without sub": "Bearer " + sign({"iat": t, "exp": t + 600}, key),
    }
    for name, header in bad.items():
        headers = {"Authorization": header} if header is not None else {}
        for method, path in (("POST", ACTION), ("POST", "/api/v1/reload"),
                             ("POST", "/api/v1/shutdown"), ("POST", "/api/v1/logout")):
            reply = mon.request(method, path, headers=headers)
            try:
                _unauthorized(reply)
            except AssertionError as exc:
                raise AssertionError(f"token {name!r}: {exc}") from None
    assert mon.daemon.alive()
    rec1 = mon.source("rec1")
    assert rec1["paused"] is False and rec1["state"] != "paused", rec1

    # the daemon's own token
    reply = mon.post(ACTION, token=good).expect(200)
    validate(reply.json(), "ActionResult")
    assert mon.source("rec1")["paused"] is True
    mon.action("rec1", "resume", good).expect(200)
    # and one the test signed with the same secret
    mine = sign(claims, key)
    mon.action("rec1", "run", mine).expect(200)
    assert mon.daemon.stop() == 0


def test_login_token_failures_and_lock_out(env, daemons, tmp_path):
    mon = _start(env, daemons, tmp_path, token_ttl=900)
    t0 = now()
    reply = login_reply(mon.url).expect(200)
    assert reply.content_type == "application/json"
    body = reply.json()
    assert set(body) == {"token", "token_type", "expires_at", "user"}, body
    assert body["token_type"] == "Bearer" and body["user"] == USER
    token = body["token"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    key = signing_key(mon.secret_file, token)
    claims = jwt.decode(token, key, algorithms=["HS256"])
    assert claims["sub"] == USER
    assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int), claims
    assert claims["exp"] - claims["iat"] == 900, claims
    assert t0 - 2 <= claims["iat"] <= now() + 2, claims
    assert abs(dt.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp()
               - claims["exp"]) <= 1, body

    failed = 0
    for user, password in ((USER, "wrong"), ("nobody", PASSWORD)):
        reply = login_reply(mon.url, user, password)
        assert reply.status == 401, str(reply)
        validate(reply.json(), "Error")
        assert "token" not in reply.json()
        failed += 1
    for data in (b"{not json", b"", b"[]", b'"admin"', b'{"username": "admin"}',
                 b'{"password": "x"}', b'{"username": 1, "password": 2}'):
        reply = mon.post("/api/v1/login", data=data)
        assert reply.status == 400, (data, str(reply))
        validate(reply.json(), "Error")

    # repeated failures lock the user (or the address) out
    statuses = []
    while failed < 10:
        reply = login_reply(mon.url, USER, f"guess-{failed}")
        failed += 1
        statuses.append(reply.status)
        if reply.status == 429:
            break
        assert reply.status == 401, str(reply)
    assert statuses[-1] == 429, f"no 429 within 10 failed logins: {statuses}"
    validate(reply.json(), "Error")
    retry_after = reply.header("Retry-After")
    assert retry_after is not None and int(retry_after) >= 1, str(reply)
    # even the right password, while locked out
    locked = login_reply(mon.url)
    assert locked.status == 429, str(locked)
    assert int(locked.header("Retry-After")) >= 1
    assert "token" not in locked.json()
    # a token obtained before still works
    mon.action("rec1", "run", token).expect(200)
    assert mon.daemon.stop() == 0


def test_logout_revokes_the_token_and_a_removed_user_loses_hers(env, daemons, tmp_path):
    mon = _start(env, daemons, tmp_path)
    token, other = mon.login(), mon.login()
    mon.action("rec1", "run", token).expect(200)
    out = mon.post("/api/v1/logout", token=token)
    assert out.status == 204 and out.body == b"", str(out)
    _unauthorized(mon.action("rec1", "run", token))
    _unauthorized(mon.post("/api/v1/logout", token=token))
    mon.action("rec1", "run", mon.login()).expect(200)
    if other != token:                       # issued in the same second, they may be equal
        mon.action("rec1", "run", other).expect(200)

    # the user removed from the file (a live reload): her tokens are worth nothing
    env.raw["monitor"]["users"] = [{"name": "ops", "password_hash": password_hash("ops-pass")}]
    env.write_config()
    mon.daemon.wait_event("config_reloaded")
    _unauthorized(mon.action("rec1", "run", other))
    assert login_reply(mon.url).status == 401
    mon.action("rec1", "run", mon.login("ops", "ops-pass")).expect(200)
    assert mon.daemon.stop() == 0


def test_secret_file_is_created_private_and_reused_across_restarts(env, daemons, tmp_path):
    section = enable_monitor(env, tmp_path)
    secret = tmp_path / "monitor" / "jwt.secret"
    assert section["jwt_secret_file"] == str(secret) and not secret.exists()
    mon = start_monitor(daemons, env)
    assert secret.is_file()
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600, oct(secret.stat().st_mode)
    content = secret.read_bytes()
    assert len(max(secret_candidates(content), key=len)) >= 32, "a short secret"
    token, revoked = mon.login(), mon.login()
    mon.action("rec1", "run", token).expect(200)
    mon.post("/api/v1/logout", token=revoked).expect(204)
    assert mon.daemon.stop() == 0

    again = start_monitor(daemons, env, "restarted")
    assert secret.read_bytes() == content
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    reply = again.action("rec1", "run", token)     # issued by the previous process
    assert reply.status == 200, str(reply)
    # a logout holds "until the token would have expired" (openapi.yaml), not
    # until the next restart
    _unauthorized(again.action("rec1", "run", revoked))
    assert again.daemon.stop() == 0


def test_listening_beyond_the_loopback_needs_users(env, daemons, tmp_path):
    enable_monitor(env, tmp_path, host="0.0.0.0", users=[])
    refused = daemons("refused")
    assert refused.wait_exit(60) == 78
    assert "monitor.listen" in refused.log_text(), refused.tail()
    for listen in ("0.0.0.0", "[::]", "192.0.2.10"):
        enable_monitor(env, tmp_path, host=listen, users=[])
        check = synchrod(env, "check")
        assert check.returncode == 78, (listen, check.returncode, check.stdout, check.stderr)
        assert "monitor.listen" in check.stdout + check.stderr, (listen, check.stderr)

    # on the loopback without users: it runs, nobody can log in
    enable_monitor(env, tmp_path, users=[])
    alone = start_monitor(daemons, env, "loopback")
    assert alone.status()["daemon"]["users_configured"] is False
    reply = login_reply(alone.url)
    assert reply.status == 401, str(reply)
    _unauthorized(alone.post(ACTION))
    assert alone.daemon.stop() == 0

    # with a user, 0.0.0.0 is accepted
    enable_monitor(env, tmp_path, host="0.0.0.0")
    check = synchrod(env, "check")
    assert check.returncode != 78 and "monitor.listen" not in check.stdout + check.stderr, \
        (check.returncode, check.stdout, check.stderr)
    wide = start_monitor(daemons, env, "wide")
    assert wide.status()["daemon"]["users_configured"] is True
    wide.action("rec1", "run", wide.login()).expect(200)
    assert wide.daemon.stop() == 0


def test_reads_need_no_token_and_nothing_shows_a_secret(env, daemons, tmp_path):
    env.add_calls(0, [call("a1"), call("a2", 50)])
    mon = _start(env, daemons, tmp_path)
    wait_until(lambda: env.target("SELECT count(*) FROM synchrod.runs")[0][0] >= 1, 30,
               "a run in the history")
    run_id = mon.get_json("/api/v1/runs")["runs"][0]["id"]
    replies = []
    for path in ("/api/v1/status", "/api/v1/sources", "/api/v1/sources/rec1", "/api/v1/jobs",
                 "/api/v1/runs", f"/api/v1/runs/{run_id}", "/api/v1/openapi.json", "/metrics"):
        reply = mon.get(path)
        assert reply.status == 200, str(reply)
        replies.append(reply)
    with mon.events() as es:
        assert es.status == 200
        es.wait("snapshot", timeout=5)
        streamed = "\n".join(e.data for e in es.snapshot())

    # and the answers around authentication
    replies += [login_reply(mon.url), login_reply(mon.url, USER, "nope"),
                login_reply(mon.url, "nobody", "nope"), mon.post(ACTION),
                mon.post(ACTION, token="garbage"), mon.get("/api/v1/sources/nope")]
    page = mon.get("/monitor/")
    if page.status == 200:
        replies.append(page)

    hashed = password_hash()
    salt, digest = hashed.split("$")[-2:]
    secrets = {"the password": PASSWORD, "the password hash": hashed, "its salt": salt,
               "its digest": digest}
    for n, key in enumerate(secret_candidates(mon.secret_file.read_bytes())):
        for form in (key.decode("latin-1"), key.hex(), base64.b64encode(key).decode(),
                     base64.urlsafe_b64encode(key).rstrip(b"=").decode()):
            if len(form) >= 16:
                secrets[f"the JWT secret (form {n})"] = form
    texts = {str(r.path) + f" ({r.status})": r.text + "\n" + str(r.headers) for r in replies}
    texts["events"] = streamed
    texts["the log"] = mon.daemon.log_text()
    for where, text in texts.items():
        for what, value in secrets.items():
            assert value not in text, f"{what} shows in {where}"
    assert mon.daemon.stop() == 0


def test_a_port_in_use_stops_the_start_with_69(env, daemons, tmp_path):
    """The monitor the configuration asks for is not silently missing."""
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        enable_monitor(env, tmp_path, port=taken.getsockname()[1])
        d = daemons("port-taken")
        assert d.wait_exit(60) == 69, d.tail()
        failed = d.find("monitor_failed")
        assert failed and failed[0]["listen"] == f"127.0.0.1:{taken.getsockname()[1]}", d.tail()
