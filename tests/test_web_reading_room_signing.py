"""The web UI at reading-room standard, in a real headless browser (Debian's chromium driven by Playwright):
a report signed once and corrected by an amendment that names its predecessor, the signer named from the users
file (a token login cannot sign), sessions that end at logout, failed logins throttled, drafts saved only after
an edit, deep links kept through the login, a study opened from a link fetched, the last search run again after a
reload, readable dates, times and modalities, the monitor listing the web node itself and naming dead-letter
traffic, bounded request fields with the error in the page, and a favicon.

One pacs node (its embedded PACS with the synthetic CT and MR of patient MESHDCM) and one index node serve the
module; each test starts a web node of its own in this process, so it sees unopened studies and no signed report.
Screenshots of every step: ``$MESHDCM_ARTIFACTS`` (default ``<repo>/artifacts/screenshots/``, git-ignored), one
folder per test, ``NN-step.png``.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import shutil
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from conftest import ROOT, Mesh, wait_until
from meshdcm import synthetic
from meshdcm.config import NodeConfig
from meshdcm.pacs import Pacs, find, retrieve, store
from meshdcm.web.auth import hash_password
from meshdcm.web.sessions import LoginThrottle
from web_fixtures import CHROMIUM_ARGS, SIGNER, chromium_or_skip, users_file

pytestmark = pytest.mark.slow  # headless Chromium (make test-fast leaves it out)

TOKEN = "reading-room-token"  # noqa: S105 - a test's own login token
BOB = ("bob", "bob's pass phrase")  # a users-file account of the older format: no full name, no organisation
ARTIFACTS = Path(os.environ.get("MESHDCM_ARTIFACTS") or ROOT / "artifacts" / "screenshots")
CT_STUDY = str(next(iter(synthetic.head_ct(seed=1, size="small"))).StudyInstanceUID)  # the embedded PACS's studies
MR_STUDY = str(next(iter(synthetic.mr_brain(seed=2, size="small"))).StudyInstanceUID)
WAIT_MS = 30_000  # a loaded 2-core machine: waits end on the condition, not on a guess


# --- fixtures ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """A pacs node with its embedded PACS and an index node, for the whole module: (mesh, (pacs host, port))."""
    tmp = tmp_path_factory.mktemp("reading-room")
    mesh = Mesh(tmp)
    pacs = mesh.start("node", "pacs", "--config", mesh.config("pacs", embedded=True, storage=str(tmp / "store"),
                                                             quiet_seconds=2))
    mesh.start("node", "index", "--config", mesh.config("index", path=str(tmp / "index.sqlite3")))
    try:
        text = pacs.wait_for_output("embedded PACS", timeout=60)
        host, port = re.search(r"embedded PACS \S+ on ([\d.]+):(\d+)", text).groups()
        yield mesh, (host, int(port))
    finally:
        mesh.close()


@pytest.fixture
def start_web(backend, tmp_path):
    """Starts a web node of this test's own (token, and a users file with jane who may sign and bob who may not);
    returns its URL and data folder."""
    import nodes.web as web

    mesh, _ = backend
    started = []
    counter = itertools.count(1)

    def start() -> tuple[str, Path]:
        n = next(counter)
        users = users_file(tmp_path / f"users{n}", f"{BOB[0]}:{hash_password(BOB[1])}")
        data = tmp_path / f"web{n}"
        node = web.create(NodeConfig(name=f"web-{uuid.uuid4().hex[:8]}", kind="web", mesh=mesh.name,
                                     options={"port": 0, "token": TOKEN, "data": str(data),
                                              "users_file": str(users)}))
        off_the_browser_thread(node.start)
        started.append(node)
        wait_until(lambda: {"pacs", "index"} <= {p["kind"] for p in node.peers}, 30, what="the pacs and index nodes")
        assert node.wait_for_subscribers("find.studies", 10) and node.wait_for_subscribers("store.series", 10)
        return node.extra["web"], data

    yield start
    for node in started:
        off_the_browser_thread(node.stop)


def off_the_browser_thread(func) -> None:
    """Run ``func`` on a thread of its own: Playwright's sync API keeps an asyncio loop on the test's thread, where
    zeroconf (the node's mDNS discovery) refuses its blocking calls."""
    errors = []

    def run():
        try:
            func()
        except BaseException as exc:  # noqa: BLE001 - raised again on the test's thread
            errors.append(exc)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def browser():
    chromium = chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(WAIT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def shot(request):
    """``shot(page, "step")`` saves ARTIFACTS/<test>/NN-step.png (the folder emptied first)."""
    folder = ARTIFACTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    step = itertools.count(1)

    def take(page, name: str) -> Path:
        path = folder / f"{next(step):02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path
    return take


# --- helpers -----------------------------------------------------------------------------------------------------

def log_in(page, url: str, user: str, secret: str, hash_: str = "") -> None:
    from playwright.sync_api import expect

    page.goto(url + hash_)
    expect(page.locator("#login-form")).to_be_visible()
    page.fill("#login-user", user)
    page.fill("#login-secret", secret)
    page.click("#login-go")
    expect(page.locator("#user")).not_to_be_empty()


def open_from_search(page, description: str) -> None:
    """Search patient MESHDCM and open the study whose row says ``description``; wait until it has arrived."""
    from playwright.sync_api import expect

    page.click("#nav-search")
    page.fill("#search-patient", "MESHDCM")
    page.click("#search-go")
    row = page.locator("#results tbody tr", has_text=description)
    expect(row).to_have_count(1)
    row.locator(".open-study").click()
    expect(page.locator("#study-state")).to_contain_text("complete", timeout=60_000)


def csrf_of(page) -> str:
    return page.locator('meta[name="csrf-token"]').get_attribute("content")


def post(page, path: str, body: dict) -> tuple[int, dict]:
    """A POST from the page's own session (what a replayed request or a second tab sends)."""
    r = page.request.post(page.url.split("#")[0].rstrip("/") + path, data=json.dumps(body),
                          headers={"X-CSRF-Token": csrf_of(page), "Content-Type": "application/json"})
    return r.status, r.json()


def pacs_reports(pacs: tuple[str, int], study: str, dest: Path) -> list[Dataset]:
    """Every SR of ``study`` in the PACS (C-FIND its SR series, C-GET them)."""
    node = Pacs("check", ae_title="MESHPACS", host=pacs[0], port=pacs[1], retrieve="get", calling_ae="WEBTEST")
    q = Dataset()
    q.StudyInstanceUID, q.SeriesInstanceUID, q.Modality = study, "", "SR"
    out = []
    for series in find(node, "SERIES", q):
        if str(series.get("Modality", "")) == "SR":
            retrieve(node, study, dest, series_uid=str(series.SeriesInstanceUID))
            out += [dcmread(p) for p in sorted((dest / study / str(series.SeriesInstanceUID)).glob("*.dcm"))]
    return out


def signed_files(data: Path, study: str) -> list[Dataset]:
    return [dcmread(p) for p in sorted((data / "reports" / study).glob("*/*.dcm"))]


# --- signing -----------------------------------------------------------------------------------------------------

def test_a_report_is_signed_once_and_corrected_by_an_amendment(start_web, backend, context, shot, tmp_path):
    from playwright.sync_api import expect

    url, data = start_web()
    _, pacs = backend
    page = context.new_page()
    log_in(page, url, SIGNER[0], SIGNER[1])
    open_from_search(page, "CT HEAD")
    page.locator("#report-impression").press_sequentially("No intracranial haemorrhage.", delay=2)
    expect(page.locator("#draft-status")).to_contain_text("draft saved")
    # a second tab that hears nothing of the signature (no event stream): it still offers to sign
    stale = context.new_page()
    stale.route("**/api/events", lambda route: route.abort())
    stale.goto(url + "#/study/" + CT_STUDY)
    expect(stale.locator("#study-state")).to_contain_text("complete")  # its one look at the study, done before
    expect(stale.locator("#report-impression")).to_have_value("No intracranial haemorrhage.")  # the signature
    expect(stale.locator("#sign")).to_be_enabled()
    shot(page, "draft-before-signing")

    # a double click signs once: the page shows the signed state and offers an amendment, not a second signature
    page.dblclick("#sign")
    expect(page.locator("#report")).to_have_attribute("data-state", "signed")
    expect(page.locator("#sign")).to_be_disabled()
    expect(page.locator("#sign")).to_have_text("Signed")
    expect(page.locator("#amend")).to_be_visible()
    expect(page.locator("#signed-by")).to_contain_text("Signed by Jane Doe (St. Elsewhere Radiology)")
    expect(page.locator("#report-impression")).to_have_attribute("readonly", "")
    expect(page.locator("#sign-status [data-state=stored]")).to_have_count(1)
    shot(page, "signed-once")

    # the stale tab signs: refused by the server, and the page then shows the signed report
    stale.click("#sign")
    expect(stale.locator("#sign-error")).to_contain_text("already signed (by Jane Doe")
    expect(stale.locator("#report")).to_have_attribute("data-state", "signed")
    expect(stale.locator("#sign")).to_be_disabled()
    shot(stale, "second-tab-refused")
    # a replayed POST: refused, with the report in force
    status, answer = post(page, f"/api/studies/{CT_STUDY}/sign", {"impression": "No intracranial haemorrhage."})
    assert status == 409 and "a signed report is final" in answer["error"]
    [first] = signed_files(data, CT_STUDY)  # one SR, on disk and in the PACS
    assert answer["report"]["sop"] == first.SOPInstanceUID
    assert [str(sr.SOPInstanceUID) for sr in pacs_reports(pacs, CT_STUDY, tmp_path / "pacs1")] == \
        [first.SOPInstanceUID]
    # the verifying observer is the logged-in person, from the users file
    assert (first.CompletionFlag, first.VerificationFlag, first.PreliminaryFlag) == ("COMPLETE", "VERIFIED", "FINAL")
    observer = first.VerifyingObserverSequence[0]
    assert (str(observer.VerifyingObserverName), observer.VerifyingOrganization) == (SIGNER[2], SIGNER[3])
    assert "PredecessorDocumentsSequence" not in first

    # the correction: an amendment, a new SR that names its predecessor; the old one is shown superseded
    page.click("#amend")
    expect(page.locator("#report")).to_have_attribute("data-state", "amending")
    impression = page.locator("#report-impression")
    impression.press("End")
    impression.press_sequentially(" Small old lacune in the left thalamus.", delay=2)
    expect(page.locator("#draft-status")).to_contain_text("draft saved")
    expect(page.locator("#sign")).to_have_text("Sign the amendment and send to PACS")
    shot(page, "amending")
    page.dblclick("#sign")
    expect(page.locator("#report")).to_have_attribute("data-state", "amended")
    expect(page.locator("#signed-by")).to_contain_text("replaces report")
    expect(page.locator("#sign-status [data-status=superseded]")).to_have_count(1)
    expect(page.locator("#sign-status [data-status=amended]")).to_have_count(1)
    expect(page.locator("#sign-status [data-status=amended][data-state=stored]")).to_have_count(1)
    shot(page, "amended")
    status, answer = post(page, f"/api/studies/{CT_STUDY}/amend", {"predecessor": str(first.SOPInstanceUID),
                                                                   "impression": "another correction"})
    assert status == 409 and "amended already" in answer["error"]

    reports = signed_files(data, CT_STUDY)
    assert len(reports) == 2
    amendment = next(sr for sr in reports if sr.SOPInstanceUID != first.SOPInstanceUID)
    [ref] = amendment.PredecessorDocumentsSequence  # PS3.3 C.17.2: the predecessor's Study/Series/SOP Instance UIDs
    assert ref.StudyInstanceUID == first.StudyInstanceUID == CT_STUDY
    assert ref.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    sop = ref.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert (sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID) == (first.SOPClassUID, first.SOPInstanceUID)
    assert amendment.VerificationFlag == "VERIFIED" and amendment.PreliminaryFlag == "FINAL"
    assert str(amendment.VerifyingObserverSequence[0].VerifyingObserverName) == SIGNER[2]
    in_pacs = {str(sr.SOPInstanceUID): sr for sr in pacs_reports(pacs, CT_STUDY, tmp_path / "pacs2")}
    assert set(in_pacs) == {first.SOPInstanceUID, amendment.SOPInstanceUID}
    assert "PredecessorDocumentsSequence" in in_pacs[amendment.SOPInstanceUID]

    # the patient's other study lists both as prior reports: the amended one, and the one it superseded
    open_from_search(page, "MR")
    priors = page.locator("#priors .prior")
    expect(priors).to_have_count(2)
    expect(page.locator(f"#priors [data-sop='{first.SOPInstanceUID}']")).to_have_attribute("data-status",
                                                                                         "superseded")
    expect(page.locator(f"#priors [data-sop='{amendment.SOPInstanceUID}']")).to_have_attribute("data-status",
                                                                                             "amended")
    expect(page.locator("#priors .superseded .tag")).to_have_text("superseded by an amendment")
    page.locator("#priors").scroll_into_view_if_needed()
    shot(page, "priors-amended-and-superseded")


def test_only_a_named_person_signs_and_the_token_is_told_to_sign_in_as_one(start_web, browser, context, shot):
    from playwright.sync_api import expect

    url, data = start_web()
    page = context.new_page()
    log_in(page, url, "", TOKEN)
    expect(page.locator("#user")).to_have_text("radiologist")
    open_from_search(page, "CT HEAD")
    expect(page.locator("#cannot-sign")).to_contain_text("Sign in as a named user")
    expect(page.locator("#sign")).to_be_disabled()
    shot(page, "token-cannot-sign")
    status, answer = post(page, f"/api/studies/{CT_STUDY}/sign", {"impression": "ok"})
    assert status == 403 and "sign in as a named user" in answer["error"].lower()

    other = browser.new_context(viewport={"width": 1400, "height": 1000})  # bob: no full name in the file
    try:
        page = other.new_page()
        log_in(page, url, *BOB)
        page.goto(url + "#/study/" + CT_STUDY)
        expect(page.locator("#cannot-sign")).to_contain_text("no full name and no organisation")
        expect(page.locator("#sign")).to_be_disabled()
        shot(page, "account-without-full-name")
        status, answer = post(page, f"/api/studies/{CT_STUDY}/sign", {"impression": "ok"})
        assert status == 403 and "Family^Given" in answer["error"]
    finally:
        other.close()
    assert signed_files(data, CT_STUDY) == []


# --- session and login ------------------------------------------------------------------------------------------

def test_a_session_cookie_replayed_after_logout_is_refused(start_web, context, shot, browser):
    from playwright.sync_api import expect

    url, _ = start_web()
    page = context.new_page()
    log_in(page, url, SIGNER[0], SIGNER[1])
    cookies = context.cookies()
    assert [c["name"] for c in cookies] == ["meshdcm_session"]
    shot(page, "logged-in")
    page.click("#logout")
    expect(page).to_have_url(re.compile(r"/login$"))
    shot(page, "logged-out")

    replay = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        replay.add_cookies(cookies)  # the cookie as it was before the logout
        other = replay.new_page()
        other.goto(url)
        expect(other).to_have_url(re.compile(r"/login$"))
        assert other.request.get(url + "api/me").status == 401
        shot(other, "replayed-cookie-refused")
    finally:
        replay.close()


def test_failed_logins_are_throttled_per_address_and_user(start_web, context, shot, monkeypatch):
    """300 wrong logins as fast as they go: 5 are checked, then each address and user name is locked (429 with
    Retry-After), also for the right password, until the lock ends (the clock is the test's: no sleeping)."""
    from playwright.sync_api import expect

    now = [1000.0]
    monkeypatch.setattr("meshdcm.web.common.LoginThrottle", functools.partial(LoginThrottle, clock=lambda: now[0]),
                        raising=False)
    url, _ = start_web()
    statuses = []
    with httpx.Client(base_url=url, timeout=30) as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
        for _ in range(300):
            r = client.post("/login", data={"csrf": csrf, "user": SIGNER[0], "secret": "guess"},
                            follow_redirects=False)
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}

    page = context.new_page()  # the same address, the right password: still locked, and the page says so
    page.goto(url)
    page.fill("#login-user", SIGNER[0])
    page.fill("#login-secret", SIGNER[1])
    page.click("#login-go")
    expect(page.locator("#login-error")).to_contain_text("Too many failed logins")
    expect(page.locator("#login-error")).to_contain_text("try again in 1 s")
    shot(page, "locked")
    now[0] += 1.5  # the lock (1 s after the 6th failure) is over
    page.fill("#login-user", SIGNER[0])
    page.fill("#login-secret", SIGNER[1])
    page.click("#login-go")
    expect(page.locator("#user")).to_have_text("Jane Doe (jane)")
    shot(page, "logged-in-after-the-lock")


def test_a_draft_is_saved_only_after_the_radiologist_types(start_web, context, shot):
    from playwright.sync_api import expect

    url, data = start_web()
    page = context.new_page()
    saves = []
    page.on("request", lambda r: saves.append(r.post_data) if r.method == "PUT" and "/draft" in r.url else None)
    log_in(page, url, SIGNER[0], SIGNER[1])
    open_from_search(page, "CT HEAD")
    expect(page.locator("#report-protocol")).to_have_value(re.compile(r"^CT .*\(\d+ images\)"))
    expect(page.locator("#draft-status")).to_have_text("new report", timeout=2_000)  # shown, not saved
    shot(page, "protocol-prefilled-not-saved")
    status = page.request.get(f"{url}api/studies/{CT_STUDY}/draft").json()
    assert status["saved"] is None and saves == []
    assert not list((data / "drafts").glob("*/*.json"))

    page.locator("#report-findings").press_sequentially("Normal ventricles.", delay=2)
    expect(page.locator("#draft-status")).to_contain_text("draft saved")
    shot(page, "saved-after-typing")
    assert saves and all("Normal ventricles." in json.loads(s)["findings"] for s in saves)


# --- navigation --------------------------------------------------------------------------------------------------

def test_a_deep_link_is_kept_through_the_login(start_web, context, shot):
    from playwright.sync_api import expect

    url, _ = start_web()
    page = context.new_page()
    page.goto(url + "#/study/" + CT_STUDY)
    expect(page).to_have_url(re.compile(r"/login#/study/"))
    page.fill("#login-user", SIGNER[0])
    page.fill("#login-secret", SIGNER[1])
    shot(page, "login-with-a-deep-link")
    page.click("#login-go")
    expect(page).to_have_url(url + "#/study/" + CT_STUDY)
    expect(page.locator("#page-study")).to_be_visible()
    expect(page.locator("#study-sub")).to_contain_text(CT_STUDY)
    expect(page.locator("#study-state")).to_contain_text("complete", timeout=60_000)
    shot(page, "the-linked-study")


def test_a_study_never_opened_is_fetched_when_reached_by_a_link(start_web, context, shot):
    from playwright.sync_api import expect

    url, _ = start_web()
    page = context.new_page()
    log_in(page, url, SIGNER[0], SIGNER[1])
    page.goto(url + "#/study/" + MR_STUDY)
    expect(page.locator("#study-state")).not_to_have_text(re.compile("^idle"))
    expect(page.locator("#study-state")).to_contain_text("complete", timeout=60_000)
    expect(page.locator(".series-card[data-complete=true]")).to_have_count(5)
    shot(page, "linked-study-fetched")


def test_the_last_search_is_run_again_after_a_reload(start_web, context, shot):
    from playwright.sync_api import expect

    url, _ = start_web()
    page = context.new_page()
    log_in(page, url, SIGNER[0], SIGNER[1])
    page.fill("#search-patient", "MESHDCM")
    page.select_option("#search-modality", "MR")
    page.click("#search-go")
    rows = page.locator("#results tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("MR BRAIN")
    shot(page, "searched")
    page.reload()
    expect(page.locator("#search-patient")).to_have_value("MESHDCM")
    expect(page.locator("#search-modality")).to_have_value("MR")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("MR BRAIN")
    shot(page, "after-reload")


def test_dates_times_and_modalities_read_as_words(start_web, backend, context, shot, tmp_path):
    """A study of an MR and a CT image (only the PACS knows it): its row and page show 2024-01-03 14:05 and
    "CT, MR", never 20240103 or CT\\MR."""
    from playwright.sync_api import expect

    _, pacs = backend
    patient = synthetic.Patient(name="READINGROOM^DATES", id="MESHDCM-RR-DATES")
    mr = next(iter(synthetic.mr_brain(seed=7, size="small", patient=patient)))
    ct = next(iter(synthetic.head_ct(seed=7, size="small", patient=patient)))
    for key in ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription", "AccessionNumber", "StudyID"):
        setattr(ct, key, mr.get(key))  # the CT image joins the MR study
    paths = [tmp_path / "mr.dcm", tmp_path / "ct.dcm"]
    mr.save_as(paths[0], enforce_file_format=True)
    ct.save_as(paths[1], enforce_file_format=True)
    store(Pacs("check", ae_title="MESHPACS", host=pacs[0], port=pacs[1], calling_ae="WEBTEST"), paths)
    date, time_ = str(mr.StudyDate), str(mr.StudyTime)
    shown = f"{date[:4]}-{date[4:6]}-{date[6:8]} {time_[:2]}:{time_[2:4]}"

    url, _ = start_web()
    page = context.new_page()
    log_in(page, url, SIGNER[0], SIGNER[1])
    page.fill("#search-patient", "READINGROOM")
    page.click("#search-go")
    row = page.locator("#results tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(2)).to_have_text(shown)  # the Date column
    expect(row.locator("td").nth(3)).to_have_text("CT, MR")  # Modalities
    expect(page.locator("#results")).not_to_contain_text(date)
    expect(page.locator("#results")).not_to_contain_text("\\")
    shot(page, "search-row")
    row.locator(".open-study").click()
    expect(page.locator("#study-title")).to_contain_text(shown)
    expect(page.locator("#study-sub")).to_contain_text("CT, MR")
    shot(page, "study-title")


def test_the_monitor_lists_this_node_and_names_dead_letter_traffic(start_web, context, shot):
    from playwright.sync_api import expect

    url, _ = start_web()
    page = context.new_page()
    log_in(page, url, SIGNER[0], SIGNER[1])
    page.click("#nav-monitor")
    me = page.locator("#nodes tbody tr[data-self=true]")
    expect(me).to_have_count(1)
    expect(me).to_contain_text("(this node)")
    expect(me.locator("td").nth(1)).to_have_text("web")
    expect(page.locator("#nodes tbody tr", has_text="pacs")).to_have_count(1)
    page.click("#dead-refresh")
    expect(page.locator("#dead-status")).to_contain_text("answered")
    expect(page.locator("#rates")).to_contain_text("dead-letter queries:")
    expect(page.locator("#rates")).not_to_contain_text(re.compile(r"(^|, )dead: "))
    shot(page, "monitor")


def test_every_request_field_is_bounded_and_the_page_says_so(start_web, context, shot):
    from playwright.sync_api import expect

    url, _ = start_web()
    page = context.new_page()
    log_in(page, url, SIGNER[0], SIGNER[1])
    page.fill("#search-patient", "X" * 100_000)
    page.click("#search-go")
    status = page.locator("#search-status")
    expect(status).to_have_class(re.compile("error"))
    expect(status).to_contain_text("the patient name is 100,000 characters long; at most 64 are allowed")
    shot(page, "search-too-long")

    csrf = {"X-CSRF-Token": csrf_of(page)}
    with httpx.Client(base_url=url, cookies={c["name"]: c["value"] for c in context.cookies()}, timeout=30) as c:
        assert c.post("/api/search", json={"accession": "A" * 17}, headers=csrf).status_code == 400
        assert c.post("/api/search", json={"patient": ["not", "text"]}, headers=csrf).status_code == 400
        big = c.post("/api/search", content=b'{"patient": "' + b"X" * (3 * 2**20) + b'"}',
                     headers={**csrf, "Content-Type": "application/json"})
        assert big.status_code == 413 and "larger than 2 MiB" in big.json()["error"]
        assert c.post("/api/dead/retry", json={"node": "n" * 65, "id": "1"}, headers=csrf).status_code == 400
        assert c.post("/api/dead/list", json={"node": "n" * 100_000}, headers=csrf).status_code == 400
        assert c.post("/api/viewer/open", json={"study": "1.2.3", "viewer": "v" * 65},
                      headers=csrf).status_code == 400
        assert c.put(f"/api/studies/{CT_STUDY}/draft", json={"findings": "x" * 64_001},
                     headers=csrf).status_code == 400
    with httpx.Client(base_url=url, timeout=30) as anonymous:
        login_page = anonymous.get("/login").text
        token = re.search(r'name="csrf" value="([^"]+)"', login_page).group(1)
        r = anonymous.post("/login", data={"csrf": token, "user": "u" * 100_000, "secret": "x"})
        assert r.status_code == 400 and "at most 64 characters" in r.text


def test_the_pages_have_a_favicon(start_web, context, shot):
    from playwright.sync_api import expect

    url, _ = start_web()
    page = context.new_page()
    page.goto(url)
    icon = page.locator("link[rel=icon]")
    expect(icon).to_have_attribute("href", "/static/favicon.svg")
    answer = page.request.get(url + "static/favicon.svg")  # public: the login page shows it too
    assert answer.status == 200 and answer.headers["content-type"].startswith("image/svg+xml")
    assert answer.body().startswith(b"<svg")
    shot(page, "login-page")
    page.set_content(f'<body style="background:#ddd"><img id="icon" src="{url}static/favicon.svg" width="64" '
                     f'height="64"><img src="{url}static/favicon.svg" width="16" height="16"></body>')
    expect(page.locator("#icon")).to_have_js_property("naturalWidth", 32)  # drawn: the SVG says 32 px
    shot(page, "favicon-64-and-16-px")
    log_in(page, url, SIGNER[0], SIGNER[1])
    expect(page.locator("link[rel=icon]")).to_have_attribute("href", "/static/favicon.svg")
