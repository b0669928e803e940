"""SCU operations against a PACS: C-ECHO, C-FIND, retrieve (C-MOVE, C-GET, WADO-RS) and store (C-STORE, STOW-RS).

DIMSE services follow PS3.4 Annex C (Query/Retrieve, Study Root information model) and Annex B (Storage),
implemented with pynetdicom, except C-GET/C-MOVE (:mod:`meshdcm.pacs.requestor`) and C-STORE
(:mod:`meshdcm.pacs.storescu`), which run on our own upper layer. Instances are always written as received (no decode/re-encode for DIMSE;
for WADO-RS the pixel data bytes are kept as sent, in their original transfer syntax).

Failures raise :class:`~meshdcm.pacs.errors.PacsError` naming the PACS, the study and the reason;
unreachable PACS, rejected/aborted associations and timeouts raise the retryable
:class:`~meshdcm.pacs.errors.PacsUnavailable` (see :func:`~meshdcm.pacs.retry.with_retry`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.pdu import A_ASSOCIATE_RJ
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from .config import Pacs
from .errors import PacsError, PacsUnavailable, RetrieveIncomplete
from .part10 import read_instance
from .results import RetrieveResult, StoreResult
from .incoming import DirectorySink, StoredInstance
from .storage import StorageSCP
from .storescu import StoreError, StoreReport, StoreRequestor

__all__ = ["echo", "find", "count_instances", "retrieve", "store", "RetrieveResult", "StoreResult", "LEVELS"]

LOGGER = logging.getLogger(__name__)

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")

_COMPRESSED = [JPEGLSLossless, JPEGLosslessSV1, JPEG2000Lossless, RLELossless, DeflatedExplicitVRLittleEndian,
               JPEGBaseline8Bit, JPEGExtended12Bit, JPEG2000, JPEGLSNearLossless]
_DEFAULT_STORAGE_CLASSES = [
    "1.2.840.10008.5.1.4.1.1.2",  # CT
    "1.2.840.10008.5.1.4.1.1.4",  # MR
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.30",  # Parametric Map
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.128",  # PET
    "1.2.840.10008.5.1.4.1.1.11.1",  # GSPS
]

_TOTAL_NOT_YET_KNOWN = 1 << 31  # an Expectation's total until the retrieve knows it

ProgressCallback = Callable[[str | None, int, int], None]
InstanceCallback = Callable[[Path, Dataset], None]


# -- association helpers -----------------------------------------------------------------------------


def _ae(pacs: Pacs) -> AE:
    ae = AE(ae_title=pacs.calling_ae)
    ae.maximum_pdu_size = pacs.max_pdu
    ae.acse_timeout = pacs.timeout
    ae.dimse_timeout = pacs.timeout
    ae.network_timeout = pacs.timeout
    ae.connection_timeout = min(pacs.timeout, 10)
    return ae


def _associate(ae: AE, pacs: Pacs, operation: str, study_uid: str | None = None, **kw):
    connected, rejected = [], []

    def received(event) -> None:
        if isinstance(event.pdu, A_ASSOCIATE_RJ):
            rejected.append(event.pdu)

    # A PACS that rejects at once can have closed the connection before pynetdicom's requestor thread looks at
    # it; pynetdicom then says "aborted" (is_rejected False), though its reactor decoded the A-ASSOCIATE-RJ. The
    # PDU itself is what we judge by (2 in 100 rejections on loopback, pynetdicom 3.0): the reactor fires
    # EVT_PDU_RECV before it closes, so the PDU is seen before the requestor thread can give up.
    handlers = list(kw.pop("evt_handlers", [])) + [(evt.EVT_CONN_OPEN, lambda event: connected.append(1)),
                                                   (evt.EVT_PDU_RECV, received)]
    try:
        assoc = ae.associate(pacs.host, pacs.port, ae_title=pacs.ae_title, evt_handlers=handlers, **kw)
    except (OSError, ValueError, RuntimeError) as exc:
        raise PacsUnavailable(pacs, f"could not associate: {exc}", study_uid, operation) from exc
    if assoc.is_established:
        return assoc
    if not connected:
        reason = f"no answer at {pacs.host}:{pacs.port} (connection refused or timed out; is the PACS up?)"
    elif assoc.is_rejected or rejected:
        reason = "association rejected (is our AE title known to the PACS?)"
    elif assoc.is_aborted:
        reason = "association aborted by the PACS"
    else:
        reason = f"no answer at {pacs.host}:{pacs.port} (connection refused or timed out; is the PACS up?)"
    raise PacsUnavailable(pacs, reason, study_uid, operation)


def _no_status(assoc, pacs: Pacs, since: float) -> str:
    """Why a DIMSE request got no status (pynetdicom then yields an empty one): what the PACS did, and what to
    configure. pynetdicom marks the association aborted a moment after it yields, so that is waited for briefly."""
    deadline = time.monotonic() + 1.0
    while not assoc.is_aborted and assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.01)
    if assoc.is_aborted or not assoc.is_established or time.monotonic() - since < pacs.timeout * 0.9:
        return (f"the PACS ended the association instead of answering (A-ABORT): it may not accept requests from "
                f"our AE title {pacs.calling_ae}; add {pacs.calling_ae} as a modality on the PACS (Orthanc: "
                "DicomModalities), or allow the operation from unknown AEs")
    return f"no answer within {pacs.timeout:g} s (the PACS is busy or stuck)"


def _check_alive(assoc, pacs: Pacs, operation: str, study_uid: str | None) -> None:
    if assoc.is_aborted or not assoc.is_established:
        raise PacsUnavailable(pacs, "association aborted or timed out during the operation", study_uid, operation)


# -- C-ECHO ------------------------------------------------------------------------------------------


def echo(pacs: Pacs) -> float:
    """C-ECHO the PACS; returns the round trip in seconds or raises :class:`PacsUnavailable`."""
    ae = _ae(pacs)
    ae.add_requested_context(Verification)
    t0 = time.perf_counter()
    assoc = _associate(ae, pacs, "C-ECHO")
    try:
        since = time.monotonic()
        status = assoc.send_c_echo()
        if not status or "Status" not in status:
            raise PacsUnavailable(pacs, _no_status(assoc, pacs, since), None, "C-ECHO")
        if status.Status != 0:
            raise PacsError(pacs, f"C-ECHO status {status.Status:#06x}", operation="C-ECHO")
    finally:
        assoc.release()
    return time.perf_counter() - t0


# -- C-FIND ------------------------------------------------------------------------------------------


def find(pacs: Pacs, level: str, identifier: Dataset) -> Iterator[Dataset]:
    """C-FIND at ``level`` (PATIENT/STUDY/SERIES/IMAGE); yields each matching identifier.

    ``identifier`` has its usual meaning (PS3.4 C.2.2.2): an empty element is a return key, ``*``/``?``
    wildcards, ``"20240101-20240131"`` date ranges, a UID list. QueryRetrieveLevel is set from ``level``.
    """
    level = level.upper()
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    model = PatientRootQueryRetrieveInformationModelFind if level == "PATIENT" else StudyRootQueryRetrieveInformationModelFind
    query = Dataset()
    query.update(identifier)
    query.QueryRetrieveLevel = level
    study_uid = str(query.get("StudyInstanceUID", "")) or None
    ae = _ae(pacs)
    ae.add_requested_context(model)
    assoc = _associate(ae, pacs, "C-FIND", study_uid)
    try:
        since = time.monotonic()
        for status, ds in assoc.send_c_find(query, model):
            if not status or "Status" not in status:  # pynetdicom: an empty status when aborted or timed out
                raise PacsUnavailable(pacs, _no_status(assoc, pacs, since), study_uid, "C-FIND")
            code = status.Status
            if code in (0xFF00, 0xFF01):
                if ds is not None:
                    yield ds
            elif code == 0x0000:
                return
            else:
                raise PacsError(pacs, f"C-FIND status {code:#06x}", study_uid, "C-FIND")
    finally:
        if assoc.is_established:
            assoc.release()


def count_instances(pacs: Pacs, study_uid: str, series_uid: str | None = None) -> int:
    """Number of instances of a study (or series): NumberOfStudy/SeriesRelatedInstances (one C-FIND answer),
    falling back to counting IMAGE-level matches where the PACS does not fill that optional key."""
    q = Dataset()
    q.StudyInstanceUID = study_uid
    key = "NumberOfSeriesRelatedInstances" if series_uid else "NumberOfStudyRelatedInstances"
    if series_uid:
        q.SeriesInstanceUID = series_uid
    setattr(q, key, "")
    answers = list(find(pacs, "SERIES" if series_uid else "STUDY", q))
    if len(answers) == 1 and answers[0].get(key) not in (None, ""):
        return int(answers[0].get(key))
    q = Dataset()
    q.StudyInstanceUID = study_uid
    if series_uid:
        q.SeriesInstanceUID = series_uid
    q.SOPInstanceUID = ""
    return sum(1 for _ in find(pacs, "IMAGE", q))


def _sop_classes_in_study(pacs: Pacs, study_uid: str, series_uid: str | None) -> list[str]:
    """SOP classes to offer for C-GET: SOPClassesInStudy (one answer), else IMAGE-level matches."""
    q = Dataset()
    q.StudyInstanceUID = study_uid
    q.SOPClassesInStudy = ""
    answers = list(find(pacs, "STUDY", q))
    if len(answers) == 1 and answers[0].get("SOPClassesInStudy"):
        v = answers[0].SOPClassesInStudy
        return sorted({str(x) for x in ([v] if isinstance(v, str) else v)})
    q = Dataset()
    q.StudyInstanceUID = study_uid
    if series_uid:
        q.SeriesInstanceUID = series_uid
    q.SOPClassUID = ""
    q.SOPInstanceUID = ""
    classes = {str(d.SOPClassUID) for d in find(pacs, "IMAGE", q) if d.get("SOPClassUID")}
    return sorted(classes)


# -- retrieve ----------------------------------------------------------------------------------------


def retrieve(pacs: Pacs, study_uid: str, dest_dir: str | Path | None = None, *, series_uid: str | None = None,
             method: str | None = None, scp: StorageSCP | None = None,
             on_progress: ProgressCallback | None = None, on_instance: InstanceCallback | None = None,
             timeout: float | None = None) -> RetrieveResult:
    """Retrieve a study (or one series) by C-MOVE, C-GET or WADO-RS (``method``, default ``pacs.retrieve``).

    * ``move``: the PACS pushes to our running storage SCP ``scp`` (its AE title = ``pacs.move_destination`` or
      ``scp.ae_title``, known to the PACS); files land in ``scp.directory``.
    * ``get``: instances come back on the same association, written under ``dest_dir``.
    * ``wado``: WADO-RS from ``pacs.dicomweb_url``, written under ``dest_dir``.

    Files are laid out ``<dir>/<study>/<series>/<sop>.dcm``. ``on_progress(series_uid, done, total)`` is called
    as instances arrive (counts for the whole request; ``total`` from C-FIND counts and the retrieve's own
    sub-operation counts), ``on_instance(path, header)`` for each instance. Raises
    :class:`RetrieveIncomplete` if fewer instances arrived than announced.
    """
    method = method or pacs.retrieve
    t0 = time.perf_counter()
    if method == "move":
        if scp is None:
            raise ValueError(f"retrieve of study {study_uid} by C-MOVE needs a running StorageSCP (scp=...)")
        res = _retrieve_move(pacs, study_uid, series_uid, scp, on_progress, on_instance, timeout or pacs.timeout * 10)
    elif method == "get":
        if dest_dir is None:
            raise ValueError(f"retrieve of study {study_uid} by C-GET needs dest_dir")
        res = _retrieve_get(pacs, study_uid, series_uid, Path(dest_dir), on_progress, on_instance,
                            overwrite=scp.overwrite if scp is not None else False)
    elif method == "wado":
        if dest_dir is None:
            raise ValueError(f"retrieve of study {study_uid} by WADO-RS needs dest_dir")
        from .web import wado_retrieve

        res = wado_retrieve(pacs, study_uid, Path(dest_dir), series_uid=series_uid, on_progress=on_progress,
                            on_instance=on_instance)
    else:
        raise ValueError(f"unknown retrieve method {method!r}; use 'move', 'get' or 'wado'")
    res.seconds = time.perf_counter() - t0
    LOGGER.info("retrieved %d/%d instances of study %s from %s by %s in %.2f s", res.done, res.total, study_uid,
                pacs.name, method, res.seconds)
    if not res.complete:
        why = [f"{res.failed} sub-operations failed"] if res.failed else []
        if res.storage_failure:
            why.append(f"our storage: {res.storage_failure}")
        raise RetrieveIncomplete(pacs, study_uid, res.done, res.total, "; ".join(why),
                                 storage_failure=res.storage_failure)
    return res


def _storage_failure(store, since: float) -> str:
    """The reason of the last instance ``store`` (a StorageSCP or DirectorySink) could not keep since ``since``."""
    failure = store.last_failure
    return failure.reason if failure is not None and failure.at >= since else ""


def _identifier(study_uid: str, series_uid: str | None) -> Dataset:
    q = Dataset()
    q.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
    q.StudyInstanceUID = study_uid
    if series_uid:
        q.SeriesInstanceUID = series_uid
    return q


def _encode_identifier(ds: Dataset, ts: str) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = ts == ImplicitVRLittleEndian
    write_dataset(fp, ds)
    return fp.getvalue()


def _retrieve_move(pacs, study_uid, series_uid, scp: StorageSCP, on_progress, on_instance, timeout) -> RetrieveResult:
    res = RetrieveResult(study_uid, "move", total=0)
    started = time.monotonic()
    # the count (a C-FIND: ~0.1 s on Orthanc, 7-9% of a 500-instance move) runs beside the C-MOVE, not before it;
    # the expectation's total is set from the final counts (or this count) once the PACS has answered
    exp = scp.expect(study_uid, _TOTAL_NOT_YET_KNOWN, series_uid)
    counted: list[int] = []

    def count() -> None:
        try:
            counted.append(count_instances(pacs, study_uid, series_uid))
            res.total = max(res.total, counted[0])
        except PacsError as exc:  # the C-MOVE's own sub-operation counts are enough
            LOGGER.debug("count of study %s before C-MOVE failed: %s", study_uid, exc)

    counter = threading.Thread(target=count, name="c-move-count", daemon=True)
    counter.start()
    lock = threading.Lock()

    def arrived(inst: StoredInstance) -> None:
        if inst.study_uid != study_uid or (series_uid and inst.series_uid != series_uid):
            return
        with lock:  # instances are reported from several threads: callbacks in turn, progress never goes back
            res.paths.append(inst.path)
            n = exp.done
            if on_instance:
                on_instance(inst.path, inst.header)
            if on_progress:
                on_progress(inst.series_uid, n, max(res.total, n))

    scp.add_listener(arrived)
    from .requestor import AssociationRefused, GetRequestor

    def pending(counts: dict) -> None:
        res.total = max(res.total, sum(counts.get(k, 0) for k in ("remaining", "completed", "failed", "warning")))

    dest = pacs.move_destination or scp.ae_title
    try:
        req = GetRequestor(pacs.host, pacs.port, pacs.ae_title, pacs.calling_ae, [], [], None, max_pdu=pacs.max_pdu,
                           timeout=pacs.timeout, move_destination=dest)
        try:
            final = req.get(lambda ts: _encode_identifier(_identifier(study_uid, series_uid), ts), on_pending=pending)
        except AssociationRefused as exc:
            raise PacsUnavailable(pacs, str(exc), study_uid, "C-MOVE") from exc
        code = final.get("status")
        res.storage_failure = _storage_failure(scp, started)
        if code == 0xA801:
            raise PacsError(pacs, f"move destination {dest!r} unknown: add our storage SCP as a modality on the PACS",
                            study_uid, "C-MOVE")
        if code not in (0x0000, 0xB000):
            why = f"C-MOVE status {code:#06x}" if code is not None else "no final C-MOVE status"
            raise PacsError(pacs, why + (f" (our storage: {res.storage_failure})" if res.storage_failure else ""),
                            study_uid, "C-MOVE", retryable=True, storage_failure=res.storage_failure)
        counter.join(pacs.timeout)
        res.failed = final.get("failed", 0)
        comp = final.get("completed", 0) + final.get("warning", 0)
        if comp + res.failed:
            res.total = comp + res.failed
        elif counted:
            res.total = max(res.total, counted[0])
        # The PACS reports success once it has sent everything; our SCP has answered (and written) each one. Failed
        # sub-operations (refused by our SCP: disk full...) will not arrive: waiting for them waited out the timeout.
        exp.set_total(comp if comp + res.failed else res.total)
        # with every instance counted this returns as soon as their callbacks have (never 0: the last callback may
        # still be running, and the caller counts arrivals in it)
        exp.wait(timeout)
        res.done = exp.done
    finally:
        scp.remove_listener(arrived)
        scp.forget(exp)
    folder = scp.directory / study_uid / (series_uid or "")
    res.paths = sorted(folder.rglob("*.dcm"))  # includes instances that were already there
    return res


def _retrieve_get(pacs, study_uid, series_uid, dest: Path, on_progress, on_instance,
                  overwrite: bool = False) -> RetrieveResult:
    """C-GET on our own association (:class:`~meshdcm.pacs.requestor.GetRequestor`), sub-operations streamed to disk."""
    from .requestor import AssociationRefused, GetRequestor

    classes = _sop_classes_in_study(pacs, study_uid, series_uid) or _DEFAULT_STORAGE_CLASSES
    res = RetrieveResult(study_uid, "get", total=0)
    lock = threading.Lock()

    def stored(inst: StoredInstance) -> None:
        with lock:  # instances are reported from several threads: callbacks in turn, progress never goes back
            res.paths.append(inst.path)
            res.done += 1
            n = res.done
            if on_instance:
                on_instance(inst.path, inst.header)
            if on_progress:
                on_progress(inst.series_uid, n, max(res.total, n))

    def pending(counts: dict) -> None:
        res.total = max(res.total, sum(counts.get(k, 0) for k in ("remaining", "completed", "failed", "warning")))

    def encode(ts: str) -> bytes:
        return _encode_identifier(_identifier(study_uid, series_uid), ts)

    # The PACS keeps its copy until we are done, so the sub-operations are answered at once and made durable
    # beside the transfer; each instance is reported (and so announced) only once it is on disk.
    sink = DirectorySink(dest, stored, own_retrieve=True, overwrite=overwrite)
    syntaxes = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, *_COMPRESSED]
    per_class = max(1, 127 // max(1, len(classes)))
    req = GetRequestor(pacs.host, pacs.port, pacs.ae_title, pacs.calling_ae, classes[:127], syntaxes[:per_class],
                       sink.begin, max_pdu=pacs.max_pdu, timeout=pacs.timeout)
    try:
        final = req.get(encode, on_pending=pending)
    except AssociationRefused as exc:
        raise PacsUnavailable(pacs, str(exc), study_uid, "C-GET") from exc
    finally:
        sink.syncer.drain()
    code = final.get("status")
    res.storage_failure = _storage_failure(sink, 0.0)
    if code not in (0x0000, 0xB000):
        why = f" (our storage: {res.storage_failure})" if res.storage_failure else ""
        raise PacsError(pacs, f"C-GET status {code:#06x}{why}", study_uid, "C-GET", retryable=code in (0xA702, 0xA701),
                        storage_failure=res.storage_failure)
    res.failed = final.get("failed", 0) + sink.failures  # failures: answered success, then lost or set aside
    res.total = max(res.total, final.get("completed", 0) + final.get("warning", 0) + res.failed, res.done)
    return res


# -- store -------------------------------------------------------------------------------------------


def _headers(paths: Iterable[str | Path]) -> list[tuple[Path, Dataset]]:
    out = []
    for p in paths:
        p = Path(p)
        try:
            ds = dcmread(p, stop_before_pixels=True)
            _ = ds.file_meta.TransferSyntaxUID, ds.SOPClassUID, ds.SOPInstanceUID
        except Exception as exc:
            raise ValueError(f"{p} is not a DICOM file with file meta, SOPClassUID and SOPInstanceUID: {exc}") from exc
        out.append((p, ds))
    return out


def store(pacs: Pacs, paths: Iterable[str | Path], method: str | None = None) -> StoreResult:
    """Upload DICOM files by C-STORE (streamed from disk in their own transfer syntax) or STOW-RS.

    C-STORE runs on our own upper layer (:class:`~meshdcm.pacs.storescu.StoreRequestor`, one association). A PACS
    that cannot be reached, rejects the association or cuts it short raises :class:`PacsUnavailable` whose
    ``result`` holds what was acknowledged before."""
    method = method or pacs.store_method
    if method == "stow":
        from .web import stow_store

        return stow_store(pacs, [p for p, _ in _headers(paths)])
    if method != "c-store":
        raise ValueError(f"unknown store method {method!r}; use 'c-store' or 'stow'")
    instances = [read_instance(p) for p in paths]
    if not instances:
        return StoreResult()
    study_uids = {inst.study for inst in instances}
    study = next(iter(study_uids)) if len(study_uids) == 1 else None
    requestor = StoreRequestor(pacs.host, pacs.port, pacs.ae_title, pacs.calling_ae, max_pdu=pacs.max_pdu,
                               timeout=pacs.timeout)
    try:
        report = requestor.send(instances)
    except StoreError as exc:
        err = PacsUnavailable(pacs, exc.reason, study or None, "C-STORE")
        err.result = _store_result(exc.report)
        raise err from exc
    result = _store_result(report)
    if result.failed:
        LOGGER.warning("store to %s: %d of %d instances failed", pacs.name, len(result.failed), len(instances))
    return result


def _store_result(report: StoreReport) -> StoreResult:
    return StoreResult(stored=report.stored, failed={o.sop_instance: str(o) for o in report.refused})
