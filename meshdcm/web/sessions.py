"""Who is logged in, kept on the server, and how fast a client may guess passwords.

:class:`Sessions`: the session cookie (signed by Starlette) carries only a random session id and the CSRF token; the
person behind the id lives here. Logging out ends the id here, so a copy of the cookie taken before is worthless
after, which a signed cookie alone cannot promise. Each session ends :data:`SESSION_MAX_AGE` after login; at most
:data:`MAX_SESSIONS` are kept (the oldest goes first). Kept in memory: a restart of the web node logs everyone out
(drafts are on disk).

:class:`LoginThrottle`: failed logins counted per client address and per user name. After :data:`FREE_FAILURES`
failures, each further one locks that address or name for 1 s, then 2, 4, ... up to :data:`MAX_LOCK`; a login
asked for while locked is answered 429 with ``Retry-After`` and its password is not even checked. A success clears
both counts; a count is forgotten :data:`FORGET_AFTER` after its last failure; at most :data:`MAX_CLIENTS` addresses
and names are tracked (the least recently failed are forgotten first).
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

SESSION_MAX_AGE = 12 * 3600.0
MAX_SESSIONS = 10_000
FREE_FAILURES = 5
MAX_LOCK = 300.0
FORGET_AFTER = 900.0
MAX_CLIENTS = 10_000


@dataclass(frozen=True)
class Person:
    """Who is logged in: the user name, and for a users-file account the full name (DICOM PN, ``Doe^Jane``) and
    organisation a signed report names. The login token has no person behind it (``token``)."""

    user: str
    full_name: str = ""
    organisation: str = ""
    token: bool = False


class Sessions:
    """Session id -> (person, expiry); thread-safe (routes run on the event loop and in the thread pool)."""

    def __init__(self, max_age: float = SESSION_MAX_AGE, max_sessions: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic):
        self.max_age, self.max_sessions, self.clock = max_age, max_sessions, clock
        self._live: OrderedDict[str, tuple[Person, float]] = OrderedDict()  # oldest login first
        self._lock = threading.Lock()

    def start(self, person: Person) -> str:
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._expire(now)
            self._live[sid] = (person, now + self.max_age)
            while len(self._live) > self.max_sessions:
                self._live.popitem(last=False)
        return sid

    def get(self, sid: object) -> Person | None:
        """The person of a live session; None for an unknown, ended or expired id."""
        if not isinstance(sid, str):
            return None
        with self._lock:
            found = self._live.get(sid)
            if found is None:
                return None
            if found[1] <= self.clock():
                del self._live[sid]
                return None
            return found[0]

    def end(self, sid: object) -> None:
        if isinstance(sid, str):
            with self._lock:
                self._live.pop(sid, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._live)

    def _expire(self, now: float) -> None:
        while self._live:
            sid, (_, expires) = next(iter(self._live.items()))
            if expires > now:
                return
            del self._live[sid]


class LoginThrottle:
    """Failed logins per client address and per user name (see the module docstring)."""

    def __init__(self, free: int = FREE_FAILURES, max_lock: float = MAX_LOCK, forget_after: float = FORGET_AFTER,
                 max_clients: int = MAX_CLIENTS, clock: Callable[[], float] = time.monotonic):
        self.free, self.max_lock, self.forget_after, self.max_clients = free, max_lock, forget_after, max_clients
        self.clock = clock
        # key -> (failures, locked until, last failure), the least recently failed first
        self._failures: OrderedDict[str, tuple[int, float, float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def keys(client: str, user: str) -> tuple[str, str]:
        return f"addr:{client}", f"user:{user.casefold()}"

    def wait(self, client: str, user: str) -> float:
        """Seconds until ``client`` may try ``user`` again (0: now)."""
        now = self.clock()
        with self._lock:
            return max([0.0] + [self._failures[k][1] - now for k in self.keys(client, user) if k in self._failures])

    def failed(self, client: str, user: str) -> float:
        """Count a failure; returns the lock it starts, in seconds (0 while failures are still free)."""
        now = self.clock()
        lock = 0.0
        with self._lock:
            self._forget_old(now)
            for key in self.keys(client, user):
                count, _, _ = self._failures.pop(key, (0, 0.0, 0.0))
                count += 1
                seconds = 0.0 if count <= self.free else min(self.max_lock, 2.0 ** (count - self.free - 1))
                self._failures[key] = (count, now + seconds, now)
                lock = max(lock, seconds)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
        return lock

    def succeeded(self, client: str, user: str) -> None:
        with self._lock:
            for key in self.keys(client, user):
                self._failures.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._failures)

    def _forget_old(self, now: float) -> None:
        while self._failures:
            key, (_, locked_until, last) = next(iter(self._failures.items()))
            if max(locked_until, last + self.forget_after) > now:
                return
            del self._failures[key]


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
