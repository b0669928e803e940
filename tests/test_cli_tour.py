"""The README's tour as a new user types it: the traps a first try met, each as a real `meshdcm` process."""

from __future__ import annotations

import json
import subprocess

from mesh_fixtures import write_series_files


def test_options_may_follow_the_files_of_publish(mesh, tmp_path):
    files = tmp_path / "files"
    uids = write_series_files(files, [("MR", "ep2d_perf"), ("CT", "Head")])
    tail = mesh.start("tail", "--topic", "stored", "--count", "2", "--timeout", "60")
    tail.wait_for_output("# tail of mesh", timeout=30)
    # an option between the topic and the folder: argparse alone refused this ("unrecognized arguments")
    env_mesh = mesh.env.pop("MESHDCM_MESH")
    try:
        result = mesh.run("publish", "stored.series", "--mesh", env_mesh, files, "--wait", "5")
    finally:
        mesh.env["MESHDCM_MESH"] = env_mesh
    assert "published 2 messages on stored.series" in result.stdout
    assert tail.popen.wait(timeout=60) == 0
    assert all(uid in tail.output for uid in uids)


def test_a_closed_pipe_ends_the_output_quietly(mesh, tmp_path):
    # more lines than a pipe holds, so the writer meets the closed pipe (`... | head -1`)
    files = tmp_path / "files"
    write_series_files(files, [("MR", f"series {i}") for i in range(1200)])
    proc = subprocess.Popen(mesh.argv("filter-check", 'Modality == "MR"', files), env=mesh.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"match")
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_tail_shows_what_a_query_found(mesh, tmp_path):
    """A found.study shows what a worklist shows (the user searched for it); other topics never show the patient."""
    tail = mesh.start("tail", "--topic", "found", "--count", "1", "--timeout", "60")
    tail_json = mesh.start("tail", "--topic", "found", "--json", "--count", "1", "--timeout", "60")
    for t in (tail, tail_json):
        t.wait_for_output("# tail of mesh", timeout=30)
    mesh.run("publish", "found.study", "--set", "PatientName=Doe^Jane", "--set", "PatientID=P-0042",
             "--set", "StudyDate=20240103", "--set", "ModalitiesInStudy=MR\\SR", "--set", "StudyDescription=Head",
             "--set", "NumberOfStudyRelatedSeries=7", "--set", "NumberOfStudyRelatedInstances=412",
             "--set", "StudyInstanceUID=1.2.826.0.1.3680043.10.1.7")
    assert tail.popen.wait(timeout=60) == 0 and tail_json.popen.wait(timeout=60) == 0
    line = next(x for x in tail.output.splitlines() if "found.study" in x)
    for text in ("PatientName=Doe^Jane", "PatientID=P-0042", "StudyDate=20240103", "ModalitiesInStudy=MR\\SR",
                 "StudyDescription=Head", "NumberOfStudyRelatedSeries=7", "NumberOfStudyRelatedInstances=412",
                 "StudyInstanceUID=1.2.826.0.1.3680043.10.1.7"):
        assert text in line, line
    shown = next(json.loads(x) for x in tail_json.output.splitlines() if x.startswith("{"))["attributes"]
    assert shown["PatientName"] == "Doe^Jane" and shown["ModalitiesInStudy"] == "MR\\SR"
    assert shown["NumberOfStudyRelatedInstances"] == "412"


def test_a_one_shot_work_item_is_handed_over_without_a_restart_warning(mesh, tmp_path):
    out = tmp_path / "work.txt"
    worker = mesh.node("recorder", "--group", "convert", out=str(out), topic="stored")
    worker.wait_for_output("started on", timeout=30)
    files = tmp_path / "files"
    write_series_files(files, [("MR", "a")])
    result = mesh.run("publish", "stored.series", files, "--wait", "10")
    assert result.returncode == 0 and "published 1 message" in result.stdout
    # a one-shot tool never restarts: "they go out again when this node restarts" would be untrue
    assert "restarts" not in result.stderr, result.stderr



def test_a_bad_set_value_is_refused_without_echoing_it(mesh):
    result = mesh.run("publish", "stored.series", "--set", "PatientBirthDate=1970-01-31", "--wait", "0.5", check=False)
    assert result.returncode == 2
    assert "--set PatientBirthDate: not a valid DA value (the form is YYYYMMDD" in result.stderr
    assert "1970-01-31" not in result.stderr + result.stdout  # a birth date is patient data
    # a C-FIND date range is a valid query value
    ok = mesh.run("publish", "find.studies", "--set", "StudyDate=20240101-20240131", "--wait", "0.5")
    assert "published 1 message" in ok.stdout


def test_publish_never_reports_success_to_a_node_that_did_not_confirm(mesh, tmp_path):
    """A one-shot publisher printed "published 1 message" while announced nodes never got it: a node it was told of
    that has not answered (here a static peer that is down) is named, and the status is 1."""
    from ports import free_port

    silent = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    result = mesh.run("publish", "stored.series", "--set", "Modality=MR", "--peer", silent, "--wait", "2",
                      check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "had not confirmed they receive stored.series" in result.stderr and silent in result.stderr
