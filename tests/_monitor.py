"""Helpers for the tests that talk to a real daemon's monitor over real HTTP
(the API, its auth, the OpenAPI conformance run, the metrics, the page).

- :func:`free_port`, :func:`monitor_section`, :func:`enable_monitor`: a
  configuration whose ``monitor`` listens on ``127.0.0.1:<free port>`` with one
  user (:data:`USER` / :data:`PASSWORD`) and a JWT secret file under the test's
  directory; logging at info level in JSON (the ``monitor_listening`` event).
- :func:`start_monitor`: starts ``synchrod run`` (through the ``daemons``
  fixture of ``_daemon.py``) and waits until the monitor listens; returns a
  :class:`Monitor` (the daemon, its base URL, request helpers, :meth:`Monitor.login`).
- :func:`request` / :class:`Reply`: one HTTP exchange with ``http.client``
  (no redirects followed, no exception on 4xx/5xx).
- :class:`EventStream`: a Server-Sent Events reader on a thread.
- :func:`with_canary`: plants a password in every DSN of an ``Env``.
"""
from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit

import jwt

from _daemon import wait_until
from synchrod.monitor.passwords import hash_password

USER = "admin"
PASSWORD = "s3cret-pass"
CANARY = "Sekr1tCanary"
_UNSET = object()
_hashes: dict[str, str] = {}


def password_hash(password: str = PASSWORD) -> str:
    """An scrypt hash of ``password`` (computed once per test process)."""
    if password not in _hashes:
        _hashes[password] = hash_password(password)
    return _hashes[password]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def monitor_section(tmp_path: Path, port: int | None = None, *, host: str = "127.0.0.1",
                    users: list[dict] | None = None, **overrides) -> dict:
    """The ``monitor`` section: ``host:port`` (a free port by default), the
    secret file ``tmp_path/monitor/jwt.secret`` (its directory created, the
    file not), ``users`` (default: admin with :data:`PASSWORD`)."""
    port = port or free_port()
    secret_dir = tmp_path / "monitor"
    secret_dir.mkdir(exist_ok=True)
    section = {"enabled": True, "listen": f"{host}:{port}",
               "jwt_secret_file": str(secret_dir / "jwt.secret"),
               "users": [{"name": USER, "password_hash": password_hash()}] if users is None
               else users}
    section.update(overrides)
    return section


def enable_monitor(env, tmp_path: Path | None = None, **monitor) -> dict:
    """Writes env's configuration with the monitor on (see :func:`monitor_section`,
    whose keyword arguments ``monitor`` takes) and info-level JSON logs; returns
    the monitor section."""
    section = monitor_section(tmp_path or env.tmp, **monitor)
    env.write_config(monitor=section, logging={"level": "info", "format": "json"})
    return section


def with_canary(env) -> None:
    """A password in every DSN (trust authentication ignores it), so that any
    output can be searched for :data:`CANARY`."""
    def plant(dsn: str) -> str:
        assert dsn.startswith("postgresql://postgres@"), dsn
        return dsn.replace("postgresql://postgres@", f"postgresql://postgres:{CANARY}@", 1)
    for src in env.raw["sources"]:
        src["database"] = plant(src["database"])
    env.raw["target"]["database"] = plant(env.raw["target"]["database"])
    env.write_config()


def base_url(section: dict) -> str:
    """Where to reach a monitor configured by ``section`` (a wildcard
    address is reached over the loopback)."""
    host, _, port = section["listen"].rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# --- HTTP ------------------------------------------------------------------------------

@dataclass
class Reply:
    method: str
    path: str
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError(f"{self.method} {self.path} -> {self.status}: not JSON: "
                                 f"{self.text[:500]!r}") from None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def expect(self, status: int) -> "Reply":
        assert self.status == status, (f"{self.method} {self.path}: expected {status}, "
                                       f"got {self.status}: {self.text[:1000]}")
        return self

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status} {self.text[:300]}"


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    return conn, parts.path.rstrip("/")


def request(url: str, method: str, path: str, *, json_body: Any = _UNSET,
            data: bytes | str | None = None, token: str | None = None,
            headers: dict[str, str] | None = None, params: dict | None = None,
            timeout: float = 15) -> Reply:
    """``method path`` on the server at ``url``; ``json_body`` is sent as JSON,
    ``data`` as it is; ``token`` as ``Authorization: Bearer``."""
    conn, prefix = _connection(url, timeout)
    hdrs = {"Accept": "application/json"}
    body = None
    if json_body is not _UNSET:
        body = json.dumps(json_body).encode()
        hdrs["Content-Type"] = "application/json"
    elif data is not None:
        body = data.encode() if isinstance(data, str) else data
        hdrs["Content-Type"] = "application/json"
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    hdrs.update(headers or {})
    full = prefix + path + (("?" + urlencode(params)) if params else "")
    try:
        conn.request(method, full, body=body, headers=hdrs)
        resp = conn.getresponse()
        return Reply(method, full, resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def login_reply(url: str, user: str = USER, password: str = PASSWORD) -> Reply:
    return request(url, "POST", "/api/v1/login", json_body={"username": user, "password": password})


def login(url: str, user: str = USER, password: str = PASSWORD) -> str:
    """A token from ``POST /api/v1/login`` (fails unless it answers 200)."""
    reply = login_reply(url, user, password).expect(200)
    return reply.json()["token"]


# --- SSE -------------------------------------------------------------------------------

@dataclass
class SseEvent:
    name: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class EventStream:
    """``GET path`` read as Server-Sent Events on a thread; :attr:`events`
    grows as they arrive. A context manager (closes the connection)."""

    def __init__(self, url: str, path: str = "/api/v1/events", timeout: float = 60):
        self.conn, prefix = _connection(url, timeout)
        self.conn.request("GET", prefix + path, headers={"Accept": "text/event-stream"})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = self.response.headers
        self.events: list[SseEvent] = []
        self.comments: list[str] = []
        self.error: BaseException | None = None
        self.ended = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        if self.status == 200:
            self._thread.start()

    def _read(self) -> None:
        name, data, ident = None, [], None
        try:
            while True:
                raw = self.response.readline()
                if not raw:
                    break
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:                       # dispatch
                    if data or name:
                        with self._lock:
                            self.events.append(SseEvent(name or "message", "\n".join(data), ident))
                    name, data = None, []
                    continue
                if line.startswith(":"):
                    with self._lock:
                        self.comments.append(line[1:].strip())
                    continue
                key, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if key == "event":
                    name = value
                elif key == "data":
                    data.append(value)
                elif key == "id":
                    ident = value
        except BaseException as exc:   # noqa: BLE001 - reported by wait()
            self.error = exc
        finally:
            self.ended = True

    def snapshot(self) -> list[SseEvent]:
        with self._lock:
            return list(self.events)

    def wait(self, name: str, predicate: Callable[[Any], bool] | None = None,
             timeout: float = 15, start: int = 0) -> Any:
        """The JSON data of the first ``name`` event (from index ``start`` on)
        for which ``predicate`` holds."""
        def look():
            for ev in self.snapshot()[start:]:
                if ev.name == name:
                    obj = ev.json()
                    if predicate is None or predicate(obj):
                        return [obj]
            if self.ended:
                raise AssertionError(f"event stream ended ({self.error!r}) before a {name!r} "
                                     f"event; got {[e.name for e in self.snapshot()]}")
            return None
        try:
            return wait_until(look, timeout, f"SSE event {name!r}", 0.05)[0]
        except AssertionError as exc:
            raise AssertionError(f"{exc}; events so far: "
                                 f"{[(e.name, e.data[:200]) for e in self.snapshot()]}") from None

    def close(self) -> None:
        try:
            if self.conn.sock is not None:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
        if self._thread.is_alive():
            self._thread.join(5)

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- the daemon --------------------------------------------------------------------------

@dataclass
class Monitor:
    """A running daemon with its monitor."""
    daemon: Any                      # _daemon.Daemon
    url: str
    section: dict
    listening: dict = field(default_factory=dict)   # the monitor_listening log event

    def request(self, method: str, path: str, **kw) -> Reply:
        return request(self.url, method, path, **kw)

    def get(self, path: str, **kw) -> Reply:
        return request(self.url, "GET", path, **kw)

    def post(self, path: str, **kw) -> Reply:
        return request(self.url, "POST", path, **kw)

    def get_json(self, path: str, **kw) -> Any:
        return self.get(path, **kw).expect(200).json()

    def login(self, user: str = USER, password: str = PASSWORD) -> str:
        return login(self.url, user, password)

    def action(self, source: str, action: str, token: str, **kw) -> Reply:
        return self.post(f"/api/v1/sources/{source}/{action}", token=token, **kw)

    def status(self) -> dict:
        return self.get_json("/api/v1/status")

    def source(self, name: str) -> dict:
        return self.get_json(f"/api/v1/sources/{name}")

    def events(self, **kw) -> EventStream:
        return EventStream(self.url, **kw)

    @property
    def secret_file(self) -> Path:
        return Path(self.section["jwt_secret_file"])


def wait_listening(daemon, section: dict, timeout: float = 60) -> Monitor:
    """Waits for the ``monitor_listening`` event of a started daemon, then for
    the port to answer."""
    event = daemon.wait_event("monitor_listening", timeout)
    url = base_url(section)
    mon = Monitor(daemon, url, section, event)
    wait_until(lambda: _answers(url), 10, f"{url} answering")
    return mon


def _answers(url: str) -> bool:
    try:
        request(url, "GET", "/api/v1/openapi.json", timeout=2)
    except OSError:
        return False
    return True


def start_monitor(daemons, env, label: str = "daemon", timeout: float = 60, **kw) -> Monitor:
    """``synchrod run`` on env's configuration (which must enable the monitor:
    :func:`enable_monitor`) through the ``daemons`` fixture; returns once the
    monitor listens."""
    d = daemons(label, **kw)
    return wait_listening(d, env.raw["monitor"], timeout)


# --- JWT -------------------------------------------------------------------------------

def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned_token(payload: dict, header: dict | None = None) -> str:
    """``header.payload.`` with an empty signature (``alg: none`` by default)."""
    header = header or {"alg": "none", "typ": "JWT"}
    return (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
            b64url(json.dumps(payload, separators=(",", ":")).encode()) + ".")


def secret_candidates(raw: bytes) -> list[bytes]:
    """The ways a secret file's bytes may be used as the HMAC key."""
    out = [raw, raw.strip()]
    text = raw.strip().decode("ascii", errors="ignore")
    for decode in (bytes.fromhex, lambda s: base64.b64decode(s, validate=True),
                   lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))):
        try:
            out.append(decode(text))
        except ValueError:
            pass
    return [k for i, k in enumerate(out) if k and k not in out[:i]]


def signing_key(secret_file: Path, token: str) -> bytes:
    """The key (derived from the secret file) that verifies ``token``, a token
    the daemon issued: what lets a test sign tokens the daemon must trust or
    refuse for other reasons (expired, unknown user, no ``exp``)."""
    for key in secret_candidates(secret_file.read_bytes()):
        try:
            jwt.decode(token, key, algorithms=["HS256"], options={"verify_exp": False})
        except jwt.InvalidSignatureError:
            continue
        return key
    raise AssertionError(f"no reading of {secret_file} verifies the daemon's token")


def sign(payload: dict, key: bytes | str, alg: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=alg)


def now() -> int:
    return int(time.time())


# --- the contract ------------------------------------------------------------------------

OPENAPI = Path(__file__).resolve().parent.parent / "synchrod" / "monitor" / "openapi.yaml"
_validators: dict[str, Any] = {}


def openapi() -> dict:
    import yaml
    return yaml.safe_load(OPENAPI.read_text())


def _to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema objects to JSON Schema (nullable, $ref targets)."""
    if isinstance(node, list):
        return [_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_json_schema(v) for k, v in node.items() if k not in ("nullable", "description")}
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/definitions/")
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = list(out["enum"]) + [None]
        else:
            out = {"anyOf": [{"type": "null"}, out]}
    return out


def validate(instance: Any, component: str) -> None:
    """Fails unless ``instance`` is a valid ``#/components/schemas/<component>``
    of openapi.yaml."""
    import jsonschema_rs
    if component not in _validators:
        definitions = _to_json_schema(openapi()["components"]["schemas"])
        schema = {"$ref": f"#/definitions/{component}", "definitions": definitions}
        _validators[component] = jsonschema_rs.Draft4Validator(schema)
    errors = [str(e) for e in _validators[component].iter_errors(instance)]
    assert not errors, f"not a valid {component}: {errors[:5]}\n{json.dumps(instance)[:2000]}"
