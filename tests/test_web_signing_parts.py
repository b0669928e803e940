"""Signing, sessions and logins, part by part: the users file with full name and organisation, the server-side
sessions, the failed-login throttle (on a clock of the test's own), the signing rules (once; amendments of the
latest report only; one at a time), the signing routes over HTTP, and the request body limit. The same in a
browser: test_web_reading_room_signing.py."""

from __future__ import annotations

import re

import pytest
from pydicom.dataset import Dataset
from starlette.testclient import TestClient

from meshdcm import Node, synthetic
from meshdcm.web import auth
from meshdcm.web.app import WebConfig, create_app
from meshdcm.web.auth import Login, hash_password, parse_users, why_cannot_sign
from meshdcm.web.report import build_sr
from meshdcm.web.sessions import LoginThrottle, Person, Sessions
from meshdcm.web.signing import SignatureRefused, Signatures, predecessors_of, read_report
from web_fixtures import SIGNER, login_csrf, users_file

TOKEN = "parts-token"  # noqa: S105 - a test's own login token
JANE = Person(SIGNER[0], SIGNER[2], SIGNER[3])


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def mr():
    return next(iter(synthetic.mr_brain(seed=2, size="small")))


def test_users_file_lines_name_the_person_and_older_lines_still_log_in(tmp_path):
    stored = hash_password("pw")
    users = tmp_path / "users"
    users.write_text(f"# comment\nold:{stored}\njane:{stored}:Doe^Jane:St. Mary: Radiology\n"
                     f"spaced:{stored}:Jane Doe:Clinic\n")
    accounts = parse_users(users.read_text())
    assert (accounts["old"].full_name, accounts["old"].organisation) == ("", "")
    assert (accounts["jane"].full_name, accounts["jane"].organisation) == ("Doe^Jane", "St. Mary: Radiology")
    login = Login(token=TOKEN, users_file=users)
    assert login.check("old", "pw") == Person("old")  # the older format logs in as before
    assert login.check("jane", "pw") == Person("jane", "Doe^Jane", "St. Mary: Radiology")
    assert login.check("jane", "wrong") is None
    assert login.check("", TOKEN) == Person("radiologist", token=True)

    assert why_cannot_sign(login.check("jane", "pw")) is None
    assert "Sign in as a named user" in why_cannot_sign(login.check("", TOKEN))
    assert "no full name and no organisation" in why_cannot_sign(login.check("old", "pw"))
    assert "Family^Given" in why_cannot_sign(login.check("spaced", "pw"))  # a PN, not "Jane Doe"
    assert "64 characters" in why_cannot_sign(Person("x", "Doe^Jane", "O" * 65))
    assert "backslash" in why_cannot_sign(Person("x", "Doe\\X^Jane", "Org"))


def test_the_users_file_tool_writes_the_full_name_and_organisation(monkeypatch, capsys):
    monkeypatch.setattr(auth.getpass, "getpass", lambda prompt: "s3cret")
    assert auth.main(["jane", "--full-name", "Doe^Jane", "--organisation", "St. Mary"]) == 0
    line = capsys.readouterr().out.strip()
    account = parse_users(line)["jane"]
    assert (account.full_name, account.organisation) == ("Doe^Jane", "St. Mary")
    assert auth.check_password("s3cret", account.stored)
    assert auth.main(["bob"]) == 0
    assert capsys.readouterr().out.strip().count(":") == 1  # the older format when no person is given
    with pytest.raises(SystemExit):
        auth.main(["jane", "--full-name", "Jane Doe"])
    assert "Family^Given" in capsys.readouterr().err


def test_sessions_end_at_logout_expire_and_stay_bounded():
    clock = Clock()
    sessions = Sessions(max_age=60, max_sessions=3, clock=clock)
    a, b = sessions.start(JANE), sessions.start(Person("bob"))
    assert sessions.get(a) == JANE and sessions.get(b).user == "bob"
    sessions.end(a)
    assert sessions.get(a) is None  # ended here: the cookie that carries it is worthless
    assert sessions.get("forged") is None and sessions.get(None) is None and sessions.get(["x"]) is None
    clock.now += 61
    assert sessions.get(b) is None  # expired
    ids = [sessions.start(JANE) for _ in range(5)]
    assert len(sessions) == 3 and sessions.get(ids[0]) is None and sessions.get(ids[-1]) == JANE


def test_failed_logins_lock_longer_each_time_and_are_forgotten():
    clock = Clock()
    throttle = LoginThrottle(free=5, max_lock=8, forget_after=100, max_clients=4, clock=clock)
    assert [throttle.failed("1.2.3.4", "jane") for _ in range(5)] == [0] * 5
    assert throttle.wait("1.2.3.4", "jane") == 0
    locks = []
    for _ in range(6):  # each failure after the lock ends locks twice as long, up to max_lock
        locks.append(throttle.failed("1.2.3.4", "jane"))
        assert throttle.wait("1.2.3.4", "jane") == locks[-1]
        assert throttle.wait("5.6.7.8", "jane") == locks[-1]  # the user name is locked from anywhere
        assert throttle.wait("1.2.3.4", "bob") == locks[-1]  # and the address for any user name
        clock.now += locks[-1]
    assert locks == [1, 2, 4, 8, 8, 8]
    assert throttle.wait("5.6.7.8", "bob") == 0
    throttle.succeeded("1.2.3.4", "jane")
    assert throttle.wait("1.2.3.4", "jane") == 0 and throttle.failed("1.2.3.4", "jane") == 0  # counts start over
    clock.now += 101
    throttle.failed("9.9.9.9", "eve")
    assert len(throttle) == 2  # jane and 1.2.3.4 forgotten; eve and 9.9.9.9 kept
    for n in range(10):
        throttle.failed(f"10.0.0.{n}", f"user{n}")
    assert len(throttle) == 4  # bounded: the least recently failed go first


def test_a_study_is_signed_once_and_amended_only_at_its_latest_report(tmp_path, mr):
    signatures = Signatures(tmp_path / "reports")
    study = str(mr.StudyInstanceUID)

    def write(amends: str | None, text: str) -> Dataset:
        with signatures.reserve(study, amends) as head:
            previous = None if head is None else read_report(head)
            sr = build_sr(mr, {"impression": text}, JANE, predecessor=previous)
            folder = tmp_path / "reports" / study / str(sr.SeriesInstanceUID)
            folder.mkdir(parents=True)
            sr.save_as(folder / f"{sr.SOPInstanceUID}.dcm", enforce_file_format=True)
            return sr

    assert signatures.chain(study) == [] and signatures.head(study) is None
    with pytest.raises(SignatureRefused, match="no signed report to amend"):
        write("1.2.3", "x")
    first = write(None, "first")
    with pytest.raises(SignatureRefused, match="already signed .*amend it") as refused:
        write(None, "again")
    assert refused.value.report["sop"] == first.SOPInstanceUID and "path" not in refused.value.report
    with signatures.reserve(study, str(first.SOPInstanceUID)):  # one at a time: a second request meanwhile
        with pytest.raises(SignatureRefused, match="being signed right now"):
            with signatures.reserve(study, str(first.SOPInstanceUID)):
                pass
    second = write(str(first.SOPInstanceUID), "second")
    with pytest.raises(SignatureRefused, match="amended already"):
        write(str(first.SOPInstanceUID), "a branch")
    third = write(str(second.SOPInstanceUID), "third")

    chain = signatures.chain(study)
    assert [r["sop"] for r in chain] == [first.SOPInstanceUID, second.SOPInstanceUID, third.SOPInstanceUID]
    assert [r["amends"] for r in chain] == [None, first.SOPInstanceUID, second.SOPInstanceUID]
    assert chain[-1]["sections"] == {"impression": "third"}
    assert (chain[0]["signed_by"], chain[0]["organisation"]) == (SIGNER[2], SIGNER[3])
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$", chain[0]["time"])
    item = third.PredecessorDocumentsSequence[0]  # PS3.3 C.17.2: Study, Series and SOP Instance of the predecessor
    assert item.StudyInstanceUID == study and item.ReferencedSeriesSequence[0].SeriesInstanceUID == \
        second.SeriesInstanceUID
    assert predecessors_of(third) == [second.SOPInstanceUID] and predecessors_of(first) == []
    assert third.SeriesDescription == "Report (amended)" and first.SeriesDescription == "Report"


@pytest.fixture
def web_app(tmp_path):
    node = Node("web-signing-parts", mesh=f"test-web-signing-{tmp_path.name[-8:]}")
    node.start()
    users = users_file(tmp_path / "users", f"bob:{hash_password('bob pw')}")
    app = create_app(node, WebConfig(data=tmp_path / "web", token=TOKEN, users_file=users))
    yield app
    node.stop()


def test_the_routes_sign_once_amend_the_latest_and_refuse_who_may_not_sign(web_app, mr):
    study = str(mr.StudyInstanceUID)
    web_app.state.web.view.study(study).evidence = mr  # an image of the study has arrived
    jane = TestClient(web_app)
    csrf = {"X-CSRF-Token": login_csrf(jane, SIGNER[1], user=SIGNER[0])}
    assert jane.get("/api/me").json()["cannot_sign"] is None

    first = jane.post(f"/api/studies/{study}/sign", json={"impression": "first"}, headers=csrf)
    assert first.status_code == 200 and first.json()["signed_by"] == SIGNER[2]
    again = jane.post(f"/api/studies/{study}/sign", json={"impression": "first"}, headers=csrf)  # replayed
    assert again.status_code == 409 and again.json()["report"]["sop"] == first.json()["sop"]
    draft = jane.get(f"/api/studies/{study}/draft").json()
    assert draft["report"]["sop"] == first.json()["sop"] and draft["sections"]["impression"] == "first"
    same = jane.post(f"/api/studies/{study}/amend", json={"predecessor": first.json()["sop"],
                                                          "impression": "first"}, headers=csrf)
    assert same.status_code == 400 and "changes nothing" in same.json()["error"]
    bad = jane.post(f"/api/studies/{study}/amend", json={"impression": "x"}, headers=csrf)
    assert bad.status_code == 400 and "predecessor" in bad.json()["error"]

    # an amendment in progress is a draft of its own; the report in force stays what was signed until it is signed
    assert jane.put(f"/api/studies/{study}/draft?amends={first.json()['sop']}", json={"impression": "second"},
                    headers=csrf).json()["amends"] == first.json()["sop"]
    assert jane.get(f"/api/studies/{study}/draft").json()["sections"]["impression"] == "second"
    second = jane.post(f"/api/studies/{study}/amend", json={"predecessor": first.json()["sop"],
                                                            "impression": "second"}, headers=csrf)
    assert second.status_code == 200 and second.json()["amends"] == first.json()["sop"]
    stale = jane.post(f"/api/studies/{study}/amend", json={"predecessor": first.json()["sop"],
                                                           "impression": "third"}, headers=csrf)
    assert stale.status_code == 409 and stale.json()["report"]["sop"] == second.json()["sop"]
    reports = {r["sop"]: r for r in jane.get(f"/api/studies/{study}").json()["reports"]}
    assert reports[first.json()["sop"]]["superseded_by"] == second.json()["sop"]
    assert reports[second.json()["sop"]]["superseded_by"] is None

    for user, secret, reason in (("", TOKEN, "Sign in as a named user"), ("bob", "bob pw", "no full name")):
        other = TestClient(web_app)
        headers = {"X-CSRF-Token": login_csrf(other, secret, user=user)}
        assert reason in other.get("/api/me").json()["cannot_sign"]
        refused = other.post(f"/api/studies/{study}/amend", json={"predecessor": second.json()["sop"],
                                                                  "impression": "x"}, headers=headers)
        assert refused.status_code == 403 and reason in refused.json()["error"]
    assert len(list((web_app.state.web.reports_dir / study).glob("*/*.dcm"))) == 2


def test_a_restarted_node_knows_what_it_signed(tmp_path, mr):
    """The chain is on disk: a web node started again lists the reports and still refuses a second signature."""
    study = str(mr.StudyInstanceUID)
    for attempt, status in ((1, 200), (2, 409)):
        node = Node(f"web-restart-{attempt}", mesh=f"test-web-restart-{tmp_path.name[-8:]}")
        node.start()
        try:
            app = create_app(node, WebConfig(data=tmp_path / "web", users_file=users_file(tmp_path / "users")))
            app.state.web.view.study(study).evidence = mr
            client = TestClient(app)
            csrf = {"X-CSRF-Token": login_csrf(client, SIGNER[1], user=SIGNER[0])}
            if attempt == 2:
                assert client.get(f"/api/studies/{study}/draft").json()["report"]["sections"] == {"impression": "x"}
                [listed] = client.get(f"/api/studies/{study}").json()["reports"]
                assert listed["state"] == "signed" and listed["signed_by"] == SIGNER[2]
            assert client.post(f"/api/studies/{study}/sign", json={"impression": "x"},
                               headers=csrf).status_code == status
        finally:
            node.stop()


def test_a_request_body_over_the_limit_is_refused_also_when_chunked(web_app):
    client = TestClient(web_app)
    csrf = {"X-CSRF-Token": login_csrf(client, TOKEN)}

    def chunks():
        for _ in range(3):
            yield b"x" * 2**20
    chunked = client.post("/api/search", content=chunks(), headers={**csrf, "Content-Type": "application/json"})
    assert chunked.status_code == 413 and "larger than 2 MiB" in chunked.json()["error"]
    declared = client.post("/api/search", content=b"{" + b" " * (2 * 2**20) + b"}", headers=csrf)
    assert declared.status_code == 413
    small = client.post("/api/search", content=iter([b'{"patient": ', b'"X"}']), headers=csrf)
    assert small.status_code == 200 and small.json()["id"]  # a chunked body under the limit goes through whole
