"""Who may use the web UI: a login token printed at start and/or a users file with scrypt-hashed passwords,
server-side sessions (``sessions.Sessions``) behind a signed cookie (HttpOnly, SameSite=Strict, Secure over TLS)
and a CSRF token per session.

The users file has one line per user::

    name:scrypt$N$r$p$salt_hex$hash_hex[:Family^Given[:organisation]]

the full name as a DICOM person name (PN: ``Doe^Jane``, components separated by ``^``) and the organisation are the
verifying observer and organisation of the reports the user signs; a line without them (the older format) still
logs in, but cannot sign. ``python -m meshdcm.web.auth NAME --full-name Doe^Jane --organisation "St. Mary"`` asks
for the password and prints the line. Blank lines and ``#`` comments are ignored. The token, when set, logs in as
the user ``radiologist``, who has no person behind it and cannot sign.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from .sessions import Person

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
TOKEN_USER = "radiologist"  # noqa: S105 - a user name, not a secret
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_USER, MAX_SECRET = 64, 1024  # characters of a login form's user name and token or password


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


def person_name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as the DICOM person name (PN) of a signer, or None."""
    if not name:
        return "no full name"
    if any(c == "\\" or ord(c) < 32 for c in name):
        return f"the full name {name!r} holds a backslash or a control character"
    groups = name.split("=")
    if len(groups) > 3 or any(len(g) > 64 or g.count("^") > 4 for g in groups):
        return f"the full name {name!r} is not a DICOM person name (at most 64 characters, 5 parts)"
    if "^" not in groups[0] or not groups[0].split("^")[0].strip():
        return f"the full name {name!r} is not written Family^Given (e.g. Doe^Jane)"
    return None


def organisation_problem(organisation: str) -> str | None:
    if not organisation:
        return "no organisation"
    if len(organisation) > 64 or any(c == "\\" or ord(c) < 32 for c in organisation):
        return f"the organisation {organisation!r} is longer than 64 characters or holds a backslash"
    return None


def why_cannot_sign(person: Person | None) -> str | None:
    """Why ``person`` may not sign a report (the page shows it), or None when they may."""
    if person is None:
        return "not logged in"
    if person.token:
        return ("the login token has no person behind it: a signed report names who verified it. Sign in as a named "
                "user (an account in the users file, with full name and organisation)")
    problems = [p for p in (person_name_problem(person.full_name), organisation_problem(person.organisation)) if p]
    if problems:
        return (f"your account ({person.user}) has {' and '.join(problems)} in the users file, and a signed report "
                f"names both; ask the administrator to add them (name:hash:Family^Given:Organisation)")
    return None


@dataclass(frozen=True)
class Account:
    stored: str  # the scrypt hash
    full_name: str = ""
    organisation: str = ""


def parse_users(text: str) -> dict[str, Account]:
    """The accounts of a users file (see the module docstring)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            name, _, rest = line.partition(":")
            stored, _, person = rest.partition(":")
            full_name, _, organisation = person.partition(":")
            out[name.strip()] = Account(stored.strip(), full_name.strip(), organisation.strip())
    return out


@dataclass
class Login:
    """Checks credentials: the start token (any user name) and the users file (re-read on every login)."""

    token: str = ""
    users_file: Path | None = None

    def users(self) -> dict[str, Account]:
        if self.users_file is None or not self.users_file.exists():
            return {}
        return parse_users(self.users_file.read_text(encoding="utf-8"))

    def check(self, user: str, secret: str) -> Person | None:
        """Who logged in, or None."""
        if self.token and secret and hmac.compare_digest(secret.encode(), self.token.encode()):
            return Person(TOKEN_USER, token=True)
        account = self.users().get(user)
        if account and check_password(secret, account.stored):
            return Person(user, account.full_name, account.organisation)
        return None


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(request: Request, supplied: str | None) -> bool:
    expected = request.session.get("csrf")
    return bool(expected and supplied and hmac.compare_digest(expected.encode(), supplied.encode()))


def current_person(request: Request) -> Person | None:
    """The person of the request's session, if it is live on the server (``app.state.sessions``)."""
    return request.app.state.sessions.get(request.session.get("sid"))


def current_user(request: Request) -> str | None:
    person = current_person(request)
    return person.user if person else None


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
#: assets (the favicon among them). Everything else is denied by default, also a route added later that forgets to ask.
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
    parser = argparse.ArgumentParser(prog="python -m meshdcm.web.auth",
                                     description="print a users-file line (asks for the password)")
    parser.add_argument("user", help="the user name to log in with")
    parser.add_argument("--full-name", default="", metavar="FAMILY^GIVEN",
                        help="the DICOM person name a signed report names (e.g. Doe^Jane); needed to sign")
    parser.add_argument("--organisation", default="", help="the verifying organisation; needed to sign")
    args = parser.parse_args(argv)
    for problem in (person_name_problem(args.full_name) if args.full_name else None,
                    organisation_problem(args.organisation) if args.organisation else None,
                    ":" in args.user and "the user name holds a colon",
                    ":" in args.full_name and "the full name holds a colon"):
        if problem:
            parser.error(problem)
    password = getpass.getpass(f"password for {args.user}: ")
    fields = [args.user, hash_password(password), args.full_name, args.organisation]
    while not fields[-1]:
        fields.pop()
    print(":".join(fields))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
