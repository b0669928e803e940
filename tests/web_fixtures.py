"""Helpers for the web node's tests: a logged-in client, an SR read back from a PACS, a browser."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from meshdcm.pacs import Pacs, find, retrieve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "web"


def login_csrf(client, secret: str, user: str = "") -> str:
    """Log ``client`` (httpx or TestClient) in; returns the session's CSRF token for the API."""
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = client.post("/login", data={"csrf": csrf, "user": user, "secret": secret}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return client.get("/api/me").json()["csrf"]


def find_srs(host: str, port: int, study_uid: str, dest: Path, ae_title: str = "MESHPACS") -> dict:
    """Every SR instance of the study in the PACS (C-FIND its SR series, C-GET them), by SOP Instance UID."""
    pacs = Pacs("check", ae_title=ae_title, host=host, port=port, retrieve="get", calling_ae="WEBTEST")
    q = Dataset()
    q.StudyInstanceUID = study_uid
    q.SeriesInstanceUID = ""
    q.Modality = "SR"
    out = {}
    for series in find(pacs, "SERIES", q):
        if str(series.get("Modality", "")) != "SR":
            continue
        retrieve(pacs, study_uid, dest, series_uid=str(series.SeriesInstanceUID))
        for path in sorted((dest / study_uid / str(series.SeriesInstanceUID)).glob("*.dcm")):
            ds = dcmread(path)
            out[str(ds.SOPInstanceUID)] = ds
    return out


def find_sr_text(host: str, port: int, study_uid: str, dest: Path, ae_title: str = "MESHPACS") -> list[str]:
    """The text (its TEXT items) of every SR of the study in the PACS."""
    return ["\n".join(str(item.TextValue) for item in sr.ContentSequence if getattr(item, "ValueType", "") == "TEXT")
            for sr in find_srs(host, port, study_uid, dest, ae_title).values()]


def web_answers(api) -> bool:
    """Whether the web node at ``api`` (an httpx.Client) serves its login page yet."""
    import httpx

    try:
        return api.get("/login").status_code == 200
    except httpx.TransportError:
        return False


def studies_found(api, csrf: dict, patient: str, wait: float = 10) -> int:
    """How many studies a search of ``patient`` in the web node finds (0 when it has not ended within ``wait`` s)."""
    from conftest import wait_until

    sid = api.post("/api/search", json={"patient": patient}, headers=csrf).json()["id"]
    try:
        state = wait_until(lambda: (s := api.get(f"/api/search/{sid}").json())["ends"] and s, wait, interval=0.1)
    except AssertionError:
        return 0
    return len(state["studies"])


def chromium_or_skip() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/install-system-packages.sh)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    return CHROMIUM


def keep_artifacts(folder: Path, name: str) -> Path:
    """Copy a test's screenshots to test-artifacts/web/NAME (git-ignored) so they outlive the tmp dir."""
    target = ARTIFACTS / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(folder, target)
    return target


#: Where browser tests keep their screenshots (git-ignored by default): $MESHDCM_ARTIFACTS, else artifacts/screenshots.
ARTIFACTS_ENV = "MESHDCM_ARTIFACTS"


def artifacts_dir() -> Path:
    return Path(os.environ.get(ARTIFACTS_ENV) or Path(__file__).resolve().parents[1] / "artifacts" / "screenshots")


class Screenshots:
    """A browser test's screenshots, kept after the run: ``<artifacts_dir()>/<test>/<NN>-<step>.png``."""

    def __init__(self, test: str):
        self.folder = artifacts_dir() / test
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.taken: list[Path] = []

    def __call__(self, page, step: str, *, full_page: bool = False, element=None) -> Path:
        path = self.folder / f"{len(self.taken) + 1:02d}-{step}.png"
        (element or page).screenshot(path=str(path), **({} if element else {"full_page": full_page}))
        self.taken.append(path)
        return path


#: A radiologist of the users file who may sign: user name, password, full name (DICOM PN), organisation.
SIGNER = ("jane", "jane's pass phrase", "Doe^Jane", "St. Elsewhere Radiology")


def users_file(path: Path, *extra: str) -> Path:
    """A users file with :data:`SIGNER` (and ``extra`` lines); returns its path."""
    from meshdcm.web.auth import hash_password

    user, password, full_name, organisation = SIGNER
    path.write_text(f"{user}:{hash_password(password)}:{full_name}:{organisation}\n" + "".join(f"{x}\n" for x in extra))
    return path
