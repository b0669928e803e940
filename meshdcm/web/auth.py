"""Who may use the web UI: a login token printed at start and/or a users file with scrypt-hashed passwords,
signed session cookies (HttpOnly, SameSite=Strict, Secure over TLS) and a CSRF token per session.

The users file has one ``name:scrypt$N$r$p$salt_hex$hash_hex`` line per user (``hash_password`` makes one:
``python -m meshdcm.web.auth NAME`` asks for the password and prints the line). Blank lines and ``#`` comments
are ignored. The token, when set, logs in as the user ``radiologist``.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
TOKEN_USER = "radiologist"  # noqa: S105 - a user name, not a secret
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, bytes.fromhex(digest))


@dataclass
class Login:
    """Checks credentials: the start token (any user name) and the users file (re-read on every login)."""

    token: str = ""
    users_file: Path | None = None
    _users: dict[str, str] = field(default_factory=dict)

    def users(self) -> dict[str, str]:
        if self.users_file is None or not self.users_file.exists():
            return {}
        out = {}
        for line in self.users_file.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and ":" in line:
                name, _, stored = line.partition(":")
                out[name.strip()] = stored.strip()
        return out

    def check(self, user: str, secret: str) -> str | None:
        """The user name logged in, or None."""
        if self.token and secret and hmac.compare_digest(secret.encode(), self.token.encode()):
            return TOKEN_USER
        stored = self.users().get(user)
        if stored and check_password(secret, stored):
            return user
        return None


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(request: Request, supplied: str | None) -> bool:
    expected = request.session.get("csrf")
    return bool(expected and supplied and hmac.compare_digest(expected.encode(), supplied.encode()))


def current_user(request: Request) -> str | None:
    return request.session.get("user")


def guard(request: Request) -> Response | None:
    """The answer to a request that may not go on (not logged in: 401 or a redirect; bad CSRF: 403), else None."""
    if not current_user(request):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "not logged in"}, status_code=401)
        return RedirectResponse("/login", status_code=303)
    if request.method not in SAFE_METHODS and not csrf_ok(request, request.headers.get(CSRF_HEADER)):
        return JSONResponse({"error": "missing or wrong CSRF token; reload the page"}, status_code=403)
    return None


#: What may be asked without a login: the login page and form (the form checks its own CSRF token) and the static
#: assets. Everything else is denied by default, also a route added later that forgets to ask.
PUBLIC = (("GET", "/login"), ("HEAD", "/login"), ("POST", "/login"))
PUBLIC_PREFIXES = ("/static/",)


class RequireLogin:
    """Pure ASGI middleware (inside the session middleware): every HTTP request but :data:`PUBLIC` and
    :data:`PUBLIC_PREFIXES` goes through :func:`guard` before any route sees it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            if (method, path) not in PUBLIC and not path.startswith(PUBLIC_PREFIXES):
                denied = guard(Request(scope, receive))
                if denied is not None:
                    return await denied(scope, receive, send)
        return await self.app(scope, receive, send)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m meshdcm.web.auth USER_NAME  (prints a users-file line)", file=sys.stderr)
        return 2
    password = getpass.getpass(f"password for {args[0]}: ")
    print(f"{args[0]}:{hash_password(password)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
