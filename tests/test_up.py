"""`meshdcm up`, the README's main job: every node kind plus an embedded PACS on loopback, stopped by Ctrl-C."""

from __future__ import annotations

import json
import signal


def test_up_serves_a_search_and_stops_cleanly(mesh, tmp_path):
    up = mesh.start("up", "--state", tmp_path / "state", "--mesh", mesh.name)
    up.wait_for_output("stop with Ctrl-C", timeout=30)
    assert "embedded one, with synthetic studies" in up.output
    assert "web UI: http://127.0.0.1:" in up.output and "login token: " in up.output

    def ready():
        peers = json.loads(mesh.run("peers", "--json", "--wait", "1").stdout)
        pacs = [p for p in peers if p["kind"] == "pacs"]
        return pacs and pacs[0].get("extra", {}).get("pacs", {}).get("embedded", {}).get("ok") and peers
    from conftest import wait_until

    peers = wait_until(ready, 60, interval=0.5, what="the pacs node with its embedded PACS")
    assert {"monitor", "pacs", "perfusion", "index", "web"} <= {p["kind"] for p in peers}
    tail = mesh.start("tail", "--topic", "found", "--json", "--count", "3", "--timeout", "30")
    tail.wait_for_output("# tail")
    mesh.run("publish", "find.studies", "--set", "PatientName=MESH*", "--set", "StudyInstanceUID=",
             "--set", "StudyDescription=")
    assert tail.popen.wait(timeout=40) == 0
    topics = [json.loads(line)["topic"] for line in tail.output.splitlines() if line.startswith("{")]
    assert topics == ["found.study", "found.study", "found.end"]
    assert up.stop(signal.SIGINT, timeout=30) == 0
    assert "meshdcm up: stopped" in up.output


def test_up_takes_the_next_web_port_when_8080_is_taken(tmp_path):
    import socket

    from meshdcm.cli.mesh import _web_settings

    held = socket.socket()
    try:
        held.bind(("127.0.0.1", 8080))
        held.listen(1)
    except OSError:
        pass  # something else holds 8080 already: the same case
    try:
        settings = {"nodes": {}}
        url, env = _web_settings(["web"], settings, None, tmp_path)
        port = settings["nodes"]["web"]["port"]
        assert 8080 < port < 8100 and url == f"http://127.0.0.1:{port}/" and env["MESHDCM_WEB_TOKEN"]
    finally:
        held.close()
