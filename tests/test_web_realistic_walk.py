"""The radiologist's story, walked in a real headless browser (Debian's chromium driven by Playwright) against
`meshdcm up` with the realistic stroke studies (docs/studies.md, the default `embedded_size`): every node kind on
loopback, the embedded PACS serving MUSTERMANN^MAX's CT and MR and the control patient's MR.

Login through a deep link (to the CT, never opened: fetched) -> search the stroke patient (readable dates and
modalities; the results survive a reload) -> open the MR stroke study -> the anatomy (T2, FLAIR, DWI b1000, ADC)
at their own windows in four panes scrolled together by position, at the slice through the ischaemic core ->
the DSC by slice and time with the signal-time curve under the cursor and the AIF the perfusion node used ->
the perfusion maps (CBF, CBV, MTT, Tmax) at physiological windows, and Tmax over the FLAIR with opacity -> the
register node's series (T2, FLAIR, DWI and DSC registered to the 3D T1, its reformats) beside the T1 -> the NIfTI
renditions -> a report with the perfusion summary per tissue (clinically plausible numbers) -> signed once, a
second signature refused, an amendment that names its predecessor, shown amended in the patient's prior reports ->
a token login cannot sign -> logout ends the session server-side -> failed logins are throttled -> the monitor ->
an over-long search -> the favicon.

Where the truth of the study is needed (the slice through the core, a core voxel, a grey-matter voxel of the DSC)
it is read from the study set's ground truth (``truth/``). Screenshots of every step: ``$MESHDCM_ARTIFACTS``
(default ``artifacts/screenshots/``, git-ignored) ``/test_the_radiologists_story_on_the_realistic_stroke_study/``.
"""

from __future__ import annotations

import json
import re
import signal
import uuid
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from pydicom import dcmread

from conftest import wait_until
from ports import free_port
from web_fixtures import (CHROMIUM_ARGS, SIGNER, Screenshots, chromium_or_skip, login_csrf, studies_found, users_file,
                          web_answers)

pytestmark = pytest.mark.slow  # headless Chromium and every node kind (make test-fast leaves it out)

WAIT_MS = 60_000  # a loaded 2-core machine: waits end on the condition, not on a guess
#: The perfusion maps' windows (center, width) as the perfusion node writes them: 0-100 ml/100g/min, 0-8 ml/100g,
#: 0-15 s, 0-12 s (Tmax > 6 s, the penumbra threshold, in the middle).
MAP_WINDOWS = {"CBF": (50.0, 100.0), "CBV": (4.0, 8.0), "MTT": (7.5, 15.0), "Tmax": (6.0, 12.0)}
#: Per-tissue medians the report is offered, and the range a radiologist would believe (ml/100g/min, ml/100g, s):
#: normal grey matter CBF 40-80 and CBV 4-5, white matter about half; these medians include the stroke territory.
PLAUSIBLE = {"CBF GM median": (20, 100), "CBF WM median": (8, 50), "CBV GM median": (2, 6.5),
             "CBV WM median": (1, 4), "MTT GM median": (3, 10), "MTT WM median": (3, 10),
             "Tmax GM median": (0, 4), "Tmax hypoperfused median": (6, 15)}


# --- the mesh ------------------------------------------------------------------------------------------------------

@pytest.fixture
def up(mesh, tmp_path, realistic_studies):
    """`meshdcm up` with the realistic studies and a users file (jane may sign); ready once a search finds the
    stroke patient's two studies."""
    config = tmp_path / "up.toml"
    config.write_text(f'[nodes.web]\nusers_file = "{users_file(tmp_path / "users")}"\n')
    state = tmp_path / "state"
    proc = mesh.start("up", "--state", state, "--mesh", mesh.name, "--web-port", free_port(), "--config", config)
    out = proc.wait_for_output("stop with Ctrl-C", timeout=60)
    assert "embedded one, with the realistic stroke studies" in out
    url, token = re.search(r"web UI: (\S+)\s+\(login token: (\S+)\)", out).groups()
    with httpx.Client(base_url=url, timeout=30) as api:
        wait_until(lambda: web_answers(api), 60, interval=0.2, what="the web UI")
        csrf = {"X-CSRF-Token": login_csrf(api, token)}
        wait_until(lambda: studies_found(api, csrf, "MUSTERMANN^MAX") >= 2, 120, interval=0.5, what="the pacs node to answer searches")
    yield SimpleNamespace(url=url, token=token, web_data=state / "web",
                          studies=realistic_studies, proc=proc)
    assert proc.stop(signal.SIGINT, timeout=30) == 0






def test_the_radiologists_story_on_the_realistic_stroke_study(up):
    chromium = chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    shot = Screenshots("test_the_radiologists_story_on_the_realistic_stroke_study")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        expect.set_options(timeout=WAIT_MS)
        try:
            walk(browser, up, shot)
        finally:
            browser.close()


# --- what the walk needs to know of the study ------------------------------------------------------------------------

class Study:
    """The stroke patient's MR and CT as the study set made them: UIDs, and places from the ground truth."""

    def __init__(self, studies):
        entries = {e["study"] + ":" + e["patient"]: e for e in studies.manifest["studies"]}
        self.mr, self.ct = entries["mr:stroke"], entries["ct:stroke"]
        self.uid = {s["key"]: s["SeriesInstanceUID"] for s in self.mr["series"]}
        self.truth_dir = studies.truth_folder("stroke", "mr")
        self.truth = studies.truth("stroke", "mr")

    def mask(self, grid: str, name: str) -> np.ndarray:
        import nibabel as nib

        return np.asarray(nib.load(self.truth_dir / grid / f"{name}.nii.gz").dataobj) > 0  # (col, row, slice)

    def position(self, grid: str, k: int) -> float:
        """Slice ``k`` of a truth grid: its position along the axial normal (LPS z), as the viewer shows it."""
        return float((np.asarray(self.truth["grids"][grid]["affine_lps"]) @ [0, 0, k, 1])[2])

    def inner_voxel(self, mask: np.ndarray, k: int) -> tuple[int, int]:
        """(col, row) of slice ``k`` inside ``mask`` with its 5x5 neighbourhood inside too, nearest its centroid."""
        m = mask[:, :, k]
        inner = m.copy()
        for dc in range(-2, 3):
            for dr in range(-2, 3):
                inner &= np.roll(np.roll(m, dc, 0), dr, 1)
        cols, rows = np.nonzero(inner)
        assert cols.size, f"no inner voxel in slice {k}"
        i = int(np.argmin((cols - cols.mean()) ** 2 + (rows - rows.mean()) ** 2))
        return int(cols[i]), int(rows[i])


# --- the page ------------------------------------------------------------------------------------------------------

def series_info(page, url: str, uid: str) -> dict:
    return page.request.get(f"{url}api/series/{uid}/info").json()


def open_series(page, uid: str, pane: int = 0):
    """Click the series' card into ``pane``; returns the pane's canvas once its first image is drawn."""
    from playwright.sync_api import expect

    canvas = page.locator("#viewer-canvas" if pane == 0 else f"#viewer-canvas-{pane}")
    canvas.click()  # activates the pane (a click without a drag changes nothing)
    page.locator(f".series-card[data-series='{uid}']").click()
    expect(canvas).to_have_attribute("data-series", uid)
    expect(canvas).to_have_attribute("data-first-image-ms", re.compile(r"\d+"))
    return canvas


def window_of(canvas) -> tuple[float, float]:
    return float(canvas.get_attribute("data-center")), float(canvas.get_attribute("data-width"))


def go_to_slice(page, canvas, index: int) -> None:
    from playwright.sync_api import expect

    canvas.click()
    page.locator("#slice-slider").fill(str(index))
    expect(canvas).to_have_attribute("data-slice", str(index))


def hover_voxel(page, canvas, info: dict, col: int, row: int) -> None:
    """The mouse over voxel (col, row) of a pane at zoom 1 (the image fills the square pane)."""
    canvas.scroll_into_view_if_needed()  # the mouse reaches only what is on screen
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * (col + 0.5) / info["cols"],
                    box["y"] + box["height"] * (row + 0.5) / info["rows"])


def cursor_number(page, expect_text: str) -> float:
    from playwright.sync_api import expect

    expect(page.locator("#cursor-value")).to_contain_text(expect_text)
    return float(re.search(r"\) = (-?[\d.]+)", page.locator("#cursor-value").inner_text()).group(1))


def coloured_pixels(page, canvas_id: str) -> int:
    return page.evaluate("""(id) => { const c = document.getElementById(id);
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
      for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - d[i + 1]) > 30 || Math.abs(d[i + 1] - d[i + 2]) > 30) n++;
      return n; }""", canvas_id)


def csrf_of(page) -> str:
    return page.locator('meta[name="csrf-token"]').get_attribute("content")


def post(page, url: str, path: str, body: dict) -> tuple[int, dict]:
    """A POST from the page's own session (what a replayed request or a second tab sends)."""
    r = page.request.post(url.rstrip("/") + path, data=json.dumps(body),
                          headers={"X-CSRF-Token": csrf_of(page), "Content-Type": "application/json"})
    return r.status, r.json()


def saturated_fraction(page, url: str, uid: str, index: int, center: float, width: float) -> float:
    """The fraction of a slice's head voxels (above a twentieth of its 99.5th percentile) at or above the window's
    top: a window that whitens the brain has a large one."""
    info = series_info(page, url, uid)
    data = page.request.get(f"{url}api/series/{uid}/slices/{index}").body()
    values = np.frombuffer(data, "<f4" if info["dtype"] == "float32" else "<i2").astype(float)
    head = values[values > 0.05 * np.percentile(values, 99.5)]
    return float(np.mean(head >= center + width / 2))


# --- the walk --------------------------------------------------------------------------------------------------------

def walk(browser, up, shot) -> None:  # noqa: PLR0915 - one story, told in order
    from playwright.sync_api import expect

    url, study = up.url, Study(up.studies)
    mr, ct = study.mr["StudyInstanceUID"], study.ct["StudyInstanceUID"]
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    draft_puts: list[str] = []
    page.on("request", lambda r: draft_puts.append(r.url) if r.method == "PUT" and "/draft" in r.url else None)

    # 1. a deep link to the CT study, kept through the login; the study, never opened, is fetched
    page.goto(f"{url}#/study/{ct}")
    expect(page).to_have_url(re.compile(r"/login#/study/"))
    expect(page.locator("link[rel=icon]")).to_have_attribute("href", "/static/favicon.svg")
    page.fill("#login-user", SIGNER[0])
    page.fill("#login-secret", SIGNER[1])
    shot(page, "login-with-a-deep-link-to-the-ct")
    page.click("#login-go")
    expect(page).to_have_url(f"{url}#/study/{ct}")
    expect(page.locator("#user")).to_have_text("Jane Doe (jane)")
    expect(page.locator("#study-sub")).to_contain_text(ct)
    expect(page.locator("#study-state")).not_to_have_text(re.compile("^idle"))
    expect(page.locator("#study-state")).to_contain_text("complete", timeout=120_000)
    expect(page.locator("#study-title")).to_contain_text("MUSTERMANN MAX (MESHDCM-1001) — CT HEAD WO CONTRAST "
                                                         "2024-03-14 10:42")
    expect(page.locator("#study-sub")).to_contain_text("Accession ACC24031407 · CT ·")
    expect(page.locator(".series-card[data-kind=original][data-complete=true]")).to_have_count(2)
    shot(page, "deep-linked-ct-fetched", full_page=True)

    # 2. search the stroke patient: readable dates and modalities; the results survive a reload
    page.click("#nav-search")
    page.fill("#search-patient", "MUSTERMANN^MAX")
    page.click("#search-go")
    rows = page.locator("#results tbody tr")
    expect(rows).to_have_count(2)
    mr_row = page.locator("#results tbody tr", has_text="MR HEAD STROKE PROTOCOL")
    expect(mr_row.locator("td").nth(0)).to_have_text("MUSTERMANN MAX")
    expect(mr_row.locator("td").nth(2)).to_have_text("2024-03-14 10:58")
    # MR, and once the derived series are archived (the perfusion node's SEG, SR, ...): "MR, OT, SEG, SR"
    expect(mr_row.locator("td").nth(3)).to_have_text(re.compile(r"^MR(, [A-Z]{2,3})*$"))
    expect(mr_row.locator("td").nth(5)).to_have_text("ACC24031411")
    images = int(mr_row.locator("td").nth(6).inner_text())
    assert images >= sum(s["instances"] for s in study.mr["series"]), images
    expect(page.locator("#results")).not_to_contain_text("20240314")
    expect(page.locator("#results")).not_to_contain_text("\\")
    shot(page, "search-the-stroke-patient")
    page.reload()
    expect(page.locator("#search-patient")).to_have_value("MUSTERMANN^MAX")
    expect(rows).to_have_count(2)
    expect(mr_row).to_have_count(1)
    shot(page, "search-after-reload")

    # 3. open the MR stroke study: the series arrive; the analysis nodes' series follow, marked as derived
    mr_row.locator(".open-study").click()
    expect(page).to_have_url(f"{url}#/study/{mr}")
    expect(page.locator("#study-state")).to_contain_text("complete", timeout=120_000)
    expect(page.locator(".series-card[data-kind=original][data-complete=true] img")).to_have_count(5)
    for key in ("t1", "t2", "flair", "dwi", "adc", "dsc"):
        expect(page.locator(f".series-card[data-series='{study.uid[key]}'][data-complete=true]")).to_have_count(1)
    maps = {name: page.locator(".series-card[data-kind=map]", has=page.locator(
        ".provenance", has_text=re.compile(f"^{name} map of ep2d_perf$"))) for name in MAP_WINDOWS}
    for card in maps.values():
        expect(card).to_have_count(1, timeout=180_000)
        expect(card).to_contain_text("by perfusion")
    # the scanner's ADC is derived, but by the modality: its card does not name the pacs node as its maker
    adc_card = page.locator(f".series-card[data-series='{study.uid['adc']}']")
    expect(adc_card).to_contain_text("from PACS, derived at the modality")
    expect(adc_card).not_to_contain_text("by pacs")
    registered = page.locator(".series-card[data-kind=registration]")
    expect(registered).to_have_count(4, timeout=240_000)  # T2, FLAIR, DWI and DSC onto the 3D T1
    shot(page, "mr-study-with-derived-series", full_page=True)
    state = page.request.get(f"{url}api/studies/{mr}").json()
    uid_of = {s["provenance"] or s["description"]: s["uid"] for s in state["series"]}
    map_uid = {name: uid_of[f"{name} map of ep2d_perf"] for name in MAP_WINDOWS}

    # 4. the anatomy: T2, FLAIR, DWI b1000 and ADC side by side at their own windows, scrolled together by position
    # to the slice through the ischaemic core (from the truth); the DWI is bright and the ADC dark there
    page.click(".pane-layout[data-layout='4']")
    panes = {key: open_series(page, study.uid[key], pane) for pane, key in enumerate(("t2", "flair", "dwi", "adc"))}
    infos = {key: series_info(page, url, study.uid[key]) for key in panes}
    for key, canvas in panes.items():
        own = dcmread(next(up.studies.series("stroke", "mr", key).glob("*.dcm")), stop_before_pixels=True)
        assert window_of(canvas) == (float(own.WindowCenter), float(own.WindowWidth)), key
        assert infos[key]["window_from"] == "series"
    canvas = panes["t2"]
    canvas.click()
    names = page.locator(".preset").evaluate_all("bs => bs.map(b => b.dataset.preset)")
    assert names == ["series", "auto", "T1", "T2/FLAIR", "DWI"], names  # MR presets
    pane = page.locator(".viewport[data-pane='0']")
    assert [pane.locator(f".orient-{s}").inner_text() for s in ("left", "right", "top", "bottom")] == ["R", "L", "A", "P"]
    core = study.mask("dwi", "core")
    k = int(core.sum(axis=(0, 1)).argmax())
    at = study.position("dwi", k)
    index = min(range(infos["t2"]["slices"]), key=lambda i: abs(infos["t2"]["positions"][i] - at))
    go_to_slice(page, panes["t2"], index)
    for c in panes.values():  # linked by position: every pane at the core's slice
        expect(c).to_have_attribute("data-position", f"{at:.1f}")
    expect(pane.locator(".corner-bl")).to_contain_text(f"Pos {at:.1f} mm")
    panes["dwi"].click()
    page.keyboard.press("ArrowRight")  # the DWI's second volume: b1000
    expect(panes["dwi"]).to_have_attribute("data-phase", "1")
    page.click(".preset[data-preset=DWI]")  # the low end lifted: restricted diffusion stands out
    assert list(window_of(panes["dwi"])) == infos["dwi"]["presets"]["DWI"]
    col, row = study.inner_voxel(core, k)
    hover_voxel(page, panes["adc"], infos["adc"], col, row)
    adc_core = cursor_number(page, f"({col}, {row}) =")
    assert 350 < adc_core < 650, adc_core  # restricted diffusion: 520 (grey) / 468 (white) x 10^-6 mm²/s
    shot(page, "anatomy-t2-flair-dwi-adc-at-the-core", element=page.locator("#viewer"))
    panes["t2"].click()
    page.keyboard.press("ArrowDown")
    for c in panes.values():
        expect(c).to_have_attribute("data-position", f"{infos['t2']['positions'][index + 1]:.1f}")

    # zoom, pan, scale bar on the FLAIR
    panes["flair"].click()
    page.click("#zoom-in")
    page.click("#zoom-in")
    expect(panes["flair"]).to_have_attribute("data-zoom", "1.563")
    box = panes["flair"].bounding_box()
    page.keyboard.down("Shift")
    page.mouse.move(box["x"] + 150, box["y"] + 150)
    page.mouse.down()
    page.mouse.move(box["x"] + 190, box["y"] + 170, steps=4)
    page.mouse.up()
    page.keyboard.up("Shift")
    expect(panes["flair"]).not_to_have_attribute("data-pan", "0,0")
    flair_pane = page.locator(".viewport[data-pane='1']")
    bar = flair_pane.locator(".scale-bar")
    mm = float(bar.get_attribute("data-mm"))
    # 256 columns of 0.9 mm in the pane, zoomed 1.5625x: the bar is mm * pixels-per-mm wide
    px_per_mm = box["width"] / (infos["flair"]["cols"] * infos["flair"]["spacing"][1]) * 1.5625
    assert abs(float(bar.get_attribute("data-px")) - mm * px_per_mm) < 1.0
    expect(flair_pane.locator(".scale-label")).to_have_text(f"{mm:g} mm")
    shot(page, "flair-zoomed-and-panned-with-scale", element=page.locator("#viewer"))
    page.click("#zoom-fit")

    # 5. the DSC: slices and time points apart, the curve of a grey-matter voxel under the cursor, the AIF
    page.click(".pane-layout[data-layout='1']")
    dsc_uid = study.uid["dsc"]
    dsc = open_series(page, dsc_uid)
    dsc_info = series_info(page, url, dsc_uid)
    assert (dsc_info["slices"], dsc_info["phases"], dsc_info["phase_kind"]) == (20, 60, "time")
    expect(page.locator("#phase-tools")).to_be_visible()
    expect(page.locator("#slice-slider")).to_have_attribute("max", "19")
    expect(page.locator("#phase-slider")).to_have_attribute("max", "59")
    start = int(dsc.get_attribute("data-slice"))
    peak = int(np.argmin(np.abs(np.asarray(dsc_info["times"]) - 19.5)))  # the arterial bolus peaks 19.5 s in
    for _ in range(peak):
        page.keyboard.press("ArrowRight")
    expect(dsc).to_have_attribute("data-phase", str(peak))
    expect(dsc).to_have_attribute("data-slice", str(start))  # time moved, the slice stayed
    page.keyboard.press("ArrowUp")
    expect(dsc).to_have_attribute("data-slice", str(start - 1))
    expect(dsc).to_have_attribute("data-phase", str(peak))  # the slice moved, the time stayed
    expect(page.locator("#phase-label")).to_have_text(f"time {peak + 1}/60 · {dsc_info['times'][peak]:.1f} s")
    gm = study.mask("dsc", "gm") & ~study.mask("dsc", "core") & ~study.mask("dsc", "penumbra") & \
        ~study.mask("dsc", "vessel")
    z = start - 1
    zk = min(range(20), key=lambda i: abs(study.position("dsc", i) - dsc_info["positions"][z]))
    col, row = study.inner_voxel(gm, zk) if gm[:, :, zk].sum() > 200 else (64, 64)
    hover_voxel(page, dsc, dsc_info, col, row)
    plot = page.locator("#curve-plot")
    expect(plot).to_have_attribute("data-points", "60")
    expect(page.locator("#curve-legend")).to_contain_text(f"voxel ({col}, {row}) of slice {z + 1}")
    curve = page.request.get(f"{url}api/series/{dsc_uid}/curve?slice={z}&row={row}&col={col}").json()["values"]
    baseline = float(np.mean(curve[:8]))
    assert min(curve) < 0.85 * baseline, (baseline, min(curve))  # grey matter loses about a third at the peak
    aif = page.request.get(f"{url}api/series/{dsc_uid}/aif").json()["aif"]
    assert aif and aif["node"] == "perfusion" and aif["here"]["voxels"]
    expect(plot).to_have_attribute("data-aif", str(len(aif["here"]["voxels"])))
    expect(page.locator("#curve-legend")).to_contain_text("AIF of the perfusion maps")
    signal_ = np.asarray(aif["here"]["signal"])
    assert signal_.min() < 0.5 * signal_[:8].mean()  # an artery: the signal collapses with the bolus
    shot(page, "dsc-at-the-peak-with-the-curve-and-the-aif", element=page.locator("#viewer"))
    page.locator("#phase-slider").fill("0")
    aif_slice = aif["here"]["voxels"][0][0]
    page.locator("#slice-slider").fill(str(aif_slice))
    expect(dsc).to_have_attribute("data-slice", str(aif_slice))
    shot(page, "dsc-baseline-at-the-aif-voxels", element=page.locator("#viewer"))

    # 6. the perfusion maps at physiological windows, side by side at the core's level
    page.click(".pane-layout[data-layout='4']")
    map_panes = {name: open_series(page, map_uid[name], pane) for pane, name in enumerate(MAP_WINDOWS)}
    for name, canvas in map_panes.items():
        assert window_of(canvas) == MAP_WINDOWS[name], name
    k = int(study.mask("dsc", "core").sum(axis=(0, 1)).argmax())
    cbf_info = series_info(page, url, map_uid["CBF"])
    go_to_slice(page, map_panes["CBF"], min(range(20), key=lambda i: abs(cbf_info["positions"][i] -
                                                                          study.position("dsc", k))))
    map_panes["MTT"].click()
    expect(page.locator("#legend")).to_be_visible()
    expect(page.locator("#legend-lo")).to_have_text("0.00")
    expect(page.locator("#legend-hi")).to_have_text("15.00 s")
    shot(page, "cbf-cbv-mtt-tmax-at-the-core", element=page.locator("#viewer"))

    # a map over the anatomy: Tmax over the FLAIR, resampled by position, with opacity
    page.click(".pane-layout[data-layout='1']")
    flair = open_series(page, study.uid["flair"])
    go_to_slice(page, flair, index)
    bare = coloured_pixels(page, "viewer-canvas")
    page.select_option("#overlay-series", map_uid["Tmax"])
    expect(flair).to_have_attribute("data-overlay", map_uid["Tmax"])
    wait_until(lambda: coloured_pixels(page, "viewer-canvas") > bare + 5000, 30, what="Tmax drawn over the FLAIR")
    expect(page.locator("#legend-hi")).to_have_text("12.00 s")
    col, row = study.inner_voxel(core, study.mask("dwi", "core").sum(axis=(0, 1)).argmax())
    hover_voxel(page, flair, infos["flair"], int(col * 256 / 192), int(row * 256 / 192))
    expect(page.locator("#cursor-value")).to_contain_text("Tmax")
    tmax_core = float(re.search(r"Tmax (-?[\d.]+) s", page.locator("#cursor-value").inner_text()).group(1))
    assert tmax_core > 6, tmax_core  # the core is beyond the penumbra threshold
    shot(page, "tmax-over-the-flair-opacity-50", element=page.locator("#viewer"))
    page.locator("#overlay-opacity").fill("0")
    wait_until(lambda: coloured_pixels(page, "viewer-canvas") == bare, 10, what="opacity 0: the FLAIR alone")
    page.locator("#overlay-opacity").fill("70")
    page.select_option("#overlay-series", "")

    # 7. the register node's series: registered to the 3D T1, opened beside it and linked by position
    expect(page.locator(".series-card[data-kind=reformat]")).to_have_count(2)
    # T2, FLAIR, the scanner's ADC, the DSC's first frame, and the DWI once per b-value (b0, b1000)
    expect(registered).to_have_count(6)
    for desc, count in (("t2_tse_tra_p2_5mm", 1), ("t2_tirm_tra_dark-fluid_5mm", 1), ("ep2d_perf", 1),
                        ("ep2d_diff_3scan_trace_p2_ADC", 1), ("ep2d_diff_3scan_trace_p2(?!_ADC)", 2)):
        expect(registered.filter(has_text=re.compile(f"registered to t1_mprage_sag_p2_iso, from {desc}"))
               ).to_have_count(count)
    flair_reg = uid_of["registered to t1_mprage_sag_p2_iso, from t2_tirm_tra_dark-fluid_5mm"]
    page.click(".pane-layout[data-layout='2']")
    t1 = open_series(page, study.uid["t1"], 0)
    t1_pane = page.locator(".viewport[data-pane='0']")
    assert [t1_pane.locator(f".orient-{s}").inner_text() for s in ("left", "right", "top", "bottom")] == \
        ["A", "P", "H", "F"]  # sagittal
    assert window_of(t1) == (415.0, 830.0)  # its own window
    reg = open_series(page, flair_reg, 1)
    expect(page.locator("#viewer-title")).to_contain_text("registered to t1_mprage_sag_p2_iso")
    t1.click()
    start = int(t1.get_attribute("data-slice"))
    for _ in range(30):  # into the left hemisphere, where the stroke is
        page.keyboard.press("ArrowDown")
    expect(t1).to_have_attribute("data-slice", str(start + 30))
    expect(reg).to_have_attribute("data-position", t1.get_attribute("data-position"))
    c, w = window_of(reg)
    slice_ = int(reg.get_attribute("data-slice"))
    assert saturated_fraction(page, url, flair_reg, slice_, c, w) < 0.05, (c, w)  # the brain is not whitened
    shot(page, "registered-flair-beside-the-t1", element=page.locator("#viewer"))

    # the NIfTI renditions, listed as such
    renditions = page.locator(".series-card[data-kind=rendition]")
    expect(renditions).to_have_count(5)
    expect(renditions.filter(has_text="NIfTI rendition of ep2d_perf")).to_have_count(1)

    # the stroke analysis' SR is a document: its card says so, and where its text is, rather than failing to load
    # (one, or two when the DSC came before the ADC: the rCBF-core SR and the ADC-core SR that supersedes it)
    sr_cards = page.locator(".series-card[data-kind=document]", has_text="Stroke perfusion measurements")
    sr_card = sr_cards.first
    expect(sr_card).to_contain_text("document by perfusion")
    # the older of two is tagged as superseded, so that two alike cards do not read as two results
    superseded = page.locator(".series-card[data-kind=document][data-superseded=true]")
    expect(superseded).to_have_count(sr_cards.count() - 1, timeout=30_000)
    sr_card.click()
    expect(page.locator("#viewer-title")).to_contain_text("a report (SR), not images")

    # why series waited: every study of the set has its reference, but a series stored before the 3D T1 was held
    # back by the register node, which said why (waiting.series: the page's note while it waited); none is left
    expect(page.locator("#study-notes li")).to_have_count(0)
    events = page.request.get(f"{url}api/studies/{mr}/timeline").json()["events"]
    waited = {e["series"] for e in events if e["topic"] == "waiting.series" and e["node"] == "register"}
    stored = [e["series"] for e in events if e["topic"] == "stored.series" and e["node"] == "pacs"]
    before_t1 = set(stored[:stored.index(study.uid["t1"])])
    moving = {study.uid[key] for key in ("t2", "flair", "dwi", "adc", "dsc")}  # the scanner's ADC is registered too
    assert before_t1 & moving == waited, (before_t1, waited)
    page.click("#show-timeline")
    if waited:
        expect(page.locator("#timeline tbody tr", has_text="waiting.series").first).to_be_visible()
    expect(page.locator("#timeline tbody tr", has_text="get.study")).to_have_count(1)
    shot(page, "registrations-renditions-and-the-timeline", full_page=True)
    page.click("#show-timeline")

    # 8. the report: nothing saved before typing; the perfusion summary per tissue, with plausible numbers
    expect(page.locator("#report-protocol")).to_have_value(re.compile("ep2d_perf"))
    expect(page.locator("#draft-status")).to_have_text("new report")
    assert draft_puts == [], draft_puts  # no autosave before typing
    measures = page.locator("#measurements .measure")
    expect(measures.filter(has_text=re.compile(r"^Insert\s+CBF GM median:"))).to_have_count(1)
    # one figure for the hypoperfused volume: the stroke analysis' (AI findings), not also the map summary's region
    expect(page.locator("#ai-result")).to_contain_text("Hypoperfusion Tmax > 6 s", timeout=60_000)
    expect(measures.filter(has_text="hypoperfused volume")).to_have_count(0)
    tmax6 = page.locator("#ai-result tr", has_text="Hypoperfusion Tmax > 6 s").locator("td.num").inner_text()
    assert 0.9 * 138.1 <= float(tmax6) <= 1.1 * 138.1, tmax6  # core + penumbra of the truth, ml
    shown = {}
    for text in measures.all_inner_texts():
        # as a reader quotes them: one or two decimals; a ratio without the unit "1"
        found = re.match(r"Insert\s+(.+?): (-?\d+\.\d\d?)(?: (\S+))?\n", text)
        assert found and found.group(3) != "1", text
        shown[found.group(1)] = float(found.group(2))
    for label, (lo, hi) in PLAUSIBLE.items():
        assert lo <= shown[label] <= hi, (label, shown[label])
    assert shown["CBF GM median"] > shown["CBF WM median"] and shown["CBV GM median"] > shown["CBV WM median"]
    page.locator("#measurements").scroll_into_view_if_needed()
    shot(page, "perfusion-summary-offered-for-the-report", element=page.locator("#report"))
    for label in ("Tmax hypoperfused median", "CBV GM median", "CBF GM median"):
        page.locator(".measure", has_text=re.compile(rf"^Insert\s+{re.escape(label)}:")).locator(".insert-measurement").click()
    expect(page.locator("#report-findings")).to_have_value(re.compile(r"Tmax hypoperfused median: [\d.]+ s \("))
    expect(page.locator("#report-findings")).to_have_value(re.compile(r"(^|\n)CBF GM median: [\d.]+ ml/100g/min"))
    expect(page.locator("#report-findings")).not_to_have_value(re.compile("rCBF"))  # the label, not one containing it
    page.fill("#report-clinical", "Akute Hemiparese rechts, Aphasie")
    impression = f"Akuter Infarkt im linken Mediastromgebiet mit Penumbra (Mismatch) {uuid.uuid4().hex[:6]}"
    page.locator("#report-impression").press_sequentially(impression, delay=2)
    expect(page.locator("#draft-status")).to_contain_text("draft saved")
    assert draft_puts

    # 9. sign; a second signature is refused; the correction is an amendment naming its predecessor
    page.click("#sign")
    expect(page.locator("#report")).to_have_attribute("data-state", "signed")
    expect(page.locator("#signed-by")).to_contain_text(f"Signed by Jane Doe ({SIGNER[3]})")
    expect(page.locator("#sign")).to_be_disabled()
    expect(page.locator("#sign-status [data-state=stored]")).to_contain_text("stored in PACS")
    shot(page, "signed", element=page.locator("#report"))
    status, answer = post(page, url, f"/api/studies/{mr}/sign", {"impression": impression})
    assert status == 409 and "a signed report is final" in answer["error"]
    [first] = [dcmread(p) for p in (up.web_data / "reports" / mr).glob("*/*.dcm")]
    observer = first.VerifyingObserverSequence[0]
    assert (str(observer.VerifyingObserverName), observer.VerifyingOrganization) == (SIGNER[2], SIGNER[3])
    assert impression in "\n".join(str(i.TextValue) for i in first.ContentSequence if i.ValueType == "TEXT")

    page.click("#amend")
    expect(page.locator("#report")).to_have_attribute("data-state", "amending")
    page.locator("#report-impression").press("End")
    page.locator("#report-impression").press_sequentially(" Keine Blutung.", delay=2)
    expect(page.locator("#draft-status")).to_contain_text("draft saved")
    page.click("#sign")
    expect(page.locator("#report")).to_have_attribute("data-state", "amended")
    expect(page.locator("#signed-by")).to_contain_text("replaces report")
    expect(page.locator("#sign-status [data-status=superseded]")).to_have_count(1)
    expect(page.locator("#sign-status [data-status=amended][data-state=stored]")).to_have_count(1)
    shot(page, "amended", element=page.locator("#report"))
    reports = [dcmread(p) for p in (up.web_data / "reports" / mr).glob("*/*.dcm")]
    [amendment] = [sr for sr in reports if sr.SOPInstanceUID != first.SOPInstanceUID]
    ref = amendment.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == first.SOPInstanceUID

    # the patient's CT lists both as prior reports: the amended one, and the one it superseded
    page.goto(f"{url}#/study/{ct}")
    expect(page.locator("#priors .prior")).to_have_count(2)
    expect(page.locator("#measurements")).to_have_text("none yet")  # the MR's perfusion values are not the CT's
    expect(page.locator(".insert-measurement")).to_have_count(0)
    expect(page.locator(f"#priors [data-sop='{first.SOPInstanceUID}']")).to_have_attribute("data-status", "superseded")
    expect(page.locator(f"#priors [data-sop='{amendment.SOPInstanceUID}']")).to_have_attribute("data-status",
                                                                                             "amended")
    page.locator("#priors").scroll_into_view_if_needed()
    shot(page, "ct-priors-amended-and-superseded", element=page.locator("#report"))

    # 10. a token login cannot sign
    other = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        token_page = other.new_page()
        token_page.goto(f"{url}#/study/{ct}")
        token_page.fill("#login-secret", up.token)
        token_page.click("#login-go")
        expect(token_page.locator("#user")).to_have_text("radiologist")
        expect(token_page.locator("#cannot-sign")).to_contain_text("Sign in as a named user")
        expect(token_page.locator("#sign")).to_be_disabled()
        shot(token_page, "token-login-cannot-sign", element=token_page.locator("#report"))
        status, answer = post(token_page, url, f"/api/studies/{ct}/sign", {"impression": "ok"})
        assert status == 403 and "sign in as a named user" in answer["error"].lower()
    finally:
        other.close()

    # 11. the monitor lists the web node itself and names dead-letter traffic; the analysis nodes are there
    page.click("#nav-monitor")
    me = page.locator("#nodes tbody tr[data-self=true]")
    expect(me).to_contain_text("(this node)")
    expect(me.locator("td").nth(1)).to_have_text("web")
    for kind in ("pacs", "perfusion", "register", "convert", "index", "monitor"):
        expect(page.locator("#nodes tbody tr", has=page.locator("td:nth-child(2)", has_text=kind)).first).to_be_visible()
    page.click("#dead-refresh")
    expect(page.locator("#dead-status")).to_contain_text("answered")
    expect(page.locator("#rates")).to_contain_text("dead-letter queries:")
    expect(page.locator("#rates")).not_to_contain_text(re.compile(r"(^|, )dead: "))
    shot(page, "monitor", full_page=True)

    # 12. an over-long search is refused with a clear error
    page.click("#nav-search")
    page.fill("#search-patient", "X" * 10_000)
    page.click("#search-go")
    expect(page.locator("#search-status")).to_have_class(re.compile("error"))
    expect(page.locator("#search-status")).to_contain_text("the patient name is 10,000 characters long; at most 64")
    shot(page, "search-too-long")

    # 13. logout ends the session on the server: the cookie, replayed, is refused
    cookies = context.cookies()
    page.click("#logout")
    expect(page).to_have_url(re.compile(r"/login$"))
    replay = browser.new_context()
    try:
        replay.add_cookies(cookies)
        again = replay.new_page()
        again.goto(url)
        expect(again).to_have_url(re.compile(r"/login$"))
        assert again.request.get(f"{url}api/me").status == 401
        shot(again, "replayed-cookie-after-logout-refused")
    finally:
        replay.close()

    # 14. failed logins are throttled: five are checked, the sixth is locked (429, Retry-After), and the page says so
    with httpx.Client(base_url=url, timeout=30) as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
        statuses = [client.post("/login", data={"csrf": csrf, "user": "mallory", "secret": "guess"},
                                follow_redirects=False) for _ in range(6)]
    assert [r.status_code for r in statuses] == [401] * 5 + [429], [r.status_code for r in statuses]
    assert int(statuses[-1].headers["retry-after"]) >= 1
    page.fill("#login-user", "mallory")
    page.fill("#login-secret", "guess")
    page.click("#login-go")
    expect(page.locator("#login-error")).to_contain_text("Too many failed logins")
    shot(page, "failed-logins-throttled")
    favicon = page.request.get(f"{url}static/favicon.svg")
    assert favicon.status == 200 and favicon.headers["content-type"].startswith("image/svg+xml")
    context.close()
    assert not errors, errors  # no script error on the page
    assert len(shot.taken) >= 20
    Path(shot.folder / "walk.txt").write_text("\n".join(p.name for p in shot.taken) + "\n")
