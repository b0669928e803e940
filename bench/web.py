"""Web UI image serving against Orthanc's rendered-image endpoint, same instances, same run.

A 160-slice 512x512 CT (the realistic stroke patient's 1 mm head CT, docs/studies.md) is announced to a fresh web node (``stored.series`` with a
``file://`` URI, as the pacs node does on this machine) and uploaded to a real Orthanc (own network namespace,
reached over a veth pair). Measured from an HTTP client with keep-alive, as a browser asks:

1. open a series -> first image: ours ``GET /api/series/UID/info`` + ``GET .../slices/MIDDLE`` (raw int16, windowed
   in the browser) on a node that has just heard of the series (its prefetch starts at the same moment); Orthanc
   ``GET /series/ID/ordered-slices`` + ``GET /instances/ID/rendered`` (a windowed PNG). Fresh web node each repeat.
2. scrolling: every slice in order, one request at a time; images per second (ours right after the first image,
   while the prefetch is still reading, and once it is warm).
3. in headless Chromium (when /usr/bin/chromium and Playwright are there): click-to-pixels of the first image
   (ours: the viewer's own measure from the click on the series to the drawn canvas, index + fetch + window +
   putImageData; Orthanc: an ``<img src=.../rendered>`` decoded and drawn, without its listing request), and
   scrolling every slice once, each fetched (no browser cache) and drawn.

Goal: at least as fast as Orthanc (first image ratio <= 1, images/s ratio >= 1).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from pydicom import dcmread  # noqa: E402

from bench._report import emit, median, parser  # noqa: E402
from meshdcm import Node  # noqa: E402
from meshdcm.config import NodeConfig  # noqa: E402
from meshdcm.studies import StudySet, studies_folder  # noqa: E402

TOKEN = "bench-token"  # noqa: S105 - the bench's own login token


def login(client: httpx.Client) -> None:
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    client.post("/login", data={"csrf": csrf, "user": "", "secret": TOKEN})


def wait_for(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.01)
    raise RuntimeError(f"timed out waiting for {what}")


def bench_ours(files: list[Path], work: Path, repeats: int) -> dict:
    import nodes.web as web

    header = dcmread(files[0], stop_before_pixels=True)
    study, series = str(header.StudyInstanceUID), str(header.SeriesInstanceUID)
    mesh = f"bench-web-{os.getpid()}"
    first, first_warm, scroll_cold, scroll_warm = [], [], [], []
    publisher = Node("bench-pacs", mesh=mesh).start()
    try:
        for i in range(repeats):
            node = web.create(NodeConfig(name=f"web-{i}", kind="web", mesh=mesh,
                                         options={"port": 0, "token": TOKEN, "data": str(work / f"web{i}")})).start()
            try:
                wait_for(lambda: publisher.wait_for_subscribers("stored.series", 0.1) and any(
                    p["kind"] == "web" for p in publisher.peers), 20, "the web node")
                with httpx.Client(base_url=node.extra["web"], timeout=60) as client:
                    login(client)
                    publisher.publish("stored.series", header, uris=[files[0].parent.resolve().as_uri()],
                                      meta={"instances": len(files), "complete": True})
                    wait_for(lambda: client.get(f"/api/studies/{study}").json()["series"], 20, "stored.series")
                    t0 = time.perf_counter()
                    info = client.get(f"/api/series/{series}/info").json()
                    image = client.get(f"/api/series/{series}/slices/{info['count'] // 2}")
                    first.append(time.perf_counter() - t0)
                    assert len(image.content) == 512 * 512 * 2 and info["count"] == len(files)
                    t0 = time.perf_counter()
                    for k in range(info["count"]):
                        client.get(f"/api/series/{series}/slices/{k}").raise_for_status()
                    scroll_cold.append(info["count"] / (time.perf_counter() - t0))
                    t0 = time.perf_counter()
                    for k in range(info["count"]):
                        client.get(f"/api/series/{series}/slices/{k}").raise_for_status()
                    scroll_warm.append(info["count"] / (time.perf_counter() - t0))
                    t0 = time.perf_counter()  # the click a while after the series arrived (prefetched)
                    client.get(f"/api/series/{series}/info").raise_for_status()
                    client.get(f"/api/series/{series}/slices/{info['count'] // 2}").raise_for_status()
                    first_warm.append(time.perf_counter() - t0)
            finally:
                node.stop()
    finally:
        publisher.stop()
    return {"ours_first_image_ms": round(median(first) * 1000, 1),
            "ours_first_image_warm_ms": round(median(first_warm) * 1000, 1),
            "ours_scroll_images_per_s": round(median(scroll_cold), 1),
            "ours_scroll_warm_images_per_s": round(median(scroll_warm), 1)}


def bench_orthanc(files: list[Path], work: Path, repeats: int, browser) -> dict:
    from pacs_fixtures import skip_reason, start_orthanc, stop_orthanc

    reason = skip_reason()
    if reason:
        print(f"Orthanc part skipped: {reason}")
        return {"orthanc_skipped": reason}
    srv = start_orthanc(work / "orthanc")
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as client:
            for path in files:
                client.post("/instances", content=path.read_bytes()).raise_for_status()
            sid = client.get("/series").json()[0]
            instances = client.get(f"/series/{sid}/instances").json()
            instances.sort(key=lambda d: int(d["MainDicomTags"].get("InstanceNumber", 0)))
            ids = [d["ID"] for d in instances]
            first, scroll = [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                client.get(f"/series/{sid}/ordered-slices").raise_for_status()
                png = client.get(f"/instances/{ids[len(ids) // 2]}/rendered")
                first.append(time.perf_counter() - t0)
                assert png.content[:4] == b"\x89PNG"
                t0 = time.perf_counter()
                for iid in ids:
                    client.get(f"/instances/{iid}/rendered").raise_for_status()
                scroll.append(len(ids) / (time.perf_counter() - t0))
        fig = {"orthanc_first_image_ms": round(median(first) * 1000, 1),
               "orthanc_scroll_images_per_s": round(median(scroll), 1)}
        if browser is not None:
            fig.update(browser(srv.url, ids))
        return fig
    finally:
        stop_orthanc(srv)


def browser_bench(files: list[Path], work: Path, repeats: int):
    """A function (orthanc_url, instance ids) -> figures, measuring both in headless Chromium; None if unavailable."""
    if not Path("/usr/bin/chromium").exists():
        return None
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        return None

    def run(orthanc_url: str, ids: list[str]) -> dict:
        import nodes.web as web
        from web_fixtures import CHROMIUM_ARGS

        header = dcmread(files[0], stop_before_pixels=True)
        study, series = str(header.StudyInstanceUID), str(header.SeriesInstanceUID)
        mesh = f"bench-webb-{os.getpid()}"
        publisher = Node("bench-pacs-b", mesh=mesh).start()
        ours, theirs, ours_scroll, theirs_scroll = [], [], [], []
        try:
            with sync_playwright() as p:
                ctx = p.chromium.launch_persistent_context(str(work / "profile"), executable_path="/usr/bin/chromium",
                                                           args=CHROMIUM_ARGS, headless=True)
                try:
                    for i in range(repeats):
                        node = web.create(NodeConfig(name=f"web-b{i}", kind="web", mesh=mesh, options={
                            "port": 0, "token": TOKEN, "data": str(work / f"webb{i}")}))
                        # zeroconf refuses to register from a thread running an event loop (Playwright's)
                        starter = threading.Thread(target=node.start)
                        starter.start()
                        starter.join()
                        try:
                            wait_for(lambda: publisher.wait_for_subscribers("stored.series", 0.1) and any(
                                pp["kind"] == "web" for pp in publisher.peers), 20, "the web node")
                            page = ctx.new_page()
                            page.goto(node.extra["web"] + "login")
                            page.fill("#login-secret", TOKEN)
                            page.click("#login-go")
                            page.wait_for_selector("#user:has-text('radiologist')")
                            publisher.publish("stored.series", header, uris=[files[0].parent.resolve().as_uri()],
                                              meta={"instances": len(files), "complete": True})
                            page.evaluate("(uid) => { location.hash = '#/study/' + uid; }", study)
                            page.wait_for_selector(f".series-card[data-series='{series}']")
                            page.click(f".series-card[data-series='{series}']")
                            page.wait_for_selector("#viewer-canvas[data-first-image-ms]")
                            ours.append(float(page.get_attribute("#viewer-canvas", "data-first-image-ms")))
                            blank = ctx.new_page()  # Orthanc's images from a page of no origin (ours forbids them)
                            theirs.append(blank.evaluate(ORTHANC_JS, f"{orthanc_url}/instances/{ids[len(ids) // 2]}"
                                                                     f"/rendered?r={i}"))
                            page.wait_for_selector("#viewer-canvas[data-loaded=all]", timeout=120_000)
                            ours_scroll.append(page.evaluate(OURS_SCROLL_JS, [series, len(files), 512, 512]))
                            theirs_scroll.append(blank.evaluate(ORTHANC_SCROLL_JS, [orthanc_url, ids, i]))
                            blank.close()
                            page.close()
                        finally:
                            node.stop()
                finally:
                    ctx.close()
        finally:
            publisher.stop()
        return {"browser_ours_first_image_ms": round(median(ours), 1),
                "browser_orthanc_first_image_ms": round(median(theirs), 1),
                "browser_ours_scroll_images_per_s": round(median(ours_scroll), 1),
                "browser_orthanc_scroll_images_per_s": round(median(theirs_scroll), 1)}
    return run


# click -> an <img> of Orthanc's rendered PNG decoded and drawn on a canvas (ms)
ORTHANC_JS = """async (src) => {
  const t0 = performance.now();
  const img = new Image(); img.src = src; await img.decode();
  const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
  c.getContext('2d').drawImage(img, 0, 0);
  return performance.now() - t0;
}"""


# scrolling through every slice, one at a time, each fetched (never from the browser's cache) and drawn
OURS_SCROLL_JS = """async ([uid, n, rows, cols]) => {
  const c = document.createElement('canvas'); c.width = cols; c.height = rows;
  const ctx = c.getContext('2d'); const img = ctx.createImageData(cols, rows); const d = img.data;
  const t0 = performance.now();
  for (let k = 0; k < n; k++) {
    const r = await fetch(`/api/series/${uid}/slices/${k}`, {cache: 'no-store'});
    const px = new Int16Array(await r.arrayBuffer());
    for (let i = 0, j = 0; i < px.length; i++, j += 4) {
      let v = (px[i] - 0) * 255 / 80; v = v < 0 ? 0 : v > 255 ? 255 : v | 0; d[j] = d[j + 1] = d[j + 2] = v; d[j + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }
  return n / ((performance.now() - t0) / 1000);
}"""
ORTHANC_SCROLL_JS = """async ([base, ids, run]) => {
  const c = document.createElement('canvas'); c.width = 512; c.height = 512; const ctx = c.getContext('2d');
  const t0 = performance.now();
  for (const id of ids) {
    const img = new Image(); img.src = `${base}/instances/${id}/rendered?run=${run}`; await img.decode();
    ctx.drawImage(img, 0, 0);
  }
  return ids.length / ((performance.now() - t0) / 1000);
}"""


def main() -> None:
    args = parser(__doc__).parse_args()
    repeats = 5 if args.quick else 9
    with tempfile.TemporaryDirectory(prefix="meshdcm-bench-web-") as tmp:
        work = Path(tmp)
        files = sorted(StudySet(studies_folder("full")).series("stroke", "ct", "ct_thin").glob("*.dcm"))
        fig = {"quick": args.quick, "slices": len(files), "matrix": 512, "repeats": repeats}
        fig.update(bench_ours(files, work, repeats))
        fig.update(bench_orthanc(files, work, repeats, browser_bench(files, work, repeats)))
        if "orthanc_first_image_ms" in fig:
            fig["first_image_ratio"] = round(fig["ours_first_image_ms"] / fig["orthanc_first_image_ms"], 2)
            fig["scroll_ratio"] = round(fig["ours_scroll_images_per_s"] / fig["orthanc_scroll_images_per_s"], 2)
        if "browser_ours_first_image_ms" in fig:
            fig["browser_first_image_ratio"] = round(fig["browser_ours_first_image_ms"] /
                                                     fig["browser_orthanc_first_image_ms"], 2)
            fig["browser_scroll_ratio"] = round(fig["browser_ours_scroll_images_per_s"] /
                                                fig["browser_orthanc_scroll_images_per_s"], 2)
        for key, value in fig.items():
            print(f"{key:36} {value}")
        emit("web", fig)


if __name__ == "__main__":
    main()
