"""The web UI's login, sessions and CSRF: nothing without a login, nothing state-changing without the token."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from meshdcm import Node
from meshdcm.web.app import WebConfig, create_app
from meshdcm.web.auth import Login, check_password, hash_password
from web_fixtures import login_csrf

TOKEN = "t0ken"  # noqa: S105 - a test's own login token


@pytest.fixture
def web_node(mesh):
    node = Node("web-auth", mesh=mesh.name)
    yield node
    if node._started:
        node.stop()


def make_client(node, tmp_path, **config) -> TestClient:
    app = create_app(node, WebConfig(data=tmp_path / "web", **config))
    return TestClient(app, base_url="https://testserver" if config.get("https") else "http://testserver")


def test_passwords_are_scrypt_hashes_that_check(tmp_path):
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct" not in stored
    assert check_password("correct horse", stored)
    assert not check_password("wrong", stored)
    assert not check_password("x", "garbage")
    users = tmp_path / "users"
    users.write_text(f"# comment\nalice:{stored}\n")
    login = Login(token="", users_file=users)
    assert login.check("alice", "correct horse").user == "alice"
    assert login.check("alice", "wrong") is None
    assert login.check("bob", "correct horse") is None
    assert login.check("", "") is None  # no token configured: an empty secret never logs in


def test_nothing_without_a_login(web_node, tmp_path):
    client = make_client(web_node, tmp_path, token=TOKEN)
    assert client.get("/api/me").status_code == 401
    assert client.get("/api/mesh").status_code == 401
    assert client.get("/api/series/1.2.3/slices/0").status_code == 401
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert client.post("/api/search", json={}).status_code == 401
    assert client.get("/api/events").status_code == 401


def test_login_with_the_token_sets_a_strict_httponly_cookie(web_node, tmp_path):
    client = make_client(web_node, tmp_path, token=TOKEN)
    page = client.get("/login")
    assert page.status_code == 200 and 'name="csrf"' in page.text
    import re

    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    bad = client.post("/login", data={"csrf": csrf, "user": "", "secret": "wrong"}, follow_redirects=False)
    assert bad.status_code == 401 and "Wrong token" in bad.text
    no_csrf = client.post("/login", data={"csrf": "forged", "user": "", "secret": TOKEN}, follow_redirects=False)
    assert no_csrf.status_code == 403
    ok = client.post("/login", data={"csrf": csrf, "user": "", "secret": TOKEN}, follow_redirects=False)
    assert ok.status_code == 303
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    me = client.get("/api/me").json()
    assert me["user"] == "radiologist" and me["csrf"] != csrf  # a fresh CSRF token after login
    home = client.get("/")
    assert home.status_code == 200 and me["csrf"] in home.text
    assert "frame-ancestors 'none'" in home.headers["content-security-policy"]
    assert home.headers["x-frame-options"] == "DENY" and home.headers["x-content-type-options"] == "nosniff"


def test_state_changing_requests_need_the_csrf_token(web_node, tmp_path):
    web_node.start()
    client = make_client(web_node, tmp_path, token=TOKEN)
    csrf = login_csrf(client, TOKEN)
    assert client.post("/api/search", json={"patient": "X"}).status_code == 403
    assert client.post("/api/search", json={"patient": "X"}, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert client.put("/api/studies/1.2.3/draft", json={"findings": "x"}).status_code == 403
    assert client.post("/api/studies/1.2.3/sign", json={"findings": "x"}).status_code == 403
    assert client.post("/logout").status_code == 403
    ok = client.post("/api/search", json={"patient": "X"}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and ok.json()["id"]
    assert client.post("/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.get("/api/me").status_code == 401


def test_users_file_login_and_secure_cookie_over_tls(web_node, tmp_path):
    users = tmp_path / "users"
    users.write_text(f"alice:{hash_password('s3cret pass')}\n")
    client = make_client(web_node, tmp_path, users_file=users, https=True)
    import re

    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    assert client.post("/login", data={"csrf": csrf, "user": "alice", "secret": "nope"},
                       follow_redirects=False).status_code == 401
    ok = client.post("/login", data={"csrf": csrf, "user": "alice", "secret": "s3cret pass"}, follow_redirects=False)
    assert ok.status_code == 303 and "secure" in ok.headers["set-cookie"].lower()
    assert client.get("/api/me").json()["user"] == "alice"
    assert "alice" not in ok.headers["set-cookie"]  # the cookie holds a session id; the person is on the server


def test_every_route_is_denied_without_a_login_also_one_added_later(web_node, tmp_path):
    """Deny by default: the login check is a middleware in front of every route, not a guard each route must
    remember (a route that forgot it would have served without a login)."""
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    app = create_app(web_node, WebConfig(data=tmp_path / "web", token=TOKEN))
    app.router.routes.append(Route("/api/added-later", lambda request: PlainTextResponse("secret"),
                                   methods=["GET", "POST"]))
    client = TestClient(app)
    checked = 0
    for route in app.routes:
        if not isinstance(route, Route) or route.path == "/login":
            continue
        path = route.path.replace("{uid}", "1.2.3").replace("{id}", "x").replace("{index}", "0") \
            .replace("{action}", "retry")
        for method in sorted(route.methods - {"HEAD"}):
            answer = client.request(method, path, follow_redirects=False)
            assert answer.status_code in (401, 303), (method, path, answer.status_code)
            assert "secret" not in answer.text
            checked += 1
    assert checked >= 23  # every route of the app, and the one added
    assert client.get("/static/main.js").status_code == 200  # public: the assets, and the login page
    assert client.get("/login").status_code == 200
