"""The web node's API against a real mesh: a pacs node with its embedded PACS, a perfusion node, the index node, a
node whose handler fails on stored.study (a real dead letter: tests/nodes/ledger.py), and the web node itself
serving over real uvicorn."""

from __future__ import annotations

import json
import re
import sqlite3
import threading

import httpx
import numpy as np
import pytest

from conftest import wait_until
from meshdcm import synthetic
from meshdcm.config import NodeConfig
from web_fixtures import SIGNER, find_sr_text, login_csrf, users_file

TOKEN = "api-test-token"  # noqa: S105 - a test's own login token


@pytest.fixture
def web_mesh(mesh, tmp_path):
    import nodes.web as web

    pacs = mesh.start("node", "pacs", "--config", mesh.config("pacs", embedded=True, storage=str(tmp_path / "store"),
                                                             quiet_seconds=2))
    mesh.start("node", "perfusion", "--config", mesh.config("perfusion", work=str(tmp_path / "perf")))
    mesh.start("node", "index", "--config", mesh.config("index", path=str(tmp_path / "index.sqlite3")))
    (tmp_path / "broken").touch()  # the converter fails on stored.study while this file exists
    ct_uid = str(next(iter(synthetic.head_ct(seed=1, size="small"))).StudyInstanceUID)  # the embedded PACS's CT
    mesh.node("ledger", "--name", "converter", ledger=str(tmp_path / "ledgers"), topic="stored.study",
              where=f'StudyInstanceUID != "{ct_uid}"', max_attempts=1, fail_when="StudyInstanceUID exists",
              fail_while=str(tmp_path / "broken"))  # (the CT study is opened later: it must not count)
    node = web.create(NodeConfig(name="web", kind="web", mesh=mesh.name,
                                 options={"port": 0, "token": TOKEN, "data": str(tmp_path / "web"),
                                          "users_file": str(users_file(tmp_path / "users"))}))
    node.start()
    text = pacs.wait_for_output("embedded PACS", timeout=60)
    host, port = re.search(r"embedded PACS \S+ on ([\d.]+):(\d+)", text).groups()
    wait_until(lambda: {"pacs", "perfusion", "index", "ledger"} <= {p["kind"] for p in node.peers}, 30,
               what="the pacs, perfusion, index and converter peers")
    assert node.wait_for_subscribers("find.studies", 10) and node.wait_for_subscribers("stored.series", 10)
    client = httpx.Client(base_url=node.extra["web"], timeout=30)
    csrf = login_csrf(client, SIGNER[1], user=SIGNER[0])  # a named user: the token may not sign
    yield node, client, {"X-CSRF-Token": csrf}, (host, int(port))
    client.close()
    node.stop()


def ledger_count(path) -> int:
    """How many messages the converter (tests/nodes/ledger.py) handled: its side effects."""
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COALESCE(SUM(count), 0) FROM seen").fetchone()[0]


def search(client, headers, ends: int = 2, timeout: float = 30, **query) -> dict:  # the pacs node and (once it
    sid = client.post("/api/search", json=query, headers=headers).json()["id"]  # knows) the index answer
    return wait_until(lambda: len((s := client.get(f"/api/search/{sid}").json())["ends"]) >= ends and s, timeout,
                      what=f"{ends} found.end for {query}")


def test_the_radiologists_story_through_the_api(web_mesh, tmp_path):
    node, client, csrf, (pacs_host, pacs_port) = web_mesh

    # the event stream tells the page what changed
    events: list[dict] = []
    def listen():
        with httpx.Client(base_url=node.extra["web"], cookies=client.cookies, timeout=60) as c:
            with c.stream("GET", "/api/events") as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
                        if len(events) >= 3:
                            return
    threading.Thread(target=listen, daemon=True).start()

    # study browser: search by name (a prefix becomes a wildcard), modality, accession, date range
    found = search(client, csrf, ends=1, patient="MESHDCM")  # the index knows nothing yet: only the PACS answers
    assert len(found["studies"]) == 2 and [e["count"] for e in found["ends"]] == [2]
    # now the index remembers what the PACS answered (once it has indexed both answers: it hears them beside the web,
    # and stays silent while it knows none)
    def both_answer():
        try:
            f = search(client, csrf, patient="MESHDCM", timeout=5)
        except AssertionError:
            return None
        return f if sorted(e["count"] for e in f["ends"]) == [2, 2] else None
    found = wait_until(both_answer, 60, interval=0.5, what="the index to know both studies")
    assert len(found["studies"]) == 2
    sources = {s["ModalitiesInStudy"]: sorted(s["sources"]) for s in found["studies"]}
    assert sources == {"CT": ["embedded", "index"], "MR": ["embedded", "index"]}  # de-duplicated by UID
    mr = [s for s in found["studies"] if "MR" in s["ModalitiesInStudy"]][0]
    assert len(search(client, csrf, patient="MESHDCM", modality="MR")["studies"]) == 1
    assert search(client, csrf, accession=mr["AccessionNumber"])["studies"][0]["StudyInstanceUID"] == \
        mr["StudyInstanceUID"]
    day = f"{mr['StudyDate'][:4]}-{mr['StudyDate'][4:6]}-{mr['StudyDate'][6:]}"
    assert mr["StudyInstanceUID"] in [s["StudyInstanceUID"] for s in
                                      search(client, csrf, date_from=day, date_to=day)["studies"]]
    assert search(client, csrf, ends=1, patient="NOBODY")["studies"] == []
    wait_until(lambda: any(e["type"] == "search" for e in events), 10, what="a search event on the stream")

    # study page: get.study, progress per series, thumbnails, derived perfusion maps with their node
    uid = mr["StudyInstanceUID"]
    assert client.post(f"/api/studies/{uid}/open", headers=csrf).json()["state"] == "fetching"
    study = wait_until(lambda: (s := client.get(f"/api/studies/{uid}").json())["state"] == "complete" and s, 60,
                       what="the study to arrive")
    originals = [s for s in study["series"] if not s["derived"]]
    assert len(originals) == 5 and all(s["complete"] and s["arrived"] == s["expected"] > 0 for s in originals)
    assert study["done"] == study["total"] == sum(s["expected"] for s in originals)
    maps = wait_until(lambda: len(m := [s for s in client.get(f"/api/studies/{uid}").json()["series"]
                                        if s["map"]]) >= 5 and m, 90, what="the perfusion maps")
    assert {m["map"] for m in maps} >= {"CBF", "CBV", "MTT", "Tmax", "TTP"} and {m["node"] for m in maps} == {"perfusion"}
    dsc = [s for s in originals if "perf" in s["description"]][0]
    assert all(m["derived_from"] == dsc["uid"] for m in maps)
    thumb = client.get(f"/api/series/{originals[0]['uid']}/thumbnail")
    assert thumb.status_code == 200 and thumb.content[:8] == b"\x89PNG\r\n\x1a\n"

    # image viewer data: int16 slices of an MR series, float32 values of a map
    info = client.get(f"/api/series/{originals[0]['uid']}/info").json()
    assert info["kind"] == "mr" and info["dtype"] == "int16" and info["count"] == originals[0]["expected"]
    first = client.get(f"/api/series/{originals[0]['uid']}/slices/0")
    assert len(first.content) == info["rows"] * info["cols"] * 2
    cbf = [m for m in maps if m["map"] == "CBF"][0]
    minfo = client.get(f"/api/series/{cbf['uid']}/info").json()
    assert minfo["kind"] == "map" and minfo["dtype"] == "float32" and minfo["unit"] == cbf["unit"]
    values = np.frombuffer(client.get(f"/api/series/{cbf['uid']}/slices/{minfo['count'] // 2}").content, "<f4")
    assert values.size == minfo["rows"] * minfo["cols"] and np.nanmax(values) > 0

    # report editor: protocol pre-filled, measurements with provenance, priors from the index, drafts
    draft = client.get(f"/api/studies/{uid}/draft").json()
    assert draft["saved"] is None and "ep2d_perf_DSC" in draft["sections"]["protocol"]
    measures = client.get(f"/api/studies/{uid}/measurements").json()["measurements"]
    cbf_mean = [m for m in measures if m["label"].startswith("CBF mean")][0]
    assert cbf_mean["node"] == "perfusion" and cbf_mean["source_series"] == "ep2d_perf_DSC" and cbf_mean["value"] > 0
    assert client.get(f"/api/studies/{uid}").json()["priors_state"] == "done"  # the index answered: none yet
    sections = dict(draft["sections"], clinical="Kopfschmerz seit 2 Tagen", findings=f"CBF {cbf_mean['value']} — ok",
                    impression="Keine Perfusionsstörung (Müller)")
    assert client.put(f"/api/studies/{uid}/draft", json=sections, headers=csrf).json()["saved"]
    assert client.get(f"/api/studies/{uid}/draft").json()["sections"] == sections

    # sign: SR -> store.series -> the pacs node uploads it -> uploaded.series; then it is in the PACS
    rep = client.post(f"/api/studies/{uid}/sign", json=sections, headers=csrf).json()
    assert rep["state"] == "sent" and rep["signed_by"] == "Doe^Jane"
    assert client.post(f"/api/studies/{uid}/sign", json=sections, headers=csrf).status_code == 409  # signed once
    rep = wait_until(lambda: [r for r in client.get(f"/api/studies/{uid}").json()["reports"]
                              if r["state"] != "sent"], 30, what="the upload of the report")[0]
    assert rep["state"] == "stored" and "embedded" in rep["detail"]
    assert client.get(f"/api/studies/{uid}/draft").json()["signed"]
    texts = find_sr_text(pacs_host, pacs_port, uid, tmp_path / "sr")
    assert texts and "Keine Perfusionsstörung (Müller)" in texts[-1] and "Kopfschmerz seit 2 Tagen" in texts[-1]

    # the index kept the signed report: it is a prior report when the patient's other study is opened
    ct = [s for s in found["studies"] if "CT" in s["ModalitiesInStudy"]][0]["StudyInstanceUID"]
    client.post(f"/api/studies/{ct}/open", headers=csrf)
    priors = wait_until(lambda: (s := client.get(f"/api/studies/{ct}").json())["priors_state"] == "done"
                        and s["priors"], 30, what="the prior report from the index")
    assert priors[0]["study"] == uid and "Keine Perfusionsstörung (Müller)" in priors[0]["text"]

    # timeline: who published what about the study (the web node's own view and the index's)
    timeline = client.get(f"/api/studies/{uid}/timeline").json()["events"]
    topics = {(e["node"], e["topic"]) for e in timeline}
    assert {("web", "get.study"), ("pacs", "stored.series"), ("pacs", "stored.study"), ("web", "store.series"),
            ("pacs", "uploaded.series"), ("perfusion", "stored.series")} <= topics
    assert any(e["source"] == "index" for e in timeline)  # merged with the index's got.timeline
    progress = sum(e.get("count", 1) for e in timeline if e["topic"] == "progress.study")
    assert progress == client.get(f"/api/studies/{uid}").json()["total"]  # one per instance, folded into runs

    # errors in place, with the dead letter they left; retry it over the mesh
    study = client.get(f"/api/studies/{uid}").json()
    error = wait_until(lambda: [e for e in client.get(f"/api/studies/{uid}").json()["errors"] if e["dead_letter"]],
                       30, what="the converter's dead letter")[0]
    letter = error["dead_letter"]
    assert error["node"] == "converter" and letter["node"] == "converter" and letter["id"]
    letters = client.post("/api/dead/list", json={"wait": 3}, headers=csrf).json()
    assert [(d["node"], d["id"], d["study"]) for d in letters["letters"]] == [("converter", letter["id"], uid)]
    refused = client.post("/api/dead/drop", json={"node": "converter", "id": "nope", "wait": 20}, headers=csrf)
    assert refused.status_code == 409 and "nope" in refused.json()["error"]
    silent = client.post("/api/dead/retry", json={"node": "nobody", "id": "1", "wait": 0.5}, headers=csrf)
    assert silent.status_code == 504 and "meshdcm dead retry nobody 1" in silent.json()["error"]
    (tmp_path / "broken").unlink()  # the operator fixed the cause, then re-drives the letter from the page
    assert client.post("/api/dead/retry", json={**letter, "wait": 20}, headers=csrf).json()["ok"] is True
    wait_until(lambda: ledger_count(tmp_path / "ledgers" / "converter.sqlite") == 1, 20,
               what="the re-driven stored.study handled by the converter")

    # mesh monitor and the desktop viewer button
    mesh_view = client.get("/api/mesh").json()
    kinds = {n["kind"]: n for n in mesh_view["nodes"]}
    assert {"pacs", "perfusion", "index", "ledger"} <= set(kinds) and kinds["pacs"]["state"] == "alive"
    assert any(t["topic"] == "stored.series" and "MR" in t["where"] for t in kinds["perfusion"]["topics"])
    assert mesh_view["rates"]["total_per_s"] > 0 and any(e["node"] == "converter" for e in mesh_view["errors"])
    assert client.post("/api/viewer/open", json={"study": uid}, headers=csrf).json()["request"]
    assert any(e["type"] == "study" for e in events) or len(events) >= 3


@pytest.fixture
def web_alone(mesh, tmp_path):
    import nodes.web as web

    node = web.create(NodeConfig(name="web", kind="web", mesh=mesh.name,
                                 options={"port": 0, "token": TOKEN, "data": str(tmp_path / "web"),
                                          "users_file": str(users_file(tmp_path / "users"))}))
    node.start()
    client = httpx.Client(base_url=node.extra["web"], timeout=30)
    yield node, client, {"X-CSRF-Token": login_csrf(client, SIGNER[1], user=SIGNER[0])}
    client.close()
    node.stop()


def test_bad_requests_get_clear_answers(web_alone):
    node, client, csrf = web_alone
    assert client.post("/api/studies/1.2.3/sign", json={"findings": "x"}, headers=csrf).json()["error"].startswith(
        "no image of this study has arrived yet")
    assert client.get("/api/studies/not-a-uid").status_code == 400
    assert "unknown report section" in client.put("/api/studies/1.2.3/draft", json={"bogus": "x"},
                                                  headers=csrf).json()["error"]
    assert client.post("/api/search", json={"date_from": "yesterday"}, headers=csrf).status_code == 400
    assert client.post("/api/search", content=b"{not json", headers=csrf).status_code == 400
    missing = client.get("/api/series/1.2.3/info")
    assert missing.status_code == 404 and "open its study first" in missing.json()["error"]
    assert client.get("/api/search/unknown").status_code == 404


def test_a_series_held_by_another_node_is_fetched_into_the_cache(web_alone, tmp_path):
    from meshdcm import Node, synthetic

    node, client, csrf = web_alone
    files = synthetic.write_study(synthetic.head_ct(seed=5, size="small"), tmp_path / "elsewhere")
    holder = Node("holder", mesh=node.config.mesh)
    holder.serve("store", tmp_path / "elsewhere")
    with holder:
        assert holder.wait_for_peers(1, 10) and holder.wait_for_subscribers("stored.series", 10)
        from pydicom import dcmread

        header = dcmread(files[0], stop_before_pixels=True)
        holder.publish("stored.series", header, uris=[holder.uri_for(files[0].parent)],  # no file:// URI
                       meta={"instances": len(files), "complete": True})
        uid = str(header.SeriesInstanceUID)
        wait_until(lambda: client.get(f"/api/studies/{header.StudyInstanceUID}").json()["series"], 10,
                   what="the stored.series")
        info = client.get(f"/api/series/{uid}/info").json()
        assert info["count"] == len(files) and info["kind"] == "ct"
        ref = dcmread(files[0])
        first = np.frombuffer(client.get(f"/api/series/{uid}/slices/0").content, "<i2").reshape(ref.Rows, ref.Columns)
        assert np.array_equal(first, ref.pixel_array.astype(np.int32) + int(ref.RescaleIntercept))
        assert len(list((tmp_path / "web" / "cache" / uid).glob("*.dcm"))) == len(files)


def test_the_image_cache_stays_within_its_size_and_fetches_a_removed_series_again(mesh, tmp_path):
    """cache_max_gb so small that only the series on screen (the 4 in memory) and the one just fetched may stay:
    of six series fetched from another node some are removed from disk, and asked for again, one comes back."""
    from pydicom import dcmread

    import nodes.web as web
    from meshdcm import Node

    node = web.create(NodeConfig(name="web", kind="web", mesh=mesh.name, options={
        "port": 0, "token": TOKEN, "data": str(tmp_path / "web"), "cache_max_gb": 1e-9}))
    holder = Node("holder", mesh=mesh.name)
    holder.serve("store", tmp_path / "elsewhere")
    series = {}
    for seed in range(6):
        files = synthetic.write_study(synthetic.head_ct(seed=seed, size="small"), tmp_path / "elsewhere" / str(seed))
        series[str(dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)] = files
    cache = tmp_path / "web" / "cache"
    with node, holder, httpx.Client(base_url=node.extra["web"], timeout=30) as client:
        login_csrf(client, TOKEN)
        assert holder.wait_for_peers(1, 10) and holder.wait_for_subscribers("stored.series", 10)
        for files in series.values():
            header = dcmread(files[0], stop_before_pixels=True)
            holder.publish("stored.series", header, uris=[holder.uri_for(files[0].parent)],
                           meta={"instances": len(files), "complete": True})
        for uid in series:  # a page opens each series in turn, once the web node has heard of it
            info = wait_until(lambda u=uid: (r := client.get(f"/api/series/{u}/info")).status_code == 200 and r.json(),
                              30, what=f"series {uid} known to the web node")
            assert info["count"] == 8
            assert client.get(f"/api/series/{uid}/slices/0").status_code == 200
        cached = wait_until(lambda: (c := {p.name for p in cache.iterdir()}) and len(c) <= 5 and c, 30,
                            what="the cache within 4 series in memory + 1 just fetched")
        removed = sorted(set(series) - cached)
        assert removed, f"nothing was removed from a cache of {len(cached)} series"
        uid = removed[0]
        ref = dcmread(series[uid][3])
        again = client.get(f"/api/series/{uid}/slices/3")
        assert again.status_code == 200, again.text
        pixels = np.frombuffer(again.content, "<i2").reshape(ref.Rows, ref.Columns)
        assert np.array_equal(pixels, ref.pixel_array.astype(np.int32) + int(ref.RescaleIntercept))
        assert len(list((cache / uid).glob("*.dcm"))) == 8  # fetched again


def test_a_report_the_pacs_node_cannot_upload_shows_why(mesh, web_alone, tmp_path):
    from pydicom import dcmread

    from meshdcm import Node, synthetic

    node, client, csrf = web_alone
    pacs = mesh.start("node", "pacs", "--config", mesh.config("pacs", storage=str(tmp_path / "store")))  # no PACS
    files = synthetic.write_study(synthetic.head_ct(seed=6, size="small"), tmp_path / "ct")
    header = dcmread(files[0], stop_before_pixels=True)
    study = str(header.StudyInstanceUID)
    with Node("scanner", mesh=node.config.mesh) as scanner:
        wait_until(lambda: any(p["kind"] == "web" for p in scanner.peers), 10, what="the web node")
        assert scanner.wait_for_subscribers("stored.series", 10)
        scanner.publish("stored.series", header, uris=[files[0].parent.as_uri()], meta={"instances": len(files)})
        wait_until(lambda: client.get(f"/api/studies/{study}").json()["series"], 10, what="the stored.series")
    wait_until(lambda: any(p["kind"] == "pacs" for p in node.peers), 30, what="the pacs node")
    assert node.wait_for_subscribers("store.series", 10)
    assert client.post(f"/api/studies/{study}/sign", json={"impression": "ok"}, headers=csrf).json()["state"] == "sent"
    report = wait_until(lambda: [r for r in client.get(f"/api/studies/{study}").json()["reports"]
                                 if r["state"] != "sent"], 30, what="the pacs node's answer")[0]
    assert report["state"] == "error" and "no PACS configured" in report["detail"]
    assert "[nodes.pacs.servers.NAME]" in report["detail"]  # what to do next
    pacs.stop()
