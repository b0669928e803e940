"""The pacs node in a mesh: find, get (progress, stored.series/study with fetchable URIs), store, errors."""

from __future__ import annotations

import threading

import pytest
from pydicom.dataset import Dataset

from conftest import wait_until
from meshdcm import Message, Node

ANSWERS = ("found", "stored", "progress", "uploaded", "error")


class Client:
    """An in-test node that publishes requests and collects what comes back (on ``topics``)."""

    def __init__(self, mesh_name: str, name: str = "client", topics: tuple[str, ...] = ANSWERS):
        self.node = Node(name, mesh=mesh_name)
        self.got: list[Message] = []
        self.lock = threading.Lock()
        for topic in topics:
            self.node.on(topic)(self._keep)

    def _keep(self, msg: Message) -> None:
        with self.lock:
            self.got.append(msg)

    def replies(self, request: Message, topic: str | None = None) -> list[Message]:
        with self.lock:
            return [m for m in self.got if m.correlation_id == request.message_id and (topic is None or
                                                                                       m.topic == topic)]

    def ask(self, topic: str, ds: Dataset, done: str, timeout: float = 60, **kw) -> list[Message]:
        request = self.node.publish(topic, ds, **kw)
        wait_until(lambda: self.replies(request, done) or [m for m in self.replies(request)
                                                           if m.topic.startswith("error.")], timeout,
                   what=f"{done} for {topic}")
        return self.replies(request)


@pytest.fixture
def pacs_node(mesh, tmp_path):
    cfg = mesh.config("pacs", embedded=True, storage=str(tmp_path / "store"), quiet_seconds=2)
    proc = mesh.start("node", "pacs", "--config", cfg)
    proc.wait_for_output("embedded PACS")
    client = Client(mesh.name)
    client.node.start()
    wait_until(lambda: any(p["kind"] == "pacs" for p in client.node.peers), 10, what="the pacs node")
    assert client.node.wait_for_subscribers("find.studies", 10)
    yield proc, client
    client.node.stop()


def study_query(**values) -> Dataset:
    ds = Dataset()
    for key in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "ModalitiesInStudy", "StudyDescription"):
        setattr(ds, key, "")
    for key, value in values.items():
        setattr(ds, key, value)
    return ds


def test_find_get_and_fetch_through_the_mesh(pacs_node, tmp_path):
    proc, client = pacs_node
    replies = client.ask("find.studies", study_query(PatientName="MESH*"), "found.end")
    studies = [m for m in replies if m.topic == "found.study"]
    end = [m for m in replies if m.topic == "found.end"][0]
    assert len(studies) == 2 and end.meta["count"] == 2 and end.meta["status"] == "ok"
    mr = [m.dataset for m in studies if "MR" in str(m.dataset.get("ModalitiesInStudy", ""))][0]
    none = client.ask("find.studies", study_query(PatientName="NOBODY*"), "found.end")
    assert [m.meta["count"] for m in none if m.topic == "found.end"] == [0]

    get = Dataset()
    get.StudyInstanceUID = mr.StudyInstanceUID
    replies = client.ask("get.study", get, "stored.study", timeout=120)
    series = [m for m in replies if m.topic == "stored.series"]
    study = [m for m in replies if m.topic == "stored.study"][0]
    progress = [m for m in replies if m.topic == "progress.study"]
    assert study.meta["complete"] is True and study.meta["instances"] == sum(m.meta["instances"] for m in series)
    assert len(series) >= 4 and all(m.meta["complete"] for m in series)
    assert progress and progress[-1].meta["done"] == progress[-1].meta["total"] == study.meta["instances"]
    assert all(m.dataset.StudyInstanceUID == mr.StudyInstanceUID and "PixelData" not in m.dataset for m in series)
    # a node elsewhere fetches a series through the URI in the message
    one = series[0]
    mesh_uri = [u for u in one.uris if u.startswith("meshdcm://")][0]
    files = client.node.fetch(mesh_uri, tmp_path / "fetched")
    assert len(files) == one.meta["instances"]
    assert "MESHDCM^TEST" not in proc.output  # the synthetic patient's name never reaches the node's log


def test_unknown_pacs_and_missing_uid_give_error_events(pacs_node):
    _proc, client = pacs_node
    replies = client.ask("find.studies", study_query(), "found.end", meta={"pacs": "nowhere"})
    errors = [m for m in replies if m.topic == "error.pacs"]
    assert errors and "no PACS called 'nowhere'" in errors[0].meta["error"]["reason"]
    assert "use one of: embedded" in errors[0].meta["error"]["action"]
    replies = client.ask("get.study", Dataset(), "stored.study")
    assert "names no StudyInstanceUID" in [m for m in replies if m.topic == "error.pacs"][0].meta["error"]["reason"]


def test_an_upload_tries_every_uri_the_message_carries(pacs_node, tmp_path):
    """A replayed store request named a node id from before its restart first: the pacs node tried only that URI
    and dead-lettered the upload, though the file:// URI beside it named the same files on this machine."""
    from meshdcm import synthetic

    _proc, client = pacs_node
    files = synthetic.write_study(synthetic.mr_brain(seed=78, size="small", series=("t1",)), tmp_path / "series")
    folder = files[0].parent
    header = synthetic_header(files[0])
    gone = f"meshdcm://{'ab' * 16}/results/{folder.name}"  # a node that is not in the mesh (any more)
    replies = client.ask("store.series", header, "uploaded.series", uris=[gone, folder.resolve().as_uri()])
    assert [m.meta["count"] for m in replies if m.topic == "uploaded.series"] == [len(files)], \
        [m.meta for m in replies]
    query = study_query(StudyInstanceUID=header.StudyInstanceUID)
    found = client.ask("find.studies", query, "found.end")
    assert [m.meta["count"] for m in found if m.topic == "found.end"] == [1]


def synthetic_header(path) -> Dataset:
    from pydicom import dcmread

    ds = dcmread(path, stop_before_pixels=True)
    out = Dataset()
    out.StudyInstanceUID, out.SeriesInstanceUID = ds.StudyInstanceUID, ds.SeriesInstanceUID
    return out


@pytest.mark.parametrize("options, says", [
    ({"scp_prot": 104}, "[nodes.pacs] has unknown option scp_prot"),
    ({"scp_port": "104"}, "[nodes.pacs] scp_port = '104': a whole number"),
    ({"use": "nowhere"}, "[nodes.pacs] use: no PACS called nowhere"),
    ({"servers": 'a = { ae_title = "A", hots = "x" }'}, "[nodes.pacs.servers.a]: PACS 'a': unknown settings"),
])
def test_a_configuration_mistake_stops_the_node_at_start_naming_it(mesh, tmp_path, options, says):
    """A typo in [nodes.pacs] used to surface (as a HandlerError, or not at all) only when a message needed it."""
    if "servers" in options:  # a TOML table, written as such
        cfg = tmp_path / "pacs.toml"
        cfg.write_text(f'[nodes.pacs]\nstorage = "{tmp_path / "store"}"\n[nodes.pacs.servers]\n{options["servers"]}\n')
    else:
        cfg = mesh.config("pacs", storage=str(tmp_path / "store"), **options)
    result = mesh.run("node", "pacs", "--config", cfg, check=False, timeout=60)
    assert result.returncode == 2 and says in result.stderr, result.stderr


def test_embedded_size_chooses_the_demo_studies():
    from meshdcm.errors import ConfigError
    from nodes.pacs import realistic_variant

    assert [realistic_variant(s) for s in ("small", "full", "realistic", "realistic-small")] == [
        None, None, "full", "small"]
    with pytest.raises(ConfigError, match="embedded_size = 'huge': use one of small, full, realistic, realistic-small"):
        realistic_variant("huge")
