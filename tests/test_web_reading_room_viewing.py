"""The viewer at reading-room standard, in a real headless browser (Debian's chromium driven by Playwright) against
the web node in a real mesh with the perfusion, convert and register nodes. An archive node of the test announces
three studies (``stored.series`` with ``file://`` URIs, as a pacs node does): the synthetic MR brain (T1, T2, FLAIR,
DWI, a DSC of 3 slices x 50 time points in one stack of 150 images, and a T2 copy without a window of its own), the
synthetic head CT, and a study with a thin 3D T1 (the register node's reference) and a T2.

One test per point of the issue; each keeps screenshots of its steps (tests/web_fixtures.py ``Screenshots``:
``$MESHDCM_ARTIFACTS/<test>/NN-step.png``, default ``artifacts/screenshots/``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from conftest import Mesh, wait_until
from meshdcm import Node, synthetic
from meshdcm.config import NodeConfig
from meshdcm.imaging import testdata
from web_fixtures import CHROMIUM_ARGS, Screenshots, chromium_or_skip, login_csrf

TOKEN = "viewing-test-token"  # noqa: S105 - a test's own login token
REG_STUDY = "1.2.826.0.1.3680043.10.77.20"
WAIT = 8_000  # ms: a loaded 2-core machine; waits end on the condition, not on a guess


def _without_window(src: Path, dest: Path) -> Path:
    """The T2 again as another series, without WindowCenter/Width: it must open at a window from its histogram."""
    dest.mkdir(parents=True)
    series_uid = generate_uid()
    for path in sorted(src.iterdir()):
        ds = dcmread(path)
        del ds.WindowCenter, ds.WindowWidth
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, 13, "t2_tse_tra no window"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(dest / path.name, enforce_file_format=True)
    return dest


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    """The mesh, the web node, the three studies announced, and a logged-in browser."""
    chromium = chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    import nodes.web as web

    tmp = tmp_path_factory.mktemp("reading-room")
    mesh = Mesh(tmp)
    studies = tmp / "studies"
    synthetic.write_study(synthetic.mr_brain(seed=5, size="small"), studies / "mr")
    synthetic.write_study(synthetic.head_ct(seed=5, size="small"), studies / "ct")
    _without_window(studies / "mr" / "003", studies / "mr" / "013")
    reg = studies / "reg"
    testdata.write_volume_series(reg / "t1", lambda p: testdata.phantom(p, radius=25.0, contrast="t1"),
                                 testdata.grid((36, 36, 30), (1.5, 1.5, 1.5)), description="T1 3D", seed=1,
                                 study_uid=REG_STUDY)
    testdata.write_volume_series(reg / "t2", testdata.moved_phantom(testdata.rigid_matrix((4.0, 0.0, -3.0),
                                                                                           (2.0, -3.0, 1.0)),
                                                                    radius=25.0, contrast="t2"),
                                 testdata.grid((18, 18, 12), (3.0, 3.0, 4.0)), description="T2 axial", seed=2,
                                 study_uid=REG_STUDY, series_number=2)
    for kind in ("perfusion", "convert", "register"):
        mesh.start("node", kind, "--config", mesh.config(kind, work=str(tmp / kind)))
    node = web.create(NodeConfig(name="web", kind="web", mesh=mesh.name,
                                 options={"port": 0, "token": TOKEN, "data": str(tmp / "web")}))
    node.start()
    archive = Node("archive", mesh=mesh.name)
    archive.start()
    pw = None
    try:
        wait_until(lambda: {"perfusion", "convert", "register", "web"} <= {p["kind"] for p in archive.peers}, 60,
                   what="the perfusion, convert, register and web nodes")
        assert archive.wait_for_subscribers("stored.series", 30)
        # and the web node has met the analysis nodes: what a node publishes before a receiver's first contact is
        # not that receiver's (docs/delivery.md), and the convert node renders within a second of the announcements
        # (a loaded run lost every rendition to the web node so)
        wait_until(lambda: {"perfusion", "convert", "register"} <= {p["kind"] for p in node.peers}, 60,
                   what="the web node to meet the perfusion, convert and register nodes")
        folders = {}
        # the reg study's T2 first: it waits for its reference (the thin T1), which comes next
        for folder in [*sorted((studies / "mr").iterdir()), studies / "ct" / "002", reg / "t2", reg / "t1"]:
            files = sorted(folder.iterdir())
            header = dcmread(files[0], stop_before_pixels=True)
            archive.publish("stored.series", header, uris=[folder.as_uri()], meta={"instances": len(files),
                                                                                  "complete": True})
            folders[str(header.SeriesInstanceUID)] = folder
        client = httpx.Client(base_url=node.extra["web"], timeout=30)
        login_csrf(client, TOKEN)
        first = lambda folder: dcmread(sorted(folder.iterdir())[0], stop_before_pixels=True)  # noqa: E731
        mr = first(studies / "mr" / "003")
        pw = sync_playwright().start()
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        context.set_default_timeout(WAIT)
        expect.set_options(timeout=WAIT)
        page = context.new_page()
        page.goto(node.extra["web"])
        page.fill("#login-secret", TOKEN)
        page.click("#login-go")
        expect(page.locator("#user")).to_have_text("radiologist")
        page.close()
        yield SimpleNamespace(mesh=mesh, node=node, client=client, context=context, expect=expect, tmp=tmp,
                              url=node.extra["web"], folders=folders, mr_study=str(mr.StudyInstanceUID),
                              ct_study=str(first(studies / "ct" / "002").StudyInstanceUID), reg_study=REG_STUDY,
                              uid={name: str(first(f).SeriesInstanceUID) for name, f in [
                                  ("t1", studies / "mr" / "002"), ("t2", studies / "mr" / "003"),
                                  ("flair", studies / "mr" / "004"), ("dwi", studies / "mr" / "005"),
                                  ("dsc", studies / "mr" / "006"), ("t2_nowindow", studies / "mr" / "013"),
                                  ("ct", studies / "ct" / "002"), ("reg_t1", reg / "t1"), ("reg_t2", reg / "t2")]})
    except BaseException:
        mesh.show_logs()
        raise
    finally:
        if pw is not None:
            pw.stop()
        archive.stop()
        node.stop()
        mesh.close()


@pytest.fixture
def page(room, request):
    page = room.context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:  # what the page showed when it failed, and what the nodes said
        Screenshots(f"{request.node.name}-failed")(page, "page", full_page=True)
        room.mesh.show_logs()
    page.close()
    assert not errors, errors  # no script error on the page


def study_page(room, page, study: str):
    page.goto(f"{room.url}#/study/{study}")
    room.expect(page.locator("#study-title")).not_to_be_empty()


def open_series(room, page, uid: str, pane: int = 0):
    """Click the series' card into ``pane``; returns the pane's canvas once its first image is drawn."""
    canvas = page.locator("#viewer-canvas" if pane == 0 else f"#viewer-canvas-{pane}")
    canvas.click()  # activates the pane (a click without a drag changes nothing)
    page.locator(f".series-card[data-series='{uid}']").click()
    room.expect(canvas).to_have_attribute("data-series", uid)
    room.expect(canvas).to_have_attribute("data-first-image-ms", re.compile(r"\d+"))
    return canvas


def study_state(room, study: str) -> dict:
    return room.client.get(f"/api/studies/{study}").json()


def wait_for_maps(room) -> list[dict]:
    return wait_until(lambda: len(m := [s for s in study_state(room, room.mr_study)["series"] if s["map"]]) >= 5
                      and m, 120, interval=0.5, what="the perfusion maps")


def slice_values(room, uid: str, index: int) -> np.ndarray:
    info = room.client.get(f"/api/series/{uid}/info").json()
    data = room.client.get(f"/api/series/{uid}/slices/{index}").content
    return np.frombuffer(data, "<f4" if info["dtype"] == "float32" else "<i2").reshape(info["rows"], info["cols"])


def window_of(canvas) -> tuple[float, float]:
    return float(canvas.get_attribute("data-center")), float(canvas.get_attribute("data-width"))


# --- 1. windows and presets ----------------------------------------------------------------------------------------

def test_mr_opens_at_the_series_window_and_offers_mr_and_ct_presets(room, page):
    """MR opened every series at C 600 / W 1200 (T2 CSF white) and had no presets: now each series opens at its own
    window (else one from its histogram), MR has auto/T1/T2-FLAIR/DWI presets, CT brain/subdural/stroke/bone."""
    shot = Screenshots("test_mr_opens_at_the_series_window_and_offers_mr_and_ct_presets")
    study_page(room, page, room.mr_study)
    canvas = open_series(room, page, room.uid["t2"])
    values = slice_values(room, room.uid["t2"], int(canvas.get_attribute("data-slice")))
    c, w = window_of(canvas)
    assert values.max() >= 1400 and values.max() < c + w / 2  # the ventricles' CSF is bright, not saturated
    info = room.client.get(f"/api/series/{room.uid['t2']}/info").json()
    own = dcmread(sorted(room.folders[room.uid["t2"]].iterdir())[0], stop_before_pixels=True)
    assert (c, w) == (float(own.WindowCenter), float(own.WindowWidth)) and info["window_from"] == "series"
    names = page.locator(".preset").evaluate_all("bs => bs.map(b => b.dataset.preset)")
    assert names == ["series", "auto", "T1", "T2/FLAIR", "DWI"], names
    shot(page, "t2-opens-at-its-own-window", element=page.locator("#viewer"))

    page.click(".preset[data-preset='T2/FLAIR']")
    c, w = window_of(canvas)
    assert [c, w] == info["presets"]["T2/FLAIR"]
    assert np.mean(values < c + w / 2) > 0.998 and c - w / 2 < np.median(values[values > 100])  # CSF kept, tissue grey
    shot(page, "t2-preset-t2-flair", element=page.locator("#viewer"))
    page.click(".preset[data-preset='series']")
    assert window_of(canvas) == (float(own.WindowCenter), float(own.WindowWidth))

    # a series without a window of its own: from its histogram (head voxels, 1st-99th percentile), CSF not white
    canvas = open_series(room, page, room.uid["t2_nowindow"])
    info = room.client.get(f"/api/series/{room.uid['t2_nowindow']}/info").json()
    assert info["window_from"] == "histogram" and "series" not in info["presets"]
    c, w = window_of(canvas)
    assert [c, w] == info["presets"]["auto"]
    series = np.concatenate([dcmread(p).pixel_array.ravel() for p in sorted(room.folders[room.uid["t2_nowindow"]]
                                                                                 .iterdir())]).astype(float)
    head = series[series > 0.05 * np.percentile(series, 99.5)]  # above the background
    assert np.allclose([c - w / 2, c + w / 2], np.percentile(head, [1, 99]), atol=0.01)
    assert np.mean(values >= c + w / 2) < 0.02  # at most the brightest 1 % of the head
    shot(page, "t2-without-window-opens-auto", element=page.locator("#viewer"))

    canvas = open_series(room, page, room.uid["dwi"])
    page.click(".preset[data-preset=DWI]")
    assert [*window_of(canvas)] == room.client.get(f"/api/series/{room.uid['dwi']}/info").json()["presets"]["DWI"]
    shot(page, "dwi-preset-dwi", element=page.locator("#viewer"))

    study_page(room, page, room.ct_study)
    canvas = open_series(room, page, room.uid["ct"])
    names = page.locator(".preset").evaluate_all("bs => bs.map(b => b.dataset.preset)")
    assert names == ["series", "brain", "subdural", "stroke", "bone"], names
    for name, expected in [("stroke", (40, 40)), ("subdural", (75, 215)), ("bone", (600, 2800)), ("brain", (40, 80))]:
        page.click(f".preset[data-preset={name}]")
        assert window_of(canvas) == expected
        if name == "stroke":
            shot(page, "ct-preset-stroke", element=page.locator("#viewer"))


# --- 2. a DSC series: slices and time points, the curve under the cursor, the AIF ------------------------------------

def test_a_dsc_series_is_navigated_by_slice_and_time_with_the_curve_and_the_aif(room, page):
    """150 images, 3 slices x 50 time points interleaved: up/down move through slices, left/right through time; the
    signal-time curve under the cursor and the AIF the perfusion node used are drawn under the image."""
    shot = Screenshots("test_a_dsc_series_is_navigated_by_slice_and_time_with_the_curve_and_the_aif")
    uid = room.uid["dsc"]
    files = [dcmread(p) for p in sorted(room.folders[uid].iterdir())]
    by_place = {(int(ds.TemporalPositionIdentifier) - 1, round(float(ds.ImagePositionPatient[2]), 2)): ds for ds in files}
    info = room.client.get(f"/api/series/{uid}/info").json()
    assert (info["count"], info["slices"], info["phases"], info["phase_kind"]) == (150, 3, 50, "time")
    assert info["positions"] == [-26.0, 0.0, 26.0] and info["times"][:3] == [0.0, 1.5, 3.0]
    for t, z in [(0, 0), (7, 2), (49, 1)]:  # image t * slices + z is slice z at time point t
        assert np.array_equal(slice_values(room, uid, t * 3 + z), by_place[(t, info["positions"][z])].pixel_array)

    study_page(room, page, room.mr_study)
    canvas = open_series(room, page, uid)
    room.expect(canvas).to_have_attribute("data-slice", "1")
    room.expect(canvas).to_have_attribute("data-phase", "0")
    room.expect(page.locator("#phase-tools")).to_be_visible()
    room.expect(page.locator("#slice-slider")).to_have_attribute("max", "2")
    room.expect(page.locator("#phase-slider")).to_have_attribute("max", "49")
    page.keyboard.press("ArrowUp")
    room.expect(canvas).to_have_attribute("data-slice", "0")
    room.expect(canvas).to_have_attribute("data-position", "-26.0")
    for _ in range(12):
        page.keyboard.press("ArrowRight")
    room.expect(canvas).to_have_attribute("data-phase", "12")
    room.expect(canvas).to_have_attribute("data-slice", "0")  # time moved, the slice stayed
    page.keyboard.press("ArrowDown")
    room.expect(canvas).to_have_attribute("data-slice", "1")
    room.expect(canvas).to_have_attribute("data-phase", "12")
    room.expect(canvas).to_have_attribute("data-index", str(12 * 3 + 1))
    page.keyboard.press("ArrowLeft")
    room.expect(canvas).to_have_attribute("data-phase", "11")
    room.expect(page.locator("#phase-label")).to_have_text("time 12/50 · 16.5 s")

    # the curve of the voxel under the cursor: brain tissue, whose signal drops with the bolus
    canvas.scroll_into_view_if_needed()  # the mouse reaches only what is on screen
    box = canvas.bounding_box()
    col, row = 5, 8
    page.mouse.move(box["x"] + box["width"] * (col + 0.5) / 16, box["y"] + box["height"] * (row + 0.5) / 16)
    plot = page.locator("#curve-plot")
    room.expect(plot).to_have_attribute("data-points", "50")
    room.expect(page.locator("#curve-legend")).to_contain_text(f"voxel ({col}, {row}) of slice 2")
    curve = room.client.get(f"/api/series/{uid}/curve", params={"slice": 1, "row": row, "col": col}).json()
    assert curve["values"] == [float(by_place[(t, 0.0)].pixel_array[row, col]) for t in range(50)]
    assert min(curve["values"]) < 0.8 * curve["values"][0]  # the bolus passes

    # the AIF the perfusion node chose: its voxels (perfusion.json) marked, their mean signal drawn
    maps = wait_for_maps(room)
    assert all(m["derived_from"] == uid for m in maps)
    result = json.loads(next((room.tmp / "perfusion" / "out").rglob("perfusion.json")).read_text())
    aif = room.client.get(f"/api/series/{uid}/aif").json()["aif"]
    assert aif["node"] == "perfusion" and aif["voxels"] == result["aif_voxels"] and aif["curve"] == result["aif_curve"]
    assert aif["here"]["voxels"] == sorted(result["aif_voxels"])  # found again by position in this series
    z, y, x = result["aif_voxels"][0]
    mean = np.mean([[float(by_place[(t, info["positions"][v[0]])].pixel_array[v[1], v[2]]) for t in range(50)]
                    for v in result["aif_voxels"]], axis=0)
    assert np.allclose(aif["here"]["signal"], mean, atol=1e-3)
    room.expect(plot).to_have_attribute("data-aif", str(len(result["aif_voxels"])))
    room.expect(page.locator("#curve-legend")).to_contain_text("AIF of the perfusion maps")
    room.expect(page.locator("#curve-legend")).to_contain_text("by perfusion")
    shot(page, "dsc-time-12-curve-and-aif", element=page.locator("#viewer"))
    page.locator("#phase-slider").fill("0")
    room.expect(canvas).to_have_attribute("data-phase", "0")
    page.locator("#slice-slider").fill(str(z))  # the AIF voxels' slice: they are marked
    room.expect(canvas).to_have_attribute("data-slice", str(z))
    shot(page, "dsc-baseline-aif-slice", element=page.locator("#viewer"))


# --- 3. zoom, pan, orientation, scale, position; panes linked by position; overlays -----------------------------------

def test_zoom_pan_orientation_labels_scale_bar_and_slice_position(room, page):
    shot = Screenshots("test_zoom_pan_orientation_labels_scale_bar_and_slice_position")
    study_page(room, page, room.mr_study)
    canvas = open_series(room, page, room.uid["t2"])
    pane = page.locator(".viewport[data-pane='0']")
    # axial, displayed as radiologists read it: the patient's right on the left of the screen, anterior up
    assert [pane.locator(f".orient-{s}").inner_text() for s in ("left", "right", "top", "bottom")] == ["R", "L", "A", "P"]
    room.expect(canvas).to_have_attribute("data-position", "12.0")  # ImagePositionPatient along the normal
    room.expect(pane.locator(".corner-bl")).to_contain_text("Pos 12.0 mm")
    page.keyboard.press("ArrowUp")
    room.expect(pane.locator(".corner-bl")).to_contain_text("Pos -12.0 mm")
    # 32 columns of 7 mm fill 512 pixels: 2.29 px/mm; the bar is the roundest length under a quarter of the pane
    bar = pane.locator(".scale-bar")
    assert bar.get_attribute("data-mm") == "50" and abs(float(bar.get_attribute("data-px")) - 50 * 512 / 224) < 0.2
    room.expect(pane.locator(".scale-label")).to_have_text("50 mm")
    shot(page, "t2-fit", element=page.locator("#viewer"))

    page.click("#zoom-in")
    page.click("#zoom-in")
    room.expect(canvas).to_have_attribute("data-zoom", "1.563")
    room.expect(pane.locator(".scale-label")).to_have_text("20 mm")  # 3.57 px/mm: a quarter of the pane is 36 mm
    canvas.scroll_into_view_if_needed()  # the mouse reaches only what is on screen
    box = canvas.bounding_box()
    page.keyboard.down("Shift")
    page.mouse.move(box["x"] + 200, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(box["x"] + 260, box["y"] + 240, steps=4)
    page.mouse.up()
    page.keyboard.up("Shift")
    room.expect(canvas).to_have_attribute("data-pan", "60,40")
    page.keyboard.press("+")
    room.expect(canvas).to_have_attribute("data-zoom", "1.953")
    room.expect(canvas).to_have_attribute("data-pan", "75,50")  # zoomed about the centre: the pan grows with it
    # what is under the cursor follows the zoom and pan: the pixel at the canvas centre
    page.mouse.move(box["x"] + 256, box["y"] + 256)
    k, (pan_x, pan_y) = 512 / 224 * 1.953125, (75, 50)
    expect_col, expect_row = int(16 + (0 - pan_x) / (k * 7)), int(16 + (0 - pan_y) / (k * 7))
    room.expect(page.locator("#cursor-value")).to_contain_text(f"({expect_col}, {expect_row}) =")
    shot(page, "t2-zoomed-and-panned", element=page.locator("#viewer"))
    page.click("#zoom-fit")
    room.expect(canvas).to_have_attribute("data-zoom", "1")
    room.expect(canvas).to_have_attribute("data-pan", "0,0")

    # other planes: the register node's reformats of the thin T1
    reformats = wait_until(lambda: {s["derivation"].split()[0]: s for s in study_state(room, room.reg_study)["series"]
                                    if "reformat" in (s["derivation"] or "")} or None, 120, interval=0.5,
                           what="the reformats")
    study_page(room, page, room.reg_study)
    for plane, labels in [("coronal", ["R", "L", "H", "F"]), ("sagittal", ["A", "P", "H", "F"])]:
        canvas = open_series(room, page, reformats[plane]["uid"])
        assert [pane.locator(f".orient-{s}").inner_text() for s in ("left", "right", "top", "bottom")] == labels, plane
        shot(page, f"{plane}-reformat-labels", element=page.locator("#viewer"))


def test_two_and_four_panes_scroll_together_by_patient_position(room, page):
    shot = Screenshots("test_two_and_four_panes_scroll_together_by_patient_position")
    study_page(room, page, room.mr_study)
    page.click(".pane-layout[data-layout='2']")
    t2 = open_series(room, page, room.uid["t2"], pane=0)       # slices at -36, -12, 12, 36 mm
    dsc = open_series(room, page, room.uid["dsc"], pane=1)     # -26, 0, 26 mm
    room.expect(t2).to_have_attribute("data-position", "12.0")
    room.expect(dsc).to_have_attribute("data-position", "0.0")  # nearest to 12 mm (index 1; index 2 is 26 mm)
    t2.hover()
    page.mouse.wheel(0, 100)
    room.expect(t2).to_have_attribute("data-position", "36.0")
    room.expect(dsc).to_have_attribute("data-position", "26.0")
    shot(page, "1x2-t2-and-dsc-at-36-mm", element=page.locator("#viewer"))

    page.click(".pane-layout[data-layout='4']")
    t1 = open_series(room, page, room.uid["t1"], pane=2)       # -20 .. 20 mm every 8 mm
    dwi = open_series(room, page, room.uid["dwi"], pane=3)     # as the T2
    room.expect(t1).to_have_attribute("data-position", "20.0")
    room.expect(dwi).to_have_attribute("data-position", "36.0")
    t2.click()
    for _ in range(2):
        page.keyboard.press("ArrowUp")
    room.expect(t2).to_have_attribute("data-position", "-12.0")
    room.expect(t1).to_have_attribute("data-position", "-12.0")
    room.expect(dsc).to_have_attribute("data-position", "0.0")
    room.expect(dwi).to_have_attribute("data-position", "-12.0")
    # the T1 scrolled: the others follow to its position
    t1.click()
    page.keyboard.press("ArrowDown")
    room.expect(t1).to_have_attribute("data-position", "-4.0")
    room.expect(t2).to_have_attribute("data-position", "-12.0")
    room.expect(dsc).to_have_attribute("data-position", "0.0")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    room.expect(t1).to_have_attribute("data-position", "12.0")
    room.expect(t2).to_have_attribute("data-position", "12.0")
    room.expect(dwi).to_have_attribute("data-slice", "2")
    shot(page, "2x2-linked-at-12-mm", element=page.locator("#viewer"))
    page.uncheck("#link-panes")
    t1.click()  # the keys go to the panes, not to the checkbox
    page.keyboard.press("ArrowDown")
    room.expect(t1).to_have_attribute("data-position", "20.0")
    room.expect(t2).to_have_attribute("data-position", "12.0")  # unlinked: stays


def _coloured_pixels(page, canvas_id: str) -> int:
    return page.evaluate("""(id) => { const c = document.getElementById(id);
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
      for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - d[i + 1]) > 30 || Math.abs(d[i + 1] - d[i + 2]) > 30) n++;
      return n; }""", canvas_id)


def test_a_perfusion_map_over_the_anatomy_with_opacity(room, page):
    shot = Screenshots("test_a_perfusion_map_over_the_anatomy_with_opacity")
    cbf = [m for m in wait_for_maps(room) if m["map"] == "CBF"][0]
    study_page(room, page, room.mr_study)
    # over the series it was made from: the same geometry
    canvas = open_series(room, page, room.uid["dsc"])
    room.expect(page.locator(f"#overlay-series option[value='{cbf['uid']}']")).to_have_text(
        "CBF map of ep2d_perf_DSC")
    room.expect(page.locator("#curve-plot")).to_have_attribute("data-aif", re.compile(r"[1-9]"))
    anatomy = _coloured_pixels(page, "viewer-canvas")  # grey, but for the AIF voxels marked in red
    page.select_option("#overlay-series", cbf["uid"])
    room.expect(canvas).to_have_attribute("data-overlay", cbf["uid"])
    room.expect(canvas).to_have_attribute("data-overlay-slice", "1")
    wait_until(lambda: _coloured_pixels(page, "viewer-canvas") > anatomy + 1000, 10, what="the CBF map drawn")
    room.expect(page.locator("#legend")).to_be_visible()
    shot(page, "cbf-over-dsc-opacity-50", element=page.locator("#viewer"))
    page.locator("#overlay-opacity").fill("0")
    wait_until(lambda: _coloured_pixels(page, "viewer-canvas") == anatomy, 10, what="opacity 0: the anatomy alone")
    page.locator("#overlay-opacity").fill("80")
    wait_until(lambda: _coloured_pixels(page, "viewer-canvas") > anatomy + 1000, 10, what="opacity 80")

    # over the T2: resampled by position (16 pixels of 14.4 mm onto 32 of 7 mm; slices at -26/0/26 onto -36..36)
    canvas = open_series(room, page, room.uid["t2"])
    page.select_option("#overlay-series", cbf["uid"])
    room.expect(canvas).to_have_attribute("data-overlay", cbf["uid"])
    room.expect(canvas).to_have_attribute("data-overlay-slice", "1")  # T2 at 12 mm: the map's slice at 0 mm
    canvas.click()  # the keys go to the pane again, not to the list
    page.keyboard.press("ArrowDown")
    room.expect(canvas).to_have_attribute("data-overlay-slice", "2")  # 36 mm: the map's slice at 26 mm
    wait_until(lambda: _coloured_pixels(page, "viewer-canvas") > 1000, 10, what="the CBF map over the T2")
    canvas.scroll_into_view_if_needed()  # the mouse reaches only what is on screen
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2 + 20, box["y"] + box["height"] / 2 + 10)
    room.expect(page.locator("#cursor-value")).to_contain_text("CBF")
    shot(page, "cbf-over-t2-resampled-by-position", element=page.locator("#viewer"))
    page.select_option("#overlay-series", "")
    room.expect(canvas).to_have_attribute("data-overlay", "")


# --- 4. derived series with their provenance; why a study has no registration reference -------------------------------

def test_derived_series_are_labelled_and_a_study_without_reference_says_why(room, page):
    shot = Screenshots("test_derived_series_are_labelled_and_a_study_without_reference_says_why")
    wait_for_maps(room)
    # generous ceilings (the loaded 2-core machine of CI: the convert node renders every series of three studies
    # one after the other), each wait named apart so that a failure says which part is missing
    wait_until(lambda: len(study_state(room, room.mr_study)["renditions"]) >= 6, 240, interval=0.5,
               what="the NIfTI renditions of the MR study's series (the convert node)")
    mr = wait_until(lambda: (s := study_state(room, room.mr_study))["notes"] and s, 120, interval=0.5,
                    what="the register node's note on the MR study (no reference series)")
    assert {r["provenance"] for r in mr["renditions"]} >= {f"NIfTI rendition of {d}" for d in (
        "t1_mprage_sag_1mm", "t2_tse_tra", "t2_tirm_tra_dark-fluid", "ep2d_diff_3scan_trace", "ep2d_perf_DSC")}
    study_page(room, page, room.mr_study)
    cards = page.locator(".series-card[data-kind=rendition]")
    room.expect(cards).to_have_count(len(mr["renditions"]))
    t2_nii = page.locator(f".series-card[data-rendition='{room.uid['t2']}:stored.series.nii']")
    room.expect(t2_nii).to_contain_text("NIfTI rendition of t2_tse_tra")
    room.expect(t2_nii.locator(".meta")).to_contain_text("3_t2_tse_tra.nii.gz")
    room.expect(page.locator(".series-card[data-kind=map]", has_text="CBF map of ep2d_perf_DSC")).to_have_count(1)
    note = page.locator("#study-notes li")
    room.expect(note).to_have_count(1)
    room.expect(note).to_contain_text("register: waiting for a reference series: none of the series is a 3D volume "
                                      "with <= 1.5 mm slices")
    room.expect(note).to_contain_text("t2_tse_tra")
    shot(page, "mr-study-renditions-maps-and-why-no-registration", full_page=True)

    def registered_and_converted():
        st = study_state(room, room.reg_study)
        return len([s for s in st["series"] if s["derived"]]) >= 3 and len(st["renditions"]) >= 2 and st
    reg = wait_until(registered_and_converted, 180, interval=0.5, what="the registration, reformats and renditions")
    registered = [s for s in reg["series"] if (s["derivation"] or "").startswith("registered")][0]
    assert registered["reference"] == room.uid["reg_t1"] and registered["derived_from"] == room.uid["reg_t2"]
    assert reg["notes"] == []  # the T2 waited, then was registered: no note left
    study_page(room, page, room.reg_study)
    room.expect(page.locator(f".series-card[data-series='{registered['uid']}']")).to_contain_text(
        "registered to T1 3D, from T2 axial")
    room.expect(page.locator(f".series-card[data-series='{registered['uid']}']")).to_have_attribute(
        "data-kind", "registration")
    room.expect(page.locator(".series-card[data-kind=reformat]", has_text="coronal reformat 3 mm of T1 3D")).to_have_count(1)
    room.expect(page.locator(".series-card[data-kind=reformat]", has_text="sagittal reformat 3 mm of T1 3D")).to_have_count(1)
    room.expect(page.locator(".series-card[data-kind=rendition]", has_text="NIfTI rendition of T2 axial")).to_have_count(1)
    room.expect(page.locator("#study-notes li")).to_have_count(0)
    shot(page, "reg-study-registration-reformats-renditions", full_page=True)
    open_series(room, page, registered["uid"])
    room.expect(page.locator("#viewer-title")).to_contain_text("registered to T1 3D")

    study_page(room, page, room.ct_study)  # a CT of 25 mm slices: no reference either
    room.expect(page.locator("#study-notes li")).to_contain_text("none of the series is a 3D volume")
