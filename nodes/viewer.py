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
    if config.log_level != "DEBUG":  # pynetdicom logs identifiers (patient names) at INFO
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    opts = node_options("viewer", ViewerOptions, config.options)
    viewers = viewers_from(opts.ae_title, opts.viewers)
    if not viewers:
        raise ConfigError("the viewer node has no viewer to send to: add [nodes.viewer.viewers.NAME] with ae_title, "
                          "host and port of the desktop viewer's DICOM listener")
    default = opts.default or next(iter(viewers))
    if default not in viewers:
        raise ConfigError(f"[nodes.viewer] default = {default!r} is not one of the viewers: {', '.join(viewers)}")
    work = Path(opts.work or data_dir(config.name))
    (work / "in").mkdir(parents=True, exist_ok=True)
    ledger = Ledger(work / "viewer.sqlite")
    forgotten = ledger.forget_older_than(opts.remember_days * 86400)
    if forgotten:
        log.info("forgot %d series heard of more than %g days ago", forgotten, opts.remember_days)
    retry = Retry(retry_seconds=opts.retry_seconds, max_retry_seconds=opts.max_retry_seconds,
                  give_up_seconds=opts.give_up_seconds)
    node = Node(config=config, capabilities=("dicom",))
    asked_again: set[str] = set()  # series whose holder was gone and that were asked of the PACS again

    def study_series(study: str, series: str | None = None) -> Dataset:
        ds = Dataset()
        ds.StudyInstanceUID = study
        if series:
            ds.SeriesInstanceUID = series
        return ds

    def prepare(study: str, series: str) -> list[Path]:
        """The series' DICOM files on this machine (a file:// folder in place, else fetched from its holder)."""
        known = ledger.known(series)
        if known is None:
            raise SeriesUnavailable(f"series {series} of study {study} is not known here",
                                    "publish its stored.series again")
        folder = work / "in" / series
        try:
            local = node.fetch_folder(known.uris, folder)
        except TransferError as exc:
            if known.derived_from or series in asked_again:
                raise SeriesUnavailable(f"series {series} of study {study} could not be fetched: {exc}",
                                        "start the node that made it again, or publish its stored.series again"
                                        ) from exc
            asked_again.add(series)
            node.publish(topics.GET_SERIES, study_series(study, series))
            raise SeriesUnavailable(f"series {series} of study {study} could not be fetched: {exc}",
                                    "asked the PACS again (get.series); it is sent when its stored.series arrives"
                                    ) from exc
        files = sorted(p for p in local.rglob("*") if p.is_file() and is_dicom(p))
        if not files:
            raise SeriesUnavailable(f"series {series} of study {study}: no DICOM file under its URIs",
                                    "check the node that announced it")
        return files

    def sent(viewer: str, study: str, series: str, count: int) -> None:
        log.info("sent %d instances of series %s (study %s) to viewer %s", count, series, study, viewer)
        node.publish(topics.VIEWER_SENT, study_series(study, series),
                     meta={"viewer": viewer, "series": series, "study": study, "count": count})
        fetched = work / "in" / series
        if fetched.is_dir():  # our own copy; files used in place (file://) are never touched
            shutil.rmtree(fetched, ignore_errors=True)

    def failed(viewer: str, study: str, series: str, reason: str, action: str, attempt: int) -> None:
        log.error("viewer %s, study %s, series %s: %s; next: %s", viewer, study, series, reason, action)
        error = {"node": node.name, "node_id": node.id, "kind": config.kind, "handler": "forward",
                 "topic": topics.OPEN_STUDY, "viewer": viewer, "reason": reason, "exception": "ViewerError",
                 "attempt": attempt, "action": action}
        node.publish(node.error_topic, study_series(study, series), meta={"error": error})

    forwarders = {name: Forwarder(v, ledger, prepare, sent, failed, retry) for name, v in viewers.items()}
    for forwarder in forwarders.values():
        node.task(forwarder.run)

    def forward(viewer: str, study: str, series: str, instances: int | None) -> None:
        already = len(ledger.sent(viewer, series))
        if already and (instances is None or already >= instances):
            log.info("series %s already sent to viewer %s (%d instances); not sent again", series, viewer, already)
            return
        forwarders[viewer].enqueue(study, series)

    @node.on(topics.OPEN_STUDY)
    def open_study(msg: Message) -> None:
        study = msg.get("StudyInstanceUID")
        if not study:
            raise HandlerError("open.study names no StudyInstanceUID", action="publish open.study with one")
        viewer = str(msg.meta.get("viewer") or default)
        if viewer not in viewers:
            raise HandlerError(f"no viewer called {viewer!r} here", action=f"use one of: {', '.join(viewers)}")
        study = str(study)
        ledger.open(study, viewer)
        known = ledger.series_of(study)
        log.info("study %s opened in viewer %s (%d series known)", study, viewer, len(known))
        if not any(s.derived_from is None for s in known):
            node.publish(topics.GET_STUDY, study_series(study), reply_to=msg)
        for s in known:
            forwarders[viewer].enqueue(study, s.series)

    @node.on(topics.STORED_SERIES)
    def stored_series(msg: Message) -> None:
        if msg.topic != topics.STORED_SERIES:  # not stored.series.nii and the like: only DICOM goes to a viewer
            return
        study, series = msg.get("StudyInstanceUID"), msg.get("SeriesInstanceUID")
        if not study or not series or not msg.uris:
            return
        study, series = str(study), str(series)
        instances = msg.meta.get("instances")
        ledger.remember_series(study, series, list(msg.uris), msg.meta.get("derived_from"),
                               int(instances) if isinstance(instances, int) else None)
        asked_again.discard(series)
        for viewer in ledger.viewers_for(study):
            forward(viewer, study, series, instances if isinstance(instances, int) else None)

    @node.task
    def resume(stopping) -> None:
        """After a restart: what was opened but not (fully) sent is sent now."""
        for viewer, study, series in ledger.unsent():
            if viewer in forwarders:
                forwarders[viewer].enqueue(study, series)

    return node
