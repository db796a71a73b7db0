"""Who may act: the JWT secret file, tokens (HS256 with sub, iat, exp, jti),
password checks and the rate limit on failed logins."""
from __future__ import annotations

import asyncio
import math
import os
import secrets
import time
import uuid
from collections import deque

import jwt
import structlog

from ..errors import SecretError
from .passwords import hash_password, verify_password

log = structlog.get_logger("synchrod.monitor")

ALGORITHM = "HS256"
MAX_FAILURES = 5          # failed logins per address or user name ...
FAILURE_WINDOW = 300.0    # ... within this many seconds lock logins out
MAX_KEYS = 100_000        # addresses and names remembered at most
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))  # unknown users cost the same time


class Unauthorized(Exception):
    """Why a request carries no valid token."""


def load_or_create_secret(path: str) -> bytes:
    """The signing key; created with mode 0600 (its directory 0700) if missing."""
    try:
        with open(path, "rb") as fh:
            secret = fh.read().strip()
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        secret = secrets.token_hex(32).encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another daemon created it meanwhile
            return load_or_create_secret(path)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secret + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        log.info("jwt_secret_created", path=path)
        return secret
    except OSError as exc:
        raise SecretError(f"cannot read {path}: {exc.strerror}") from None
    if len(secret) < 32:
        raise SecretError(f"{path} holds fewer than 32 bytes: too weak a key")
    if mode & 0o077:
        log.warning("jwt_secret_readable_by_others", path=path, mode=oct(mode))
    return secret


class Tokens:
    def __init__(self, secret: bytes):
        self._secret = secret
        self._revoked: dict[str, float] = {}   # jti -> exp

    def issue(self, user: str, ttl: int) -> tuple[str, int]:
        """A new token for ``user`` (sub, iat, exp, jti), valid ``ttl`` seconds, and its expiry
        (epoch seconds)."""
        now = int(time.time())
        exp = now + ttl
        token = jwt.encode({"sub": user, "iat": now, "exp": exp, "jti": uuid.uuid4().hex},
                           self._secret, algorithm=ALGORITHM)
        return token, exp

    def verify(self, header: str | None, known_user) -> dict:
        """The claims of the ``Authorization: Bearer`` token, or Unauthorized."""
        if not header:
            raise Unauthorized("missing token")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("malformed Authorization header (want: Bearer <token>)")
        try:
            # the algorithm is fixed here, never taken from the token: "none" is refused
            claims = jwt.decode(token.strip(), self._secret, algorithms=[ALGORITHM],
                                options={"require": ["sub", "iat", "exp"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        if not known_user(claims["sub"]):
            raise Unauthorized("token of an unknown user")
        if claims.get("jti") in self._revoked:
            raise Unauthorized("token revoked (logged out)")
        return claims

    def revoke(self, claims: dict) -> None:
        """Refuses the token (its jti) in this daemon until it expires; forgets revocations that
        have expired."""
        now = time.time()
        self._revoked = {j: e for j, e in self._revoked.items() if e > now}
        if claims.get("jti"):
            self._revoked[claims["jti"]] = float(claims["exp"])

    def adopt_revoked(self, revoked: dict[str, float]) -> None:
        """Logouts recorded in the replay database (by any daemon, before a restart)."""
        self._revoked.update(revoked)


class LoginLimiter:
    """At most MAX_FAILURES failed logins per key in FAILURE_WINDOW seconds."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = FAILURE_WINDOW,
                 clock=time.monotonic):
        self.max_failures, self.window, self.clock = max_failures, window, clock
        self._failures: dict[str, deque] = {}

    def _recent(self, key: str) -> deque:
        q = self._failures.get(key)
        if q is None:
            return deque()
        cutoff = self.clock() - self.window
        while q and q[0] <= cutoff:
            q.popleft()
        if not q:
            del self._failures[key]
        return q

    def retry_after(self, *keys: str) -> int | None:
        """Seconds until a login may be tried, or None when it may now."""
        waits = []
        for key in keys:
            q = self._recent(key)
            if len(q) >= self.max_failures:
                waits.append(q[-self.max_failures] + self.window - self.clock())
        return max(1, math.ceil(max(waits))) if waits else None

    def failed(self, *keys: str) -> None:
        """Counts a failed login against every key; memory stays bounded near MAX_KEYS keys."""
        if len(self._failures) > MAX_KEYS:
            self._shrink()
        for key in keys:
            self._failures.setdefault(key, deque()).append(self.clock())

    def _shrink(self) -> None:
        """Bounded memory under a spray of addresses: forget what expired,
        then the addresses that failed longest ago; never a user's lock-out."""
        for key in list(self._failures):
            self._recent(key)
        addrs = sorted((q[-1], k) for k, q in self._failures.items() if k.startswith("addr:"))
        for _, key in addrs[:max(0, len(self._failures) - MAX_KEYS * 9 // 10)]:
            del self._failures[key]

    def succeeded(self, *keys: str) -> None:
        """Forgets the keys' failed logins."""
        for key in keys:
            self._failures.pop(key, None)


async def check_password(password: str, password_hash: str | None) -> bool:
    """scrypt off the event loop; an unknown user is checked against a dummy hash."""
    loop = asyncio.get_running_loop()
    ok = await loop.run_in_executor(None, verify_password, password,
                                    password_hash or _DUMMY_HASH)
    return ok and password_hash is not None
