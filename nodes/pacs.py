"""pacs: the bridge between the mesh and PACS (C-FIND, C-MOVE, C-GET, C-STORE, DICOMweb).

Topics (docs/pacs.md):
- ``find.studies`` / ``find.series`` / ``find.instances``: the body is a C-FIND identifier. Answered with one
  ``found.study`` / ``found.series`` / ``found.instance`` per match (correlated with the request), then
  ``found.end`` whose meta says the count, or the failure.
- ``get.study`` / ``get.series``: retrieve by the PACS' method (C-MOVE to this node's storage SCP, C-GET, WADO-RS),
  with ``progress.study`` events (done/total), ``stored.instance`` per instance when ``instance_events`` is on,
  ``stored.series`` when a series is complete (counts from C-FIND), ``stored.study`` when all are.
- data pushed to the storage SCP without warning is announced once its study has been quiet ``quiet_seconds``.
- ``store.instance`` / ``store.series``: the files named by the message's URIs are uploaded (C-STORE or STOW-RS);
  then ``uploaded.series``, or an error event.
- ``stored.series`` of a *derived* series (meta ``derived_from``: perfusion maps, registrations, reformats made by
  other nodes): archived the same way in the PACS, so results outlive the analysis node's work folder
  (``keep_days``) — unless ``archive_derived = false``; ``archive_where`` (a filter) narrows what goes.

Every ``stored.*`` message carries ``meshdcm://`` URIs (the store is served over the control socket) and ``file://``
URIs for nodes on the same machine.

Options (``[nodes.pacs]``): ``ae_title`` (MESHDCM), ``scp_host`` (127.0.0.1), ``scp_port`` (0: ephemeral),
``storage`` (folder), ``instance_events`` (false), ``quiet_seconds`` (10), ``embedded`` (false: start the embedded
PACS with the synthetic studies), ``embedded_retrieve`` (get; docs/pacs.md says why not move), ``use`` (names of the PACS to use; default all), and one table per PACS in
``[nodes.pacs.servers.NAME]`` with ``ae_title``, ``host``, ``port``, ``dicomweb_url``, ``retrieve``, ``store_method``;
``archive_derived`` (true), ``archive_where`` (a filter; default every derived series), ``archive_to`` (the PACS
that receives them; default the first).

``overwrite_instances`` (false): a second copy of an instance the storage SCP already holds (same SOP Instance UID,
from any AE) is answered success and dropped, the first copy kept; true lets the new copy replace it (docs/pacs.md).
Instances the SCP refuses (disk full, no usable UIDs) or sets aside (undecodable) are ``error.pacs`` events naming them.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from meshdcm import (
    ConfigError, HandlerError, Message, Node, NodeConfig, TransferError, data_dir, node_options, path_part, topics,
)
from meshdcm.pacs import Pacs, PacsError, StorageSCP, echo, find, retrieve, store
from meshdcm.pacs.embedded import EmbeddedPacs

log = logging.getLogger("meshdcm.pacs.node")

LEVELS = {topics.FIND_STUDIES: ("STUDY", topics.FOUND_STUDY), topics.FIND_SERIES: ("SERIES", topics.FOUND_SERIES),
          topics.FIND_INSTANCES: ("IMAGE", topics.FOUND_INSTANCE)}
#: Return keys every answer of a level carries, besides those the request asks for: what a worklist shows.
WORKLIST_KEYS = {
    "STUDY": ("PatientName", "PatientID", "StudyDate", "StudyTime", "AccessionNumber", "StudyDescription",
              "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "StudyInstanceUID"),
    "SERIES": ("Modality", "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances", "StudyInstanceUID",
               "SeriesInstanceUID"),
    "IMAGE": ("InstanceNumber", "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"),
}
SERIES_KEYS = ("SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "Modality", "NumberOfSeriesRelatedInstances")


def header_only(ds: Dataset) -> Dataset:
    out = Dataset()
    for elem in ds:
        if elem.tag.group != 0x7FE0:
            out.add(elem)
    return out


@dataclass(frozen=True)
class PacsOptions:
    """``[nodes.pacs]`` (the module docstring says what each does)."""

    storage: str = ""
    ae_title: str = "MESHDCM"
    scp_host: str = "127.0.0.1"
    scp_port: int = 0
    instance_events: bool = False
    quiet_seconds: float = 10.0
    overwrite_instances: bool = False
    embedded: bool = False
    embedded_size: str = "small"
    embedded_retrieve: str = "get"
    use: list[str] = field(default_factory=list)
    servers: dict = field(default_factory=dict)
    archive_derived: bool = True
    archive_where: str = ""
    archive_to: str | None = None


def create(config: NodeConfig) -> Node:
    if config.log_level != "DEBUG":  # pynetdicom logs identifiers (patient names) at INFO
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    opts = node_options("pacs", PacsOptions, config.options)
    storage = Path(opts.storage or data_dir(config.name))
    storage.mkdir(parents=True, exist_ok=True)
    node = Node(config=config, capabilities=("dicom", "dicomweb"))
    node.serve("store", storage)
    ae_title = opts.ae_title
    servers: dict[str, Pacs] = {}
    for name, d in opts.servers.items():
        if not isinstance(d, dict):
            raise ConfigError(f"[nodes.pacs.servers.{name}] must be a table (ae_title, host, port, ...)")
        try:
            servers[name] = Pacs.from_dict(name, {"calling_ae": ae_title, "move_destination": ae_title, **d})
        except (TypeError, ValueError, KeyError) as exc:
            raise ConfigError(f"[nodes.pacs.servers.{name}]: {exc}") from exc
    if opts.use:
        missing = [n for n in opts.use if n not in servers]
        if missing:
            raise ConfigError(f"[nodes.pacs] use: no PACS called {', '.join(missing)} in [nodes.pacs.servers]")
        servers = {n: servers[n] for n in opts.use}
    announce_instances = opts.instance_events

    def uris_for(path: Path) -> list[str]:
        return [node.uri_for(path), path.resolve().as_uri()]

    def on_quiet(study_uid: str, counts: dict[str, int]) -> None:
        """Data pushed without warning: announce it once the study has been quiet."""
        folder = storage / study_uid
        for series_uid, count in counts.items():
            files = sorted((folder / series_uid).glob("*.dcm"))
            if files:
                publish_series(files[0], count, complete=None)
        publish_study(study_uid, sum(counts.values()), complete=None)

    def on_stored(instance) -> None:
        if announce_instances:
            node.publish(topics.STORED_INSTANCE, header_only(instance.header), uris=uris_for(instance.path))

    def on_failed(failure) -> None:
        """An instance the storage SCP refused, lost or set aside (it logged it): an error event naming it."""
        node._error_event("storage", failure.reason, failure.action, sop_instance_uid=failure.sop_instance_uid,
                          study_instance_uid=failure.study_uid, calling_ae=failure.calling_ae, status=failure.status,
                          kept=str(failure.kept) if failure.kept else None)

    scp = StorageSCP(storage, ae_title=ae_title, host=opts.scp_host, port=opts.scp_port, on_stored=on_stored,
                     on_quiet=on_quiet, quiet_seconds=opts.quiet_seconds, overwrite=opts.overwrite_instances,
                     on_failed=on_failed)

    def publish_series(example: Path, count: int, complete: bool | None, reply_to: Message | None = None):
        from pydicom import dcmread

        ds = header_only(dcmread(example, stop_before_pixels=True))
        meta = {"instances": count, "complete": complete}
        node.publish(topics.STORED_SERIES, ds, reply_to=reply_to, uris=uris_for(example.parent), meta=meta)

    def publish_study(study_uid: str, count: int, complete: bool | None, reply_to: Message | None = None,
                      pacs: str | None = None):
        ds = Dataset()
        ds.StudyInstanceUID = study_uid
        ds.NumberOfStudyRelatedInstances = count
        node.publish(topics.STORED_STUDY, ds, reply_to=reply_to, uris=uris_for(storage / study_uid),
                     meta={"instances": count, "complete": complete, "pacs": pacs})

    def choose(msg: Message) -> list[Pacs]:
        name = msg.meta.get("pacs")
        if name:
            if name not in servers:
                raise HandlerError(f"no PACS called {name!r} here", action=f"use one of: {', '.join(servers)}")
            return [servers[name]]
        if not servers:
            raise HandlerError("this pacs node has no PACS configured", action="add [nodes.pacs.servers.NAME]")
        return list(servers.values())

    @node.on("find")
    def on_find(msg: Message) -> None:
        if msg.topic not in LEVELS or msg.meta.get("to") not in (None, "", "pacs", node.name):
            return  # meta "to" addresses a search to other nodes (e.g. "index": meshdcm index query)
        level, answer = LEVELS[msg.topic]
        identifier = msg.dataset
        for keyword in WORKLIST_KEYS[level]:
            if keyword not in identifier:
                setattr(identifier, keyword, "")  # an empty element is a return key (PS3.4 C.2.2.2)
        count, failures = 0, []
        for pacs in choose(msg):
            try:
                for match in find(pacs, level, identifier):
                    count += 1
                    node.publish(answer, match, reply_to=msg, meta={"pacs": pacs.name})
            except PacsError as exc:
                failures.append(f"{pacs.name}: {exc}")
        meta = {"count": count, "status": "failed" if failures and not count else "ok", "errors": failures}
        node.publish(topics.FOUND_END, Dataset(), reply_to=msg, meta=meta)
        if failures and not count:
            raise HandlerError("; ".join(failures), action="check that the PACS is up and knows this node's AE "
                                                        f"title {ae_title}; the search can be sent again")

    @node.on("get")
    def on_get(msg: Message) -> None:
        if msg.topic not in (topics.GET_STUDY, topics.GET_SERIES):
            return
        if not msg.get("StudyInstanceUID"):
            raise HandlerError("the request names no StudyInstanceUID", action="publish get.study with one")
        study_uid = path_part(msg.get("StudyInstanceUID"), "StudyInstanceUID")
        series_uid = (path_part(msg.get("SeriesInstanceUID"), "SeriesInstanceUID") if msg.topic == topics.GET_SERIES
                      else None)
        last: Exception | None = None
        for pacs in choose(msg):
            try:
                fetch_study(msg, pacs, study_uid, series_uid)
                return
            except PacsError as exc:
                last = exc
                log.warning("retrieve of study %s from %s failed: %s", study_uid, pacs.name, exc)
        raise HandlerError(f"study {study_uid} could not be retrieved: {last}",
                           action="check the PACS (meshdcm pacs echo) and send get.study again")

    def fetch_study(msg: Message, pacs: Pacs, study_uid: str, series_uid: str | None) -> None:
        query = Dataset()
        query.StudyInstanceUID = study_uid
        for key in SERIES_KEYS:
            setattr(query, key, "" if key != "SeriesInstanceUID" else (series_uid or ""))
        expected = {s.SeriesInstanceUID: int(getattr(s, "NumberOfSeriesRelatedInstances", 0) or 0)
                    for s in find(pacs, "SERIES", query)}
        arrived: Counter = Counter()
        example: dict[str, Path] = {}
        announced: set[str] = set()
        lock = threading.Lock()
        total = sum(expected.values())

        def progress(series, done, total_now):
            ds = Dataset()
            ds.StudyInstanceUID = study_uid
            if series:
                ds.SeriesInstanceUID = series
            node.publish(topics.PROGRESS_STUDY, ds, reply_to=msg,
                         meta={"done": done, "total": total_now or total, "pacs": pacs.name})

        def instance(path: Path, header: Dataset) -> None:
            uid = str(header.SeriesInstanceUID)
            with lock:
                arrived[uid] += 1
                example.setdefault(uid, path)
                done_series = expected.get(uid) and arrived[uid] >= expected[uid] and uid not in announced
                if done_series:
                    announced.add(uid)
            if announce_instances:
                node.publish(topics.STORED_INSTANCE, header_only(header), reply_to=msg, uris=uris_for(path))
            if done_series:
                publish_series(path, arrived[uid], complete=True, reply_to=msg)

        result = retrieve(pacs, study_uid, storage, series_uid=series_uid, scp=scp, on_progress=progress,
                          on_instance=instance)
        for uid, path in example.items():  # series whose count was unknown or short
            if uid not in announced:
                publish_series(path, arrived[uid], complete=arrived[uid] >= expected.get(uid, 0) > 0, reply_to=msg)
        complete = result.complete and all(arrived[u] >= n for u, n in expected.items())
        publish_study(study_uid, sum(arrived.values()), complete, reply_to=msg, pacs=pacs.name)
        if not complete:
            raise HandlerError(f"study {study_uid} from {pacs.name}: {sum(arrived.values())} of {total} instances "
                               "arrived", action="send get.study again to fetch the rest")

    def upload(msg: Message, pacs: Pacs, again: str) -> None:
        """The files the message's URIs name into ``pacs``, then ``uploaded.series``; ``again`` says how to retry."""
        if not msg.uris:
            raise HandlerError(f"{msg.topic} carries no URIs", action="publish it with the files' URIs")
        work = Path(tempfile.mkdtemp(prefix="upload-", dir=storage / ".incoming" if (storage / ".incoming").exists()
                                     else storage))
        try:
            paths, failures = None, []
            for uri in msg.uris:  # the URIs of one message name the same data: the first that works is used
                try:
                    paths = [p for p in node.fetch(uri, work) if p.suffix.lower() in (".dcm", "") and p.is_file()]
                    break
                except TransferError as exc:
                    failures.append(str(exc))
            if paths is None:
                raise HandlerError(f"series {msg.get('SeriesInstanceUID')} could not be fetched for upload: "
                                   + "; ".join(failures), retry=True,
                                   action=f"check that the node holding it is running; {again}")
            result = store(pacs, paths)
        finally:
            shutil.rmtree(work, ignore_errors=True)  # fetched copies only: file:// data is used in place
        ds = Dataset()
        for key in ("StudyInstanceUID", "SeriesInstanceUID"):
            if msg.get(key):
                setattr(ds, key, msg.get(key))
        if not result.ok:
            raise HandlerError(f"{len(result.failed)} of {len(paths)} instances of series {msg.get('SeriesInstanceUID')} "
                               f"were refused by {pacs.name}: {next(iter(result.failed.values()))}",
                               action=f"check the PACS log; {again}")
        meta = {"pacs": pacs.name, "count": len(result.stored)}
        if msg.meta.get("derived_from"):
            meta["derived_from"] = msg.meta["derived_from"]
        node.publish(topics.UPLOADED_SERIES, ds, reply_to=msg, meta=meta)

    @node.on("store")
    def on_store(msg: Message) -> None:
        if msg.topic not in (topics.STORE_INSTANCE, topics.STORE_SERIES, topics.STORE_STUDY):
            return
        upload(msg, choose(msg)[0], "send the store request again")

    archive_to = opts.archive_to
    if archive_to is not None and archive_to not in servers and archive_to != "embedded":
        raise ConfigError(f"[nodes.pacs] archive_to = {archive_to!r}: no such PACS in [nodes.pacs.servers]")

    archive_derived = opts.archive_derived
    if archive_derived:
        @node.on(topics.STORED_SERIES, where=opts.archive_where)
        def archive(msg: Message) -> None:
            if not msg.meta.get("derived_from") or msg.sender == node.id_bytes or not servers:
                return  # only other nodes' results; none to archive without a PACS (said at start)
            pacs = servers[archive_to] if archive_to else next(iter(servers.values()))
            upload(msg, pacs, "publish the derived stored.series again, or store.series to this node")

    # the storage SCP and the embedded PACS start before the node joins the mesh, so that no request ever finds
    # the node without its PACS
    host, port = scp.start()
    log.info("storage SCP %s listening on %s:%d, store %s", ae_title, host, port, storage)
    embedded = None
    if opts.embedded:
        embedded = EmbeddedPacs(storage.parent / f"{storage.name}-embedded-pacs", destinations={ae_title: (host, port)},
                                size=opts.embedded_size)
        ehost, eport = embedded.start()
        servers["embedded"] = Pacs("embedded", ae_title=embedded.ae_title, host=ehost, port=eport,
                                   retrieve=opts.embedded_retrieve, calling_ae=ae_title,
                                   move_destination=ae_title)
        log.info("embedded PACS %s on %s:%d (synthetic studies)", embedded.ae_title, ehost, eport)

    @node.task
    def run(stopping: threading.Event) -> None:
        reach = {}
        for name, pacs in servers.items():
            try:
                reach[name] = {"ae_title": pacs.ae_title, "echo_ms": round(echo(pacs) * 1000, 1), "ok": True}
            except PacsError as exc:
                reach[name] = {"ae_title": pacs.ae_title, "ok": False, "error": str(exc)}
                log.error("C-ECHO to PACS %s failed: %s", name, exc)
        node.extra.update({"pacs": reach, "storage_scp": {"ae_title": ae_title, "host": host, "port": port}})
        if archive_derived and not servers:
            log.warning("derived series are not archived: no PACS is configured ([nodes.pacs.servers])")
        node.manifest_changed()
        stopping.wait()
        scp.stop()
        if embedded is not None:
            embedded.stop()

    return node
