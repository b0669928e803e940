"""An embedded PACS: Query/Retrieve SCP (C-FIND, C-MOVE, C-GET; Study and Patient Root) plus storage over a folder.

For demos and meshes without a site PACS. Received instances go through the same durable
:class:`~meshdcm.pacs.storage.StorageSCP` writer; queries run over an in-memory index of the headers (rebuilt
from the folder at start). On first start an empty folder is loaded with studies, so a demo has something to find:
the small synthetic toys (:mod:`meshdcm.synthetic`), or the DICOM files of a folder the caller names (``meshdcm up``
names the realistic studies of :mod:`meshdcm.studies`).

Matching is :func:`meshdcm.cfind.matches` (PS3.4 C.2.2.2 subset), shared with the index node.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.presentation import AllStoragePresentationContexts, QueryRetrievePresentationContexts
from pynetdicom.sop_class import Verification

from ..cfind import matches
from .incoming import InstanceWriter, StoredInstance

__all__ = ["EmbeddedPacs", "matches"]

LOGGER = logging.getLogger(__name__)

_LEVEL_KEY = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
              "IMAGE": "SOPInstanceUID"}
_ORDER = ["PATIENT", "STUDY", "SERIES", "IMAGE"]
class EmbeddedPacs:
    """A small PACS serving ``directory`` at ``host:port`` as AE ``ae_title``.

    ``destinations`` maps AE titles to ``(host, port)`` for C-MOVE. With ``load_synthetic`` an empty folder is
    filled on first start: with the DICOM files under the folder ``studies()`` returns (called only then: making
    the studies may take a while), else with the synthetic head CT and MR brain studies (``size`` small or full).
    """

    def __init__(self, directory: str | Path, ae_title: str = "MESHPACS", host: str = "127.0.0.1", port: int = 0,
                 destinations: dict[str, tuple[str, int]] | None = None, load_synthetic: bool = True,
                 size: str = "small", studies: Callable[[], Path] | None = None):
        self.directory = Path(directory)
        self.ae_title, self.host, self.port = ae_title, host, port
        self.destinations = dict(destinations or {})
        self.load_synthetic, self.size, self.studies = load_synthetic, size, studies
        self._writer = InstanceWriter(self.directory)
        self._index: dict[str, tuple[Path, Dataset]] = {}
        self._lock = threading.Lock()
        self._server = None

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> tuple[str, int]:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.load_synthetic and not any(self.directory.rglob("*.dcm")):
            if self.studies is not None:
                self._load_folder(Path(self.studies()))
            else:
                self._load_synthetic()
        self._reindex()
        ae = AE(ae_title=self.ae_title)
        ae.maximum_pdu_size = 4 << 20
        ae.add_supported_context(Verification)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES, scp_role=True, scu_role=False)
        for cx in QueryRetrievePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_FIND, self._on_find),
                    (evt.EVT_C_MOVE, self._on_move), (evt.EVT_C_GET, self._on_get)]
        self._ae = ae
        self._server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        self.port = self._server.server_address[1]
        LOGGER.info("embedded PACS %s on %s:%d serving %d instances from %s", self.ae_title, self.host, self.port,
                    len(self._index), self.directory)
        return self.host, self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> EmbeddedPacs:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _load_synthetic(self) -> None:
        from .. import synthetic
        from .durable import write_durably

        for ds in [*synthetic.head_ct(seed=1, size=self.size), *synthetic.mr_brain(seed=2, size=self.size)]:
            folder = self.directory / str(ds.StudyInstanceUID) / str(ds.SeriesInstanceUID)
            folder.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            write_durably(folder / f"{ds.SOPInstanceUID}.dcm", buf.getbuffer(), fsync=False)

    def _load_folder(self, source: Path) -> None:
        """Copy every DICOM file under ``source`` into the store's layout (study/series/instance)."""
        from .storage import write_durably

        started, count = time.monotonic(), 0
        for path in sorted(source.rglob("*.dcm")):
            data = path.read_bytes()
            h = dcmread(io.BytesIO(data), stop_before_pixels=True,
                        specific_tags=["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
            folder = self.directory / str(h.StudyInstanceUID) / str(h.SeriesInstanceUID)
            folder.mkdir(parents=True, exist_ok=True)
            write_durably(folder / f"{h.SOPInstanceUID}.dcm", data, fsync=False)
            count += 1
        LOGGER.info("embedded PACS: loaded %d instances of %s in %.1f s", count, source, time.monotonic() - started)

    def _reindex(self) -> None:
        index = {}
        for p in self.directory.rglob("*.dcm"):
            try:
                h = dcmread(p, stop_before_pixels=True)
                index[str(h.SOPInstanceUID)] = (p, h)
            except Exception as exc:
                LOGGER.warning("embedded PACS: skipping unreadable file %s: %s", p, exc)
        with self._lock:
            self._index = index

    # -- services -------------------------------------------------------------------------------------
    def _on_store(self, event) -> int:
        status, inst = self._writer.handle(event)
        if isinstance(inst, StoredInstance):
            with self._lock:
                self._index[inst.sop_instance_uid] = (inst.path, inst.header)
        return status

    def _select(self, query: Dataset) -> list[tuple[Path, Dataset]]:
        with self._lock:
            items = list(self._index.values())
        return [(p, h) for p, h in items if matches(h, query)]

    def search(self, level: str, query: Dataset) -> Iterator[Dataset]:
        """Answers to a C-FIND at ``level``: one identifier per matching entity, with the requested keys."""
        level = level.upper()
        if level not in _LEVEL_KEY:
            raise ValueError(f"unknown QueryRetrieveLevel {level!r}")
        key = _LEVEL_KEY[level]
        groups: dict[str, list[Dataset]] = {}
        for _, h in self._select(query):
            groups.setdefault(str(h.get(key, "")), []).append(h)
        wanted_mods = query.get("ModalitiesInStudy")
        wanted_mods = {str(m) for m in (wanted_mods if isinstance(wanted_mods, (list, tuple)) else [wanted_mods])
                       if m} if wanted_mods else set()
        for members in groups.values():
            first = members[0]
            if wanted_mods and not wanted_mods & {str(m.Modality) for m in members}:
                continue
            out = Dataset()
            out.SpecificCharacterSet = first.get("SpecificCharacterSet", "ISO_IR 192")
            out.QueryRetrieveLevel = level
            for elem in query:
                if elem.keyword in ("QueryRetrieveLevel", "SpecificCharacterSet"):
                    continue
                kw = elem.keyword
                if kw == "NumberOfStudyRelatedInstances" or kw == "NumberOfSeriesRelatedInstances":
                    setattr(out, kw, len(members))
                elif kw == "NumberOfStudyRelatedSeries":
                    out.NumberOfStudyRelatedSeries = len({str(m.SeriesInstanceUID) for m in members})
                elif kw == "ModalitiesInStudy":
                    out.ModalitiesInStudy = sorted({str(m.Modality) for m in members})
                elif kw == "SOPClassesInStudy":
                    out.SOPClassesInStudy = sorted({str(m.SOPClassUID) for m in members})
                elif kw in first:
                    out[elem.tag] = first[elem.tag]
                else:
                    out[elem.tag] = elem
            for lv in _ORDER[: _ORDER.index(level) + 1]:
                k = _LEVEL_KEY[lv]
                if k in first and lv != "PATIENT":
                    setattr(out, k, first[k].value)
            yield out

    def _on_find(self, event):
        query = event.identifier
        level = str(query.get("QueryRetrieveLevel", "STUDY"))
        try:
            for out in self.search(level, query):
                if event.is_cancelled:
                    yield 0xFE00, None
                    return
                yield 0xFF00, out
        except ValueError:
            yield 0xA900, None

    def _instances(self, identifier: Dataset) -> list[Path]:
        q = Dataset()
        for kw in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            if kw in identifier and identifier.get(kw):
                q[identifier[kw].tag] = identifier[kw]
        return sorted(p for p, _ in self._select(q))

    def _on_move(self, event):
        dest = self.destinations.get(str(event.move_destination).strip())
        if dest is None:
            LOGGER.warning("embedded PACS: C-MOVE to unknown destination %s", event.move_destination)
            yield None, None
            return
        paths = self._instances(event.identifier)
        yield dest[0], dest[1], {"contexts": self._contexts(paths)}
        yield len(paths)
        for p in paths:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, dcmread(p)

    def _on_get(self, event):
        paths = self._instances(event.identifier)
        yield len(paths)
        for p in paths:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, dcmread(p)

    def _contexts(self, paths: list[Path]):
        from pynetdicom.presentation import build_context

        pairs = set()
        with self._lock:
            by_path = {p: h for p, h in self._index.values()}
        for p in paths:
            h = by_path.get(p)
            if h is not None:
                pairs.add((str(h.SOPClassUID), str(h.file_meta.TransferSyntaxUID)))
        return [build_context(c, [t]) for c, t in sorted(pairs)][:128]
