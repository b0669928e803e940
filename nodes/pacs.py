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
PACS with demo studies), ``embedded_size`` (which: ``small`` or ``full``, the synthetic toy studies; ``realistic``
or ``realistic-small``, the stroke studies of docs/studies.md, made once and cached; ``meshdcm up`` asks for
``realistic``),
``embedded_retrieve`` (get; docs/pacs.md says why not move), ``use`` (names of the PACS to use; default all), and
one table per PACS in ``[nodes.pacs.servers.NAME]`` with ``ae_title``, ``host``, ``port``, ``dicomweb_url``,
``retrieve``, ``store_method``;
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
#: ``embedded_size``: the synthetic toys (small, full) or the realistic stroke studies (meshdcm.studies' variants).
EMBEDDED_STUDIES = ("small", "full", "realistic", "realistic-small")


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
    return PacsBridge(config).node


def servers_from(opts: PacsOptions) -> dict[str, Pacs]:
    """The PACS of ``[nodes.pacs.servers.NAME]`` this node uses (``use``), each called by our AE title; a
    ConfigError names a table, a ``use`` or an ``archive_to`` that is wrong."""
    servers: dict[str, Pacs] = {}
    for name, d in opts.servers.items():
        if not isinstance(d, dict):
            raise ConfigError(f"[nodes.pacs.servers.{name}] must be a table (ae_title, host, port, ...)")
        try:
            servers[name] = Pacs.from_dict(name, {"calling_ae": opts.ae_title, "move_destination": opts.ae_title,
                                                  **d})
        except (TypeError, ValueError, KeyError) as exc:
            raise ConfigError(f"[nodes.pacs.servers.{name}]: {exc}") from exc
    if opts.use:
        missing = [n for n in opts.use if n not in servers]
        if missing:
            raise ConfigError(f"[nodes.pacs] use: no PACS called {', '.join(missing)} in [nodes.pacs.servers]")
        servers = {n: servers[n] for n in opts.use}
    if opts.archive_to is not None and opts.archive_to not in servers and opts.archive_to != "embedded":
        raise ConfigError(f"[nodes.pacs] archive_to = {opts.archive_to!r}: no such PACS in [nodes.pacs.servers]")
    return servers


def realistic_variant(embedded_size: str) -> str | None:
    """The set of realistic studies ``embedded_size`` asks for (``full``, ``small``), or None for the synthetic
    toys; a ConfigError names the choices."""
    if embedded_size not in EMBEDDED_STUDIES:
        raise ConfigError(f"[nodes.pacs] embedded_size = {embedded_size!r}: use one of {', '.join(EMBEDDED_STUDIES)}")
    return {"realistic": "full", "realistic-small": "small"}.get(embedded_size)


class PacsBridge:
    """One pacs node: the PACS it uses, its storage SCP and store folder, and the handlers that answer the mesh.

    Built from the configuration (a mistake in it is a ConfigError here); the storage SCP and the embedded PACS
    start before the node joins the mesh, so that no request ever finds the node without its PACS."""

    def __init__(self, config: NodeConfig):
        if config.log_level != "DEBUG":  # pynetdicom logs identifiers (patient names) at INFO
            logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        opts = node_options("pacs", PacsOptions, config.options)
        self.servers = servers_from(opts)
        realistic_variant(opts.embedded_size)
        self.ae_title = opts.ae_title
        self.announce_instances = opts.instance_events
        self.archive_derived, self.archive_to = opts.archive_derived, opts.archive_to
        self.retrieving: Counter = Counter()  # studies being retrieved now -> how many retrievals
        self.lock = threading.Lock()
        self.storage = Path(opts.storage or data_dir(config.name))
        self.storage.mkdir(parents=True, exist_ok=True)
        for left in [*self.storage.glob("upload-*"), *self.storage.glob(".incoming/upload-*")]:
            shutil.rmtree(left, ignore_errors=True)  # copies fetched for an upload a killed run did not finish
        self.node = Node(config=config, capabilities=("dicom", "dicomweb"))
        self.node.serve("store", self.storage)
        self.scp = StorageSCP(self.storage, ae_title=self.ae_title, host=opts.scp_host, port=opts.scp_port,
                              on_stored=self.on_stored, on_quiet=self.on_quiet, quiet_seconds=opts.quiet_seconds,
                              overwrite=opts.overwrite_instances, on_failed=self.on_failed)
        self.node.on("find")(self.on_find)
        self.node.on("get", resume=True)(self.on_get)  # a retrieval outlives a killed node (docs/delivery.md)
        self.node.on("store")(self.on_store)
        if self.archive_derived:
            self.node.on(topics.STORED_SERIES, where=opts.archive_where)(self.archive)
        self.scp_address = self.scp.start()
        log.info("storage SCP %s listening on %s:%d, store %s", self.ae_title, *self.scp_address, self.storage)
        self.embedded = self._start_embedded(opts) if opts.embedded else None
        self.node.task(self.run)

    def _start_embedded(self, opts: PacsOptions) -> EmbeddedPacs:
        """The embedded PACS with the demo studies, as the PACS ``embedded``."""
        studies, variant = None, realistic_variant(opts.embedded_size)
        if variant is not None:

            def studies():
                from meshdcm.studies import StudiesError, studies_folder

                try:
                    return studies_folder(variant)  # made once (about 1.5 min for full), then cached
                except StudiesError as exc:
                    raise ConfigError(f"[nodes.pacs] embedded_size = {opts.embedded_size!r}: {exc}") from exc

        embedded = EmbeddedPacs(self.storage.parent / f"{self.storage.name}-embedded-pacs",
                                destinations={self.ae_title: self.scp_address}, size=opts.embedded_size,
                                studies=studies)
        host, port = embedded.start()
        self.servers["embedded"] = Pacs("embedded", ae_title=embedded.ae_title, host=host, port=port,
                                        retrieve=opts.embedded_retrieve, calling_ae=self.ae_title,
                                        move_destination=self.ae_title)
        log.info("embedded PACS %s on %s:%d (%s studies)", embedded.ae_title, host, port, opts.embedded_size)
        return embedded

    def run(self, stopping: threading.Event) -> None:
        """Say in the manifest which PACS answer (C-ECHO); at stop, stop the storage SCP and the embedded PACS."""
        reach = {}
        for name, pacs in self.servers.items():
            try:
                reach[name] = {"ae_title": pacs.ae_title, "echo_ms": round(echo(pacs) * 1000, 1), "ok": True}
            except PacsError as exc:
                reach[name] = {"ae_title": pacs.ae_title, "ok": False, "error": str(exc)}
                log.error("C-ECHO to PACS %s failed: %s", name, exc)
        host, port = self.scp_address
        self.node.extra.update({"pacs": reach, "storage_scp": {"ae_title": self.ae_title, "host": host, "port": port}})
        if self.archive_derived and not self.servers:
            log.warning("derived series are not archived: no PACS is configured ([nodes.pacs.servers])")
        self.node.manifest_changed()
        stopping.wait()
        self.scp.stop()
        if self.embedded is not None:
            self.embedded.stop()

    # --- handlers --------------------------------------------------------------------------------------------
    def on_find(self, msg: Message) -> None:
        if msg.topic not in LEVELS or msg.meta.get("to") not in (None, "", "pacs", self.node.name):
            return  # meta "to" addresses a search to other nodes (e.g. "index": meshdcm index query)
        level, answer = LEVELS[msg.topic]
        identifier = msg.dataset
        for keyword in WORKLIST_KEYS[level]:
            if keyword not in identifier:
                setattr(identifier, keyword, "")  # an empty element is a return key (PS3.4 C.2.2.2)
        count, failures = 0, []
        for pacs in self.choose(msg):
            try:
                for match in find(pacs, level, identifier):
                    count += 1
                    self.node.publish(answer, match, reply_to=msg, meta={"pacs": pacs.name})
            except PacsError as exc:
                failures.append(f"{pacs.name}: {exc}")
        meta = {"count": count, "status": "failed" if failures and not count else "ok", "errors": failures}
        self.node.publish(topics.FOUND_END, Dataset(), reply_to=msg, meta=meta)
        if failures and not count:
            raise HandlerError("; ".join(failures), action="check that the PACS is up and knows this node's AE "
                                                        f"title {self.ae_title}; the search can be sent again")

    def on_get(self, msg: Message) -> None:
        if msg.topic not in (topics.GET_STUDY, topics.GET_SERIES):
            return
        if not msg.get("StudyInstanceUID"):
            raise HandlerError("the request names no StudyInstanceUID", action="publish get.study with one")
        study_uid = path_part(msg.get("StudyInstanceUID"), "StudyInstanceUID")
        series_uid = (path_part(msg.get("SeriesInstanceUID"), "SeriesInstanceUID") if msg.topic == topics.GET_SERIES
                      else None)
        last: Exception | None = None
        lacking: list[str] = []
        for pacs in self.choose(msg):
            try:
                self.fetch_study(msg, pacs, study_uid, series_uid)
                return
            except NotInPacs:
                lacking.append(pacs.name)
            except PacsError as exc:
                last = exc
                log.warning("retrieve of study %s from %s failed: %s", study_uid, pacs.name, exc)
        what = f"series {series_uid} of study {study_uid}" if series_uid else f"study {study_uid}"
        if last is None:
            raise HandlerError(f"{what} not found in PACS {', '.join(lacking)}: nothing was retrieved",
                               action="check the UID (meshdcm pacs find -k StudyInstanceUID=UID), and which PACS holds "
                                      "it; then send get.study again")
        also = f" (not found in PACS {', '.join(lacking)})" if lacking else ""
        if getattr(last, "storage_failure", ""):  # the PACS sent, this node could not keep it
            action = f"make room in this node's store ({self.storage}), then send get.study again"
        else:
            action = "check the PACS (meshdcm pacs echo) and send get.study again"
        raise HandlerError(f"{what} could not be retrieved: {last}{also}", action=action)

    def on_store(self, msg: Message) -> None:
        if msg.topic not in (topics.STORE_INSTANCE, topics.STORE_SERIES, topics.STORE_STUDY):
            return
        self.upload(msg, self.choose(msg)[0], "send the store request again")

    def archive(self, msg: Message) -> None:
        """A derived ``stored.series`` of another node, into the archive PACS. Not its NIfTI rendition
        (``stored.series.nii``): a PACS holds DICOM, and the DICOM series it was made from is archived itself."""
        if msg.topic != topics.STORED_SERIES:
            return
        if not msg.meta.get("derived_from") or msg.sender == self.node.id_bytes or not self.servers:
            return  # only other nodes' results; none to archive without a PACS (said at start)
        pacs = self.servers[self.archive_to] if self.archive_to else next(iter(self.servers.values()))
        self.upload(msg, pacs, "publish the derived stored.series again, or store.series to this node")

    def on_stored(self, instance) -> None:
        """The storage SCP wrote an instance (called on the association's thread). Those of a study this node is
        retrieving are announced by the retrieval itself, as answers to its request."""
        if self.announce_instances and instance.study_uid not in self.retrieving:
            self.node.publish(topics.STORED_INSTANCE, header_only(instance.header), uris=self.uris_for(instance.path))

    def on_failed(self, failure) -> None:
        """An instance the storage SCP refused, lost or set aside (it logged it): an error event naming it."""
        self.node.report_error("storage", failure.reason, failure.action, study=failure.study_uid or None,
                               instance=failure.sop_instance_uid or None, calling_ae=failure.calling_ae,
                               status=failure.status, kept=str(failure.kept) if failure.kept else None)

    def on_quiet(self, study_uid: str, counts: dict[str, int]) -> None:
        """Data pushed without warning: announce it once the study has been quiet."""
        folder = self.storage / study_uid
        for series_uid, count in counts.items():
            files = sorted((folder / series_uid).glob("*.dcm"))
            if files:
                self.publish_series(files[0], count, complete=None)
        self.publish_study(study_uid, sum(counts.values()), complete=None)

    # --- the work --------------------------------------------------------------------------------------------
    def choose(self, msg: Message) -> list[Pacs]:
        """The PACS a request names (meta ``pacs``), else all of them."""
        name = msg.meta.get("pacs")
        if name:
            if name not in self.servers:
                raise HandlerError(f"no PACS called {name!r} here", action=f"use one of: {', '.join(self.servers)}")
            return [self.servers[name]]
        if not self.servers:
            raise HandlerError("this pacs node has no PACS configured", action="add [nodes.pacs.servers.NAME]")
        return list(self.servers.values())

    def fetch_study(self, msg: Message, pacs: Pacs, study_uid: str, series_uid: str | None) -> None:
        query = Dataset()
        query.StudyInstanceUID = study_uid
        for key in SERIES_KEYS:
            setattr(query, key, "" if key != "SeriesInstanceUID" else (series_uid or ""))
        arrivals = _Arrivals({s.SeriesInstanceUID: int(getattr(s, "NumberOfSeriesRelatedInstances", 0) or 0)
                              for s in find(pacs, "SERIES", query)})
        if not arrivals.expected:  # a retrieve of nothing would "complete" with 0 instances
            raise NotInPacs(pacs, "not found", study_uid, "C-FIND")
        total = sum(arrivals.expected.values())

        def progress(series, done, total_now):
            ds = Dataset()
            ds.StudyInstanceUID = study_uid
            if series:
                ds.SeriesInstanceUID = series
            self.node.publish(topics.PROGRESS_STUDY, ds, reply_to=msg,
                              meta={"done": done, "total": total_now or total, "pacs": pacs.name})

        def instance(path: Path, header: Dataset) -> None:
            uid = str(header.SeriesInstanceUID)
            done_series = arrivals.add(uid, path)
            if self.announce_instances:
                self.node.publish(topics.STORED_INSTANCE, header_only(header), reply_to=msg, uris=self.uris_for(path))
            if done_series:
                self.publish_series(path, arrivals.count[uid], complete=True, reply_to=msg)

        with self.lock:
            self.retrieving[study_uid] += 1
        try:
            result = retrieve(pacs, study_uid, self.storage, series_uid=series_uid, scp=self.scp,
                              on_progress=progress, on_instance=instance)
        finally:
            with self.lock:
                self.retrieving[study_uid] -= 1
                if not self.retrieving[study_uid]:
                    del self.retrieving[study_uid]
        arrived, expected = arrivals.count, arrivals.expected
        for uid, path in arrivals.example.items():  # series whose count was unknown or short
            if uid not in arrivals.announced:
                self.publish_series(path, arrived[uid], complete=arrived[uid] >= expected.get(uid, 0) > 0,
                                    reply_to=msg)
        complete = result.complete and all(arrived[u] >= n for u, n in expected.items())
        self.publish_study(study_uid, sum(arrived.values()), complete, reply_to=msg, pacs=pacs.name)
        if not complete:
            raise HandlerError(f"study {study_uid} from {pacs.name}: {sum(arrived.values())} of {total} instances "
                               "arrived", action="send get.study again to fetch the rest")

    def upload(self, msg: Message, pacs: Pacs, again: str) -> None:
        """The files the message's URIs name into ``pacs``, then ``uploaded.series``; ``again`` says how to retry."""
        if not msg.uris:
            raise HandlerError(f"{msg.topic} carries no URIs", action="publish it with the files' URIs")
        incoming = self.storage / ".incoming"
        work = Path(tempfile.mkdtemp(prefix="upload-", dir=incoming if incoming.exists() else self.storage))
        try:
            paths, failures = None, []
            for uri in msg.uris:  # the URIs of one message name the same data: the first that works is used
                try:
                    paths = [p for p in self.node.fetch(uri, work) if p.suffix.lower() in (".dcm", "") and p.is_file()]
                    break
                except TransferError as exc:
                    failures.append(str(exc))
            if paths is None:
                raise HandlerError(f"series {msg.get('SeriesInstanceUID')} could not be fetched for upload: "
                                   + "; ".join(failures), retry=True,
                                   action=f"check that the node holding it is running; {again}")
            if not paths:  # "uploaded 0" would say a series was archived when nothing was
                raise HandlerError(f"series {msg.get('SeriesInstanceUID')} holds no DICOM files to upload",
                                   action=f"check what the URIs name ({', '.join(msg.uris)[:200]}); {again}")
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
        self.node.publish(topics.UPLOADED_SERIES, ds, reply_to=msg, meta=meta)

    # --- announcements ---------------------------------------------------------------------------------------
    def uris_for(self, path: Path) -> list[str]:
        return [self.node.uri_for(path), path.resolve().as_uri()]

    def publish_series(self, example: Path, count: int, complete: bool | None, reply_to: Message | None = None):
        from pydicom import dcmread

        ds = header_only(dcmread(example, stop_before_pixels=True))
        meta = {"instances": count, "complete": complete}
        self.node.publish(topics.STORED_SERIES, ds, reply_to=reply_to, uris=self.uris_for(example.parent), meta=meta)

    def publish_study(self, study_uid: str, count: int, complete: bool | None, reply_to: Message | None = None,
                      pacs: str | None = None):
        ds = Dataset()
        ds.StudyInstanceUID = study_uid
        ds.NumberOfStudyRelatedInstances = count
        self.node.publish(topics.STORED_STUDY, ds, reply_to=reply_to, uris=self.uris_for(self.storage / study_uid),
                          meta={"instances": count, "complete": complete, "pacs": pacs})


class NotInPacs(PacsError):
    """The PACS has no such study (or series): its C-FIND found nothing."""


class _Arrivals:
    """What one retrieve has brought so far, per series, against the counts C-FIND gave (``expected``); instances
    arrive on the association's thread."""

    def __init__(self, expected: dict[str, int]):
        self.expected = expected
        self.count: Counter = Counter()
        self.example: dict[str, Path] = {}  # one file of each series
        self.announced: set[str] = set()  # series announced complete
        self._lock = threading.Lock()

    def add(self, series: str, path: Path) -> bool:
        """Count one instance; True once, for the instance that completes its series."""
        with self._lock:
            self.count[series] += 1
            self.example.setdefault(series, path)
            done = bool(self.expected.get(series)) and self.count[series] >= self.expected[series]
            if done and series not in self.announced:
                self.announced.add(series)
                return True
            return False
