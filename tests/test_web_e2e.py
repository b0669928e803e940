"""End to end in a real headless browser (Debian's chromium driven by Playwright) against `meshdcm up`:
log in -> search a patient -> open the study -> progress and series thumbnails, derived perfusion maps ->
image viewer (scroll, W/L preset, a map with its legend and values) -> report (protocol pre-filled, a perfusion
measurement inserted) -> reload (the draft survives) -> sign -> confirmation -> the SR is in the PACS with the text.
Screenshots of every step go to the test's tmp dir and to test-artifacts/web/ (git-ignored)."""

from __future__ import annotations

import re
import signal
import uuid

import httpx

from conftest import wait_until
from web_fixtures import (CHROMIUM_ARGS, SIGNER, chromium_or_skip, find_sr_text, keep_artifacts, login_csrf,
                          studies_found, users_file, web_answers)
from ports import free_port


def test_the_whole_story_in_a_browser(mesh, tmp_path):
    chromium = chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    # the small synthetic studies (the story below is written for them; test_up.py runs up with the realistic ones),
    # and a named user who may sign
    config = tmp_path / "up.toml"
    config.write_text(f'[nodes.pacs]\nembedded_size = "small"\n[nodes.web]\nusers_file = "{users_file(tmp_path / "users")}"\n')
    up = mesh.start("up", "--state", tmp_path / "state", "--mesh", mesh.name, "--web-port", free_port(),
                    "--config", config)
    out = up.wait_for_output("stop with Ctrl-C", timeout=30)
    url, token = re.search(r"web UI: (\S+)\s+\(login token: (\S+)\)", out).groups()
    assert url.startswith("http://127.0.0.1:")
    pacs_host, pacs_port = re.search(r"embedded PACS \S+ on ([\d.]+):(\d+)", up.wait_for_output("embedded PACS",
                                                                                                timeout=60)).groups()
    with httpx.Client(base_url=url, timeout=10) as api:  # the mesh is ready once a search finds both studies
        wait_until(lambda: web_answers(api), 60, interval=0.2, what="the web UI to be up")
        csrf = {"X-CSRF-Token": login_csrf(api, token)}
        wait_until(lambda: studies_found(api, csrf, "MESHDCM", 5) >= 2, 60, interval=0.5, what="the pacs node to answer searches")

    shots = tmp_path / "screenshots"
    shots.mkdir()
    step = [0]

    def shot(page, name):
        step[0] += 1
        page.screenshot(path=str(shots / f"{step[0]:02d}-{name}.png"), full_page=True)

    impression = f"Keine Perfusionsstörung, kein Infarkt (Müller) {uuid.uuid4().hex[:8]}"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=chromium,
                                                       args=CHROMIUM_ARGS, headless=True,
                                                       viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(30_000)
        expect.set_options(timeout=30_000)  # a loaded 2-core machine: waits end on the condition, not a guess
        try:
            page = context.new_page()
            # 1. login
            page.goto(url)
            expect(page).to_have_url(re.compile(r"/login$"))
            page.fill("#login-user", SIGNER[0])
            page.fill("#login-secret", SIGNER[1])
            shot(page, "login")
            page.click("#login-go")
            expect(page.locator("#user")).to_have_text("Jane Doe (jane)")

            # 2. search a patient: results stream in
            page.fill("#search-patient", "MESHDCM")
            page.click("#search-go")
            expect(page.locator("#results tbody tr")).to_have_count(2)
            # the pacs node answers; so may the index node, which remembers what it heard (de-duplicated by UID)
            expect(page.locator("#search-status")).to_contain_text(re.compile(r"answers from (index: 2, )?pacs: 2"))
            rows = page.locator("#results tbody tr")
            expect(rows.first).to_contain_text("MR BRAIN")  # newest first
            page.click("#results th[data-sort=StudyDate]")
            expect(rows.first).to_contain_text("CT HEAD")
            shot(page, "search")

            # 3. the CT study: open, progress, thumbnail, viewer with scrolling and a W/L preset
            page.locator("#results tbody tr", has_text="CT HEAD").locator(".open-study").click()
            expect(page.locator("#study-state")).to_contain_text("complete", timeout=60_000)
            ct_card = page.locator(".series-card").first
            expect(ct_card.locator("img")).to_be_visible()
            ct_card.click()
            canvas = page.locator("#viewer-canvas")
            expect(canvas).to_have_attribute("data-first-image-ms", re.compile(r"\d+"))
            start = int(canvas.get_attribute("data-slice"))
            canvas.hover()
            page.mouse.wheel(0, 100)
            expect(canvas).to_have_attribute("data-slice", str(start + 1))
            page.keyboard.press("ArrowDown")
            expect(canvas).to_have_attribute("data-slice", str(start + 2))
            page.click(".preset[data-preset=brain]")
            expect(canvas).to_have_attribute("data-center", "40")
            expect(canvas).to_have_attribute("data-width", "80")
            shot(page, "ct-viewer-brain-window")

            # 4. the MR study: series arrive with progress; the perfusion node's maps appear, marked as derived
            page.click("#nav-search")
            page.locator("#results tbody tr", has_text="MR").locator(".open-study").click()
            expect(page.locator("#study-progress")).to_be_visible()
            expect(page.locator(".series-card .meta").first).to_have_text(re.compile(r"^\d+/\d+ images"))
            shot(page, "mr-fetching")
            expect(page.locator(".series-card[data-derived=false][data-complete=true] img")).to_have_count(5,
                                                                                                        timeout=60_000)
            maps = page.locator(".series-card[data-derived=true]", has_text="CBF map")
            expect(maps.first).to_be_visible(timeout=120_000)
            expect(maps.first).to_contain_text("by perfusion")
            shot(page, "mr-series-and-maps")

            # 5. a perfusion map in colour with its legend and the value under the cursor
            maps.first.click()
            expect(page.locator("#legend")).to_be_visible()
            expect(canvas).to_have_attribute("data-first-image-ms", re.compile(r"\d+"))
            canvas.scroll_into_view_if_needed()  # below the series cards, NIfTI renditions among them
            box = canvas.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            expect(page.locator("#cursor-value")).to_contain_text("ml/100g/min")  # the map's value, not one left by the CT
            shot(page, "cbf-map")

            # 6. the report: protocol pre-filled, a measurement inserted, text typed; saved as a draft
            expect(page.locator("#report-protocol")).to_have_value(re.compile("ep2d_perf_DSC"))
            expect(page.locator(".insert-measurement").first).to_be_visible(timeout=30_000)
            page.locator(".measure", has_text="CBF mean").locator(".insert-measurement").click()
            expect(page.locator("#report-findings")).to_have_value(re.compile(r"CBF mean .* by perfusion"))
            page.fill("#report-clinical", "Akute Hemiparese links")
            page.locator("#report-impression").press_sequentially(impression, delay=5)
            expect(page.locator("#draft-status")).to_contain_text("draft saved")
            shot(page, "report-draft")

            # 7. reload: the draft survives
            page.reload()
            expect(page.locator("#report-impression")).to_have_value(impression)
            expect(page.locator("#report-findings")).to_have_value(re.compile("CBF mean"))
            page.click("#show-timeline")
            expect(page.locator("#timeline tbody tr", has_text="get.study")).to_have_count(1)
            shot(page, "reloaded-with-timeline")

            # 8. sign: the pacs node uploads the SR; the page confirms
            page.click("#sign")
            expect(page.locator("#sign-status [data-state=stored]")).to_contain_text("stored in PACS embedded",
                                                                                   timeout=30_000)
            shot(page, "signed")

            # 9. the mesh monitor
            page.click("#nav-monitor")
            expect(page.locator("#nodes tbody tr", has_text="perfusion")).to_have_count(1)
            shot(page, "monitor")
            study_uid = page.evaluate("state.study")
        finally:
            context.close()
            keep_artifacts(shots, "e2e")

    texts = find_sr_text(pacs_host, int(pacs_port), study_uid, tmp_path / "sr")
    assert any(impression in t and "Akute Hemiparese links" in t and "CBF mean" in t for t in texts), texts
    assert up.stop(signal.SIGINT, timeout=30) == 0
