"""`meshdcm up`, the README's main job: every node kind plus an embedded PACS on loopback, stopped by Ctrl-C.

The embedded PACS serves the realistic stroke studies (docs/studies.md), as `meshdcm up` does for a user: the
session fixture makes them once per machine (about 1.5 min) into the cache the pacs node reads."""

from __future__ import annotations

import json
import signal


def test_up_serves_the_realistic_studies_and_stops_cleanly(mesh, tmp_path, realistic_studies):
    up = mesh.start("up", "--state", tmp_path / "state", "--mesh", mesh.name)
    up.wait_for_output("stop with Ctrl-C", timeout=60)
    assert "embedded one, with the realistic stroke studies" in up.output
    assert "web UI: http://127.0.0.1:" in up.output and "login token: " in up.output
    # every hint names the mesh: typed as printed, it reaches this mesh and no other
    assert f"meshdcm peers --mesh {mesh.name}" in up.output
    assert f"meshdcm publish find.studies --mesh {mesh.name}" in up.output

    def ready():
        peers = json.loads(mesh.run("peers", "--json", "--wait", "1").stdout)
        pacs = [p for p in peers if p["kind"] == "pacs"]
        return pacs and pacs[0].get("extra", {}).get("pacs", {}).get("embedded", {}).get("ok") and peers
    from conftest import wait_until

    peers = wait_until(ready, 60, interval=0.5, what="the pacs node with its embedded PACS")
    assert {"monitor", "pacs", "perfusion", "index", "web"} <= {p["kind"] for p in peers}
    tail = mesh.start("tail", "--topic", "found", "--json", "--count", "4", "--timeout", "30")
    plain = mesh.start("tail", "--topic", "found", "--count", "4", "--timeout", "30")
    tail.wait_for_output("# tail")
    plain.wait_for_output("# tail")
    mesh.run("publish", "find.studies", "--set", "PatientName=MUSTERMANN*", "--set", "StudyInstanceUID=",
             "--set", "StudyDescription=")
    assert tail.popen.wait(timeout=40) == 0 and plain.popen.wait(timeout=40) == 0
    assert "count=3 status=ok" in next(x for x in plain.output.splitlines() if "found.end" in x)
    lines = [json.loads(line) for line in tail.output.splitlines() if line.startswith("{")]
    assert [line["topic"] for line in lines] == ["found.study"] * 3 + ["found.end"]
    for found in lines[:3]:  # what a worklist shows, not only the UID
        assert {"PatientName", "StudyDate", "ModalitiesInStudy", "StudyInstanceUID"} <= set(found["attributes"])
    found = {line["attributes"]["StudyInstanceUID"]: line["attributes"] for line in lines[:3]}
    for entry in realistic_studies.manifest["studies"]:  # the stroke patient's CT and MR, the control's MR
        study = found[entry["StudyInstanceUID"]]
        assert study["StudyDescription"] == entry["StudyDescription"]
        assert study["NumberOfStudyRelatedInstances"] == str(sum(s["instances"] for s in entry["series"]))
    assert up.stop(signal.SIGINT, timeout=30) == 0
    assert "meshdcm up: stopped" in up.output


def test_up_takes_the_next_web_port_when_8080_is_taken(tmp_path):
    import socket

    from meshdcm.cli.run import _web_settings

    held = socket.socket()
    try:
        held.bind(("127.0.0.1", 8080))
        held.listen(1)
    except OSError:
        pass  # something else holds 8080 already: the same case
    try:
        settings = {"nodes": {}}
        url, env, sock = _web_settings(["web"], settings, None, tmp_path)
        port = settings["nodes"]["web"]["port"]
        assert 8080 < port < 8100 and url == f"http://127.0.0.1:{port}/" and env["MESHDCM_WEB_TOKEN"]
        assert sock.getsockname()[1] == port and env["MESHDCM_WEB_LISTEN_FD"] == str(sock.fileno())
        sock.close()
    finally:
        held.close()


def test_two_meshes_run_side_by_side(tmp_path):
    """`make up MESH=a` beside `make up MESH=b`: own state folders, own web ports, and nodes that meet only their own."""
    from conftest import Mesh, wait_until

    meshes = [Mesh(tmp_path / name) for name in ("a", "b")]
    try:
        ups = []
        for m in meshes:
            m.tmp.mkdir()
            m.env.pop("MESHDCM_MESH")  # the option alone names the mesh, as `make up MESH=...` passes it
            ups.append(m.start("up", "index", "web", "--mesh", m.name))
        for up in ups:
            up.wait_for_output("stop with Ctrl-C", timeout=60)
        urls = [next(x for x in up.output.splitlines() if x.startswith("web UI:")).split()[2] for up in ups]
        assert urls[0] != urls[1]
        stores = [next(x for x in up.output.splitlines() if x.startswith("PACS:")) for up in ups]
        assert all(m.name in s for m, s in zip(meshes, stores, strict=True)) and stores[0] != stores[1]
        for m in meshes:
            def both(m=m):
                peers = json.loads(m.run("peers", "--json", "--wait", "1", "--mesh", m.name).stdout)
                return sorted(p["kind"] for p in peers) == ["index", "web"] and peers
            wait_until(both, 60, interval=0.5, what=f"the index and web nodes of mesh {m.name}, and no other")
        for up in ups:
            assert up.stop(signal.SIGINT, timeout=30) == 0
    finally:
        for m in meshes:
            m.close()
