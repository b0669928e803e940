"""The stroke study into the radiologist's report, in a real headless browser (Debian's chromium, Playwright) against
a real `meshdcm up` serving the realistic stroke studies (docs/studies.md): open the stroke patient's MR, wait for the
perfusion node's stroke analysis, see its segmentation over the DSC series (core red over Tmax > 10 s yellow over
Tmax > 6 s green) and its volumes, accept the AI findings (then edit them), sign; the SR the pacs node stored in the
embedded PACS references the AI measurement SR (evidence and content tree), which is in the PACS too.
Screenshots: ``$MESHDCM_ARTIFACTS/test_the_stroke_study_into_the_signed_report/NN-step.png`` (web_fixtures)."""

from __future__ import annotations

import re
import signal
import time

import httpx

from conftest import wait_until
from meshdcm.stroke.rules import ALGORITHM_VERSION
from ports import free_port
from web_fixtures import (CHROMIUM_ARGS, SIGNER, Screenshots, chromium_or_skip, find_srs, login_csrf, studies_found,
                          users_file, web_answers)

EDIT = "Befund mit der Neurologie besprochen."  # the radiologist's own words after the accepted text


def test_the_stroke_study_into_the_signed_report(mesh, tmp_path, realistic_studies):
    chromium = chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    stroke_mr = next(s for s in realistic_studies.manifest["studies"] if (s["patient"], s["study"]) == ("stroke", "mr"))
    config = tmp_path / "up.toml"  # the realistic studies (what `meshdcm up` serves), and a named user who may sign
    config.write_text(f'[nodes.pacs]\nembedded_size = "realistic"\n'
                      f'[nodes.web]\nusers_file = "{users_file(tmp_path / "users")}"\n')
    started = time.monotonic()
    up = mesh.start("up", "--state", tmp_path / "state", "--mesh", mesh.name, "--web-port", free_port(),
                    "--config", config)
    out = up.wait_for_output("stop with Ctrl-C", timeout=60)
    url, token = re.search(r"web UI: (\S+)\s+\(login token: (\S+)\)", out).groups()
    pacs_host, pacs_port = wait_until(lambda: re.search(r"embedded PACS \S+ on ([\d.]+):(\d+)", up.output), 120,
                                      what="the embedded PACS to listen").groups()
    with httpx.Client(base_url=url, timeout=10) as api:
        wait_until(lambda: web_answers(api), 60, interval=0.2, what="the web UI to be up")
        csrf = {"X-CSRF-Token": login_csrf(api, token)}
        wait_until(lambda: studies_found(api, csrf, "MUSTERMANN", 5) >= 3, 90, interval=0.5, what="the pacs node to answer searches")

    shot = Screenshots("test_the_stroke_study_into_the_signed_report")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=chromium,
                                                       args=CHROMIUM_ARGS, headless=True,
                                                       viewport={"width": 1500, "height": 1100})
        context.set_default_timeout(30_000)
        expect.set_options(timeout=30_000)
        try:
            page = context.new_page()
            page.goto(url)
            page.fill("#login-user", SIGNER[0])
            page.fill("#login-secret", SIGNER[1])
            page.click("#login-go")
            expect(page.locator("#user")).to_have_text("Jane Doe (jane)")

            # 1. the stroke patient's MR study
            page.fill("#search-patient", "MUSTERMANN")
            page.click("#search-go")
            row = page.locator("#results tbody tr", has_text=stroke_mr["AccessionNumber"])
            expect(row).to_have_count(1)
            shot(page, "search")
            row.locator(".open-study").click()
            expect(page.locator("#study-title")).to_contain_text("MUSTERMANN")

            # 2. the perfusion node's stroke analysis arrives: its volumes, criteria and proposed text, with provenance
            ai = page.locator("#ai-result")
            expect(ai).to_be_visible(timeout=400_000)  # fetch of 1,526 images, oSVD on a shared 2-core machine
            waited = time.monotonic() - started
            volumes = page.locator(".ai-volumes")
            # the study has an ADC series: its core is what is offered in the end, whichever series came first
            # (the DSC first: the rCBF core's SR, then the ADC core's superseding it; docs/stroke.md)
            expect(volumes).to_contain_text("Ischaemic core (ADC)", timeout=180_000)
            for label in ("Ischaemic core", "Hypoperfusion Tmax > 6 s", "Severe hypoperfusion Tmax > 10 s",
                          "Hypoperfusion intensity ratio", "Mismatch volume", "Mismatch ratio", "DEFUSE-3 imaging"):
                expect(volumes).to_contain_text(label)
            sr_cards = page.locator(".series-card[data-kind=document]", has_text="Stroke perfusion measurements")
            expect(page.locator(".series-card[data-kind=document][data-superseded=true]")).to_have_count(
                sr_cards.count() - 1, timeout=30_000)  # the rCBF core's SR, when the ADC core's replaced it
            core_ml = float(volumes.locator("tr", has_text="Ischaemic core").locator("td.num").inner_text())
            assert core_ml > 0
            ai_sop = ai.get_attribute("data-sop")
            expect(page.locator("#ai-provenance")).to_contain_text(re.compile(
                rf"meshdcm stroke {re.escape(ALGORITHM_VERSION)} by perfusion .* SOP instance {re.escape(ai_sop)}"))
            expect(page.locator("#ai-proposed-findings")).to_contain_text("ischaemic core")
            expect(page.locator("#report-findings")).to_have_value("")  # nothing inserted by itself
            expect(page.locator("#report-impression")).to_have_value("")
            shot(page, "ai-findings-offered", full_page=True)

            # 3. the segmentation over the DSC series, at the slice with the most core
            page.click("#ai-show")
            canvas = page.locator("#viewer-canvas")
            seg_uid = page.evaluate("(sop) => state.studyData.ai.find(r => r.provenance && "
                                    "r.provenance.sop_instance_uid === sop).provenance.seg_series_uid", ai_sop)
            assert seg_uid
            expect(canvas).to_have_attribute("data-overlay", seg_uid, timeout=60_000)
            expect(page.locator("#seg-legend")).to_contain_text("Ischaemic core")
            expect(page.locator("#seg-legend")).to_contain_text("Tmax > 6 s")
            z = page.evaluate("""async (seg) => {  // the DSC slice nearest the SEG slice holding the most core
                const info = await (await fetch(`/api/series/${seg}/info`)).json();
                let best = 0, most = -1;
                for (let i = 0; i < info.count; i++) {
                  const px = new Int16Array(await (await fetch(`/api/series/${seg}/slices/${i}`)).arrayBuffer());
                  const n = px.reduce((a, v) => a + (v === 1), 0);
                  if (n > most) { most = n; best = i; }
                }
                return nearestSlice(activePane().info, sliceCentre(info, best)).z;
            }""", seg_uid)
            page.locator("#slice-slider").fill(str(z))
            expect(canvas).to_have_attribute("data-slice", str(z))
            expect(canvas).to_have_attribute("data-overlay", seg_uid)
            colours = page.evaluate("""() => {  // pixels of the core's red, Tmax > 10 s yellow, Tmax > 6 s green
                const c = document.querySelector('#viewer-canvas'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let red = 0, yellow = 0, green = 0;
                for (let i = 0; i < d.length; i += 4) {
                  const [r, g, b] = [d[i], d[i + 1], d[i + 2]];
                  if (r > g + 60 && r > b + 60) red++; else if (r > b + 60 && g > b + 60) yellow++; else if (g > r + 40 && g > b + 40) green++;
                }
                return {red, yellow, green};
            }""")
            assert colours["red"] > 50 and colours["green"] > 50, colours
            shot(page, "segmentation-over-dsc", element=page.locator("#viewer"))
            summary = page.locator(".series-card", has_text="Stroke perfusion summary").first  # in colour (the
            # rCBF core's too, when the DSC series came before the ADC)
            expect(summary.locator("img")).to_be_visible()
            summary.click()
            expect(canvas).to_have_attribute("data-series", summary.get_attribute("data-series"))
            expect(canvas).to_have_attribute("data-first-image-ms", re.compile(r"\d+"))
            shot(page, "summary-image", element=page.locator("#viewer"))

            # 4. accept the AI findings: inserted where the radiologist edits them
            page.click("#ai-accept")
            expect(page.locator("#report-findings")).to_have_value(re.compile(r"ischaemic core \(.*\) \d+\.\d ml"))
            expect(page.locator("#report-impression")).to_have_value(re.compile("DEFUSE-3 imaging criteria"))
            expect(page.locator("#ai-accept")).to_be_disabled()
            page.locator("#report-impression").press("End")
            page.locator("#report-impression").press_sequentially(" " + EDIT, delay=5)
            expect(page.locator("#draft-status")).to_contain_text("draft saved")
            shot(page, "ai-findings-accepted-and-edited", full_page=True)

            # 5. sign: stored in the PACS
            page.click("#sign")
            expect(page.locator("#sign-status [data-state=stored]")).to_contain_text("stored in PACS embedded",
                                                                                   timeout=60_000)
            expect(page.locator("#ai-accept")).to_be_disabled()
            shot(page, "signed", full_page=True)
            study_uid = page.evaluate("state.study")
        finally:
            context.close()

    # the signed SR in the PACS references the AI SR, which is there too
    srs = find_srs(pacs_host, int(pacs_port), study_uid, tmp_path / "sr")
    assert ai_sop in srs, "the AI measurement SR is not in the PACS"
    signed = [ds for ds in srs.values() if "VerifyingObserverSequence" in ds]
    assert len(signed) == 1
    report = signed[0]
    evidence = {str(sop.ReferencedSOPInstanceUID) for study in report.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for sop in series.ReferencedSOPSequence}
    assert ai_sop in evidence
    (used,) = [i for i in report.ContentSequence if i.ValueType == "COMPOSITE"]
    assert used.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ai_sop
    assert used.ReferencedSOPSequence[0].ReferencedSOPClassUID == srs[ai_sop].SOPClassUID
    texts = {i.ConceptNameCodeSequence[0].CodeMeaning: str(i.TextValue) for i in report.ContentSequence
             if i.ValueType == "TEXT"}
    assert "ischaemic core" in texts["Findings"] and texts["Impression"].endswith(EDIT)
    print(f"\nstroke report walk: AI result shown after {waited:.0f} s, ADC core {core_ml} ml, superseded "
          f"{len(srs) - 2} rCBF SR(s), whole test {time.monotonic() - started:.0f} s")
    assert up.stop(signal.SIGINT, timeout=30) == 0
