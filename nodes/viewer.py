"""viewer: sends studies the user opens to a desktop viewer (Horos, OsiriX, Weasis, 3D Slicer) by C-STORE, then
keeps sending every new series of them, derived ones included (docs/viewer.md).

Topics:
- ``open.study`` (body: StudyInstanceUID; meta ``{"viewer": NAME}`` optional, else the default viewer): the study's
  series the mesh has announced (``stored.series``) are sent; if none is known yet, ``get.study`` is published and
  each series is sent as its ``stored.series`` arrives. The study stays open (remembered on disk) and every later
  ``stored.series`` of it is forwarded too. Opening it again sends it again.
- ``stored.series``: remembered (study, series, URIs); forwarded to each viewer the study is open in.
- publishes ``viewer.sent`` (meta ``viewer``, ``series``, ``study``, ``count``) per series sent, and ``error.<node>``
  naming the viewer, the study/series and what to do next when a viewer is down or refuses (retried with backoff).

Options (``[nodes.viewer]``): ``ae_title`` (our calling AE, MESHDCM), ``default`` (the viewer used when the request
names none; else the first one), ``work`` (folder), ``retry_seconds`` (2), ``max_retry_seconds`` (60),
``give_up_seconds`` (3600), ``remember_days`` (30: series heard of are forgotten after that unless their study is
open), and one table per viewer in ``[nodes.viewer.viewers.NAME]`` with ``ae_title``, ``host``, ``port`` (and
optionally ``timeout``, ``max_pdu``).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.misc import is_dicom

from meshdcm import (
    ConfigError, HandlerError, Message, Node, NodeConfig, TransferError, data_dir, node_options, topics,
)
from meshdcm.pacs import Pacs
from meshdcm.viewer import Forwarder, Ledger, Retry, SeriesUnavailable

log = logging.getLogger("meshdcm.viewer.node")

VIEWER_KEYS = ("ae_title", "host", "port", "timeout", "max_pdu")


@dataclass(frozen=True)
class ViewerOptions:
    """``[nodes.viewer]`` (the module docstring says what each does)."""

    ae_title: str = "MESHDCM"
    default: str = ""
    work: str = ""
    retry_seconds: float = 2.0
    max_retry_seconds: float = 60.0
    give_up_seconds: float = 3600.0
    remember_days: float = 30.0
    viewers: dict = field(default_factory=dict)


def viewers_from(ae_title: str, tables: dict) -> dict[str, Pacs]:
    """The viewers of ``[nodes.viewer.viewers.NAME]`` tables, called by our ``ae_title``."""
    out = {}
    for name, d in tables.items():
        if not isinstance(d, dict):
            raise ConfigError(f"[nodes.viewer.viewers.{name}] must be a table (ae_title, host, port)")
        unknown = set(d) - set(VIEWER_KEYS)
        if unknown:
            raise ConfigError(f"[nodes.viewer.viewers.{name}]: unknown settings {sorted(unknown)}; "
                              f"known are {list(VIEWER_KEYS)}")
        if "host" not in d or "port" not in d:
            raise ConfigError(f"[nodes.viewer.viewers.{name}] needs host and port (and ae_title) of the viewer")
        try:
            out[name] = Pacs.from_dict(name, {"ae_title": "VIEWER", **d, "calling_ae": ae_title, "retries": 1})
        except ValueError as exc:
            raise ConfigError(f"[nodes.viewer.viewers.{name}]: {exc}") from exc
    return out


def create(config: NodeConfig) -> Node:
    return ViewerBridge(config).node


class ViewerBridge:
    """One viewer node: its viewers (one :class:`~meshdcm.viewer.Forwarder` each), the ledger of the studies open
    in them and of the series sent, and the handlers that hear ``open.study`` and ``stored.series``."""

    def __init__(self, config: NodeConfig):
        if config.log_level != "DEBUG":  # pynetdicom logs identifiers (patient names) at INFO
            logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        opts = node_options("viewer", ViewerOptions, config.options)
        self.viewers = viewers_from(opts.ae_title, opts.viewers)
        if not self.viewers:
            raise ConfigError("the viewer node has no viewer to send to: add [nodes.viewer.viewers.NAME] with "
                              "ae_title, host and port of the desktop viewer's DICOM listener")
        self.default = opts.default or next(iter(self.viewers))
        if self.default not in self.viewers:
            raise ConfigError(f"[nodes.viewer] default = {self.default!r} is not one of the viewers: "
                              f"{', '.join(self.viewers)}")
        self.work = Path(opts.work or data_dir(config.name))
        (self.work / "in").mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(self.work / "viewer.sqlite")
        forgotten = self.ledger.forget_older_than(opts.remember_days * 86400)
        if forgotten:
            log.info("forgot %d series heard of more than %g days ago", forgotten, opts.remember_days)
        retry = Retry(retry_seconds=opts.retry_seconds, max_retry_seconds=opts.max_retry_seconds,
                      give_up_seconds=opts.give_up_seconds)
        self.node = Node(config=config, capabilities=("dicom",))
        self.asked_again: set[str] = set()  # series whose holder was gone and that were asked of the PACS again
        self.forwarders = {name: Forwarder(v, self.ledger, self.prepare, self.sent, self.failed, retry)
                           for name, v in self.viewers.items()}
        for forwarder in self.forwarders.values():
            self.node.task(forwarder.run)
        self.node.on(topics.OPEN_STUDY)(self.open_study)
        self.node.on(topics.STORED_SERIES)(self.stored_series)
        self.node.task(self.resume)

    # --- handlers --------------------------------------------------------------------------------------------
    def open_study(self, msg: Message) -> None:
        study = msg.get("StudyInstanceUID")
        if not study:
            raise HandlerError("open.study names no StudyInstanceUID", action="publish open.study with one")
        viewer = str(msg.meta.get("viewer") or self.default)
        if viewer not in self.viewers:
            raise HandlerError(f"no viewer called {viewer!r} here", action=f"use one of: {', '.join(self.viewers)}")
        study = str(study)
        self.ledger.open(study, viewer)
        known = self.ledger.series_of(study)
        log.info("study %s opened in viewer %s (%d series known)", study, viewer, len(known))
        if not any(s.derived_from is None for s in known):
            self.node.publish(topics.GET_STUDY, _study_series(study), reply_to=msg)
        for s in known:
            self.forwarders[viewer].enqueue(study, s.series)

    def stored_series(self, msg: Message) -> None:
        if msg.topic != topics.STORED_SERIES:  # not stored.series.nii and the like: only DICOM goes to a viewer
            return
        study, series = msg.get("StudyInstanceUID"), msg.get("SeriesInstanceUID")
        if not study or not series or not msg.uris:
            return
        study, series = str(study), str(series)
        instances = msg.meta.get("instances")
        instances = instances if isinstance(instances, int) else None
        self.ledger.remember_series(study, series, list(msg.uris), msg.meta.get("derived_from"), instances)
        self.asked_again.discard(series)
        for viewer in self.ledger.viewers_for(study):
            self.forward(viewer, study, series, instances)

    def resume(self, stopping) -> None:
        """After a restart: what was opened but not (fully) sent is sent now."""
        for viewer, study, series in self.ledger.unsent():
            if viewer in self.forwarders:
                self.forwarders[viewer].enqueue(study, series)

    def forward(self, viewer: str, study: str, series: str, instances: int | None) -> None:
        already = len(self.ledger.sent(viewer, series))
        if already and (instances is None or already >= instances):
            log.info("series %s already sent to viewer %s (%d instances); not sent again", series, viewer, already)
            return
        self.forwarders[viewer].enqueue(study, series)

    # --- the forwarders' callbacks ---------------------------------------------------------------------------
    def prepare(self, study: str, series: str) -> list[Path]:
        """The series' DICOM files on this machine (a file:// folder in place, else fetched from its holder)."""
        known = self.ledger.known(series)
        if known is None:
            raise SeriesUnavailable(f"series {series} of study {study} is not known here",
                                    "publish its stored.series again")
        folder = self.work / "in" / series
        try:
            local = self.node.fetch_folder(known.uris, folder)
        except TransferError as exc:
            if known.derived_from or series in self.asked_again:
                raise SeriesUnavailable(f"series {series} of study {study} could not be fetched: {exc}",
                                        "start the node that made it again, or publish its stored.series again"
                                        ) from exc
            self.asked_again.add(series)
            self.node.publish(topics.GET_SERIES, _study_series(study, series))
            raise SeriesUnavailable(f"series {series} of study {study} could not be fetched: {exc}",
                                    "asked the PACS again (get.series); it is sent when its stored.series arrives"
                                    ) from exc
        files = sorted(p for p in local.rglob("*") if p.is_file() and is_dicom(p))
        if not files:
            raise SeriesUnavailable(f"series {series} of study {study}: no DICOM file under its URIs",
                                    "check the node that announced it")
        return files

    def sent(self, viewer: str, study: str, series: str, count: int) -> None:
        log.info("sent %d instances of series %s (study %s) to viewer %s", count, series, study, viewer)
        self.node.publish(topics.VIEWER_SENT, _study_series(study, series),
                          meta={"viewer": viewer, "series": series, "study": study, "count": count})
        fetched = self.work / "in" / series
        if fetched.is_dir():  # our own copy; files used in place (file://) are never touched
            shutil.rmtree(fetched, ignore_errors=True)

    def failed(self, viewer: str, study: str, series: str, reason: str, action: str, attempt: int) -> None:
        log.error("viewer %s, study %s, series %s: %s; next: %s", viewer, study, series, reason, action)
        error = {"node": self.node.name, "node_id": self.node.id, "kind": self.node.config.kind, "handler": "forward",
                 "topic": topics.OPEN_STUDY, "viewer": viewer, "reason": reason, "exception": "ViewerError",
                 "attempt": attempt, "action": action}
        self.node.publish(self.node.error_topic, _study_series(study, series), meta={"error": error})


def _study_series(study: str, series: str | None = None) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = study
    if series:
        ds.SeriesInstanceUID = series
    return ds
