"""perfusion: DSC-MRI perfusion maps (CBV, CBF, MTT, Tmax, TTP) for every DSC series that is stored.

Listens to ``stored.series`` with the default filter :data:`meshdcm.perfusion.DSC_FILTER` (MR; series description or
protocol naming perfusion/DSC/bolus, or EPI with a PERFUSION image type; never DERIVED images), fetches the series
wherever its URIs say, computes the maps (model-based deconvolution by default, docs/perfusion.md; CuPy on a GPU
node, NumPy elsewhere) and publishes one ``stored.series`` per map, with ``meshdcm://`` URIs of the DICOM, NIfTI and
PNG outputs and, in ``meta``, the summary values (perfusion.json's ``summary``: parenchyma means/medians and
per-tissue medians, docs/perfusion.md), the method, ``derived_from`` (the source series) and ``aif`` (the arterial
input function: how it was chosen, its voxels as (z, y, x) indices and as LPS points in mm, its dR2* curve and the
times).

Stroke (docs/stroke.md): every analysis also gives core, Tmax > 6 s / > 10 s and mismatch volumes; their DICOM
SEG, SR (TID 1500) and summary image are published as derived ``stored.series`` too (meta ``stroke``: seg, sr or
summary; ``volumes``). ADC series (:data:`meshdcm.stroke.ADC_FILTER`) are remembered per study (not a meshdcm
node's derived series, such as the register node's ADC [reg]), and their core (ADC < 620 x10^-6 mm^2/s) replaces
the rCBF one. An ADC series announced after its study's DSC series was analysed with the rCBF core (a study
fetched from a PACS comes in any order) runs the stroke part again on the kept maps (``work/stroke``,
meshdcm.stroke.late_adc) and publishes a second SEG, SR and summary: the SR supersedes the first.

It never reprocesses its own outputs: they are DERIVED (the filter excludes them) and carry ``derived_from``.
Output UIDs derive from the source series, the map and the software version, so a message delivered twice
does not make a second series. Start several with the same ``--group`` to share the work.

Options (``[nodes.perfusion]``): ``method`` (model, the default, or osvd, csvd, ssvd; docs/perfusion.md), ``where``
(a filter replacing the default), ``work`` (folder for inputs and outputs), ``leakage_correction`` (false),
``vof_correction`` (true: scale the AIF by the venous output function, for absolute CBF/CBV), ``normalise`` (true:
also rCBV, rCBF, rMTT over normal-appearing white matter), ``keep_days`` (7: outputs are removed from ``work/out``
this many days after they were written).
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from meshdcm import (
    FolderRetention, HandlerError, Message, Node, NodeConfig, TransferError, data_dir, days_option, node_options,
    path_part, topics,
)
from meshdcm.imaging import is_own_output
from meshdcm.perfusion import DSC_FILTER, PerfusionError, analyse_series, load_dsc_series
from meshdcm.perfusion.deconvolution import DEFAULT_METHOD
from meshdcm.retention import OUTPUT_DAYS
from meshdcm.stroke.adc import ADC_FILTER
from meshdcm.stroke.hook import SessionADCs, announcements
from meshdcm.stroke.late_adc import KeptAnalyses

log = logging.getLogger("meshdcm.perfusion.node")


@dataclass(frozen=True)
class PerfusionOptions:
    """``[nodes.perfusion]`` (the module docstring says what each does)."""

    method: str = DEFAULT_METHOD
    where: str = DSC_FILTER
    work: str = ""
    leakage_correction: bool = False
    vof_correction: bool = True
    normalise: bool = True
    keep_days: float = OUTPUT_DAYS


def create(config: NodeConfig) -> Node:
    opts = node_options("perfusion", PerfusionOptions, config.options)
    if config.log_level != "DEBUG":  # highdicom logs every module it copies into the stroke SEG/SR at INFO
        logging.getLogger("highdicom").setLevel(logging.WARNING)
    keep_for = days_option({"keep_days": opts.keep_days})
    method = opts.method
    work = Path(opts.work or data_dir(config.name))
    (work / "in").mkdir(parents=True, exist_ok=True)
    (work / "out").mkdir(parents=True, exist_ok=True)
    gpu = _gpu_present()
    node = Node(config=config, capabilities=("gpu",) if gpu else (), extra={"method": method})
    node.serve("out", work / "out")
    node.task(FolderRetention(work / "out", max_age=keep_for).sweeper())  # outputs others fetched by now
    adcs = SessionADCs(work / "adc")  # stroke: each study's ADC series, for the core
    node.task(FolderRetention(work / "adc", max_age=keep_for).sweeper())
    kept = KeptAnalyses(work / "stroke")  # stroke: rCBF-core analyses, run again should the study's ADC come after
    node.task(FolderRetention(work / "stroke", max_age=keep_for).sweeper())
    late_lock = threading.Lock()  # one late-ADC check at a time: an ADC heard while its DSC series is analysed is
    #                               taken up by whichever of the two handlers ends last, and only once

    def late_adc(study: str, reply_to: Message) -> None:
        with late_lock:
            _late_adc(node, adcs, kept, study, work, reply_to)

    @node.on(topics.STORED_SERIES, where=ADC_FILTER)
    def remember_adc(msg: Message) -> None:
        if msg.meta.get("derived_from") or is_own_output(msg.dataset):
            return  # a meshdcm node's output (the register node's "..._ADC [reg]" on the T1 grid), not the scanner's
        if msg.uris and msg.get("StudyInstanceUID") and msg.get("SeriesInstanceUID"):
            adcs.remember(path_part(msg.get("StudyInstanceUID"), "StudyInstanceUID"),
                          path_part(msg.get("SeriesInstanceUID"), "SeriesInstanceUID"), msg.uris)
            late_adc(path_part(msg.get("StudyInstanceUID"), "StudyInstanceUID"), msg)

    @node.on(topics.STORED_SERIES, where=opts.where)
    def analyse(msg: Message) -> None:
        if msg.meta.get("derived_from"):
            return  # a derived series (ours or another node's): never an input
        series_uid = path_part(msg.get("SeriesInstanceUID"), "SeriesInstanceUID")
        if not msg.uris:
            raise HandlerError(f"stored.series for {series_uid} carries no URIs", action="publish it with its URIs")
        inbox = work / "in" / str(series_uid)
        try:
            source = node.fetch_folder(msg.uris, inbox)
        except TransferError as exc:
            raise HandlerError(f"series {series_uid} could not be fetched: {exc}", retry=True,  # a busy or restarting peer
                               action="check that the node holding it is running; publish stored.series again") from exc
        adc_uid, adc = _fetch_adc(node, adcs, msg, inbox.with_name(f"{series_uid}-adc"))
        try:
            series = load_dsc_series(source, series_uid=series_uid)
            result = analyse_series(series, work / "out" / str(series_uid),
                                    method=method, series_uid=series_uid,
                                    leakage_correction=opts.leakage_correction,
                                    vof_correction=opts.vof_correction, normalise=opts.normalise, adc=adc)
        except PerfusionError as exc:
            raise HandlerError(f"perfusion analysis of series {series_uid} failed: {exc}",
                               action=getattr(exc, "action", None) or "check that it is a DSC series (>= 30 time "
                               "points, T2*-weighted EPI); meshdcm filter-check shows what the filter matches") from exc
        finally:
            shutil.rmtree(inbox, ignore_errors=True)
            shutil.rmtree(inbox.with_name(f"{series_uid}-adc"), ignore_errors=True)
        _announce_stroke(node, result.stroke, series_uid, msg)  # first: what a stroke team waits for
        for name, output in result.outputs.items():
            if not output.dicom_files:
                continue
            from pydicom import dcmread

            header = dcmread(output.dicom_files[0], stop_before_pixels=True)
            folder = Path(output.dicom_files[0]).parent
            uris = [node.uri_for(folder), folder.resolve().as_uri()]
            meta = {"derived_from": series_uid, "map": name, "unit": output.unit, "method": result.method,
                    "summary": result.summary, "array_module": result.array_module,
                    "nifti": node.uri_for(output.nifti) if output.nifti else None,
                    "png": node.uri_for(output.png) if output.png else None, "instances": len(output.dicom_files),
                    "aif": {"method": result.aif_method, "voxels": result.aif_voxels,
                            "points_lps": result.aif_points_lps, "curve": result.aif_curve, "times": result.times,
                            "unit": "dR2* (1/s)"}}
            node.publish(topics.STORED_SERIES, header, reply_to=msg, uris=uris, meta=meta)
        log.info("series %s: %d maps by %s in %.2f s (%s)", series_uid, len(result.outputs), result.method,
                 result.seconds, result.array_module)
        study = msg.get("StudyInstanceUID")
        if study and kept.keep(path_part(study, "StudyInstanceUID"), series, result.maps, result.baseline_frames,
                               method=result.method, stroke=result.stroke, adc_tried=adc_uid):
            try:  # its ADC series may have come during the analysis
                late_adc(path_part(study, "StudyInstanceUID"), msg)
            except HandlerError as exc:  # the maps and the rCBF objects are out: the ADC's own message retries it
                log.warning("series %s: %s", series_uid, exc)

    return node


def _fetch_adc(node: Node, adcs: SessionADCs, msg: Message, dest: Path) -> tuple[str | None, Path | None]:
    """(the study's ADC series UID, as a local folder), the folder None when it cannot be fetched (rCBF core);
    (None, None) when none was announced."""
    study = msg.get("StudyInstanceUID")
    known = adcs.find(path_part(study, "StudyInstanceUID")) if study else None
    if known is None:
        return None, None
    try:
        return known[0], node.fetch_folder(known[1], dest)
    except TransferError as exc:
        log.warning("ADC series %s of study %s could not be fetched (%s); the stroke core is by rCBF", known[0],
                    study, exc)
        return known[0], None


def _announce_stroke(node: Node, stroke: dict | None, series_uid: str, reply_to: Message) -> None:
    """The stroke SEG, SR and summary image of DSC series ``series_uid``, each as a ``stored.series``."""
    for item in announcements(stroke, series_uid):
        node.publish(topics.STORED_SERIES, item.header(), reply_to=reply_to,
                     uris=[node.uri_for(item.folder), item.folder.resolve().as_uri()], meta=item.meta)


def _late_adc(node: Node, adcs: SessionADCs, kept: KeptAnalyses, study: str, work: Path, reply_to: Message) -> None:
    """The study's DSC series analysed with the rCBF core, analysed again with its ADC series (announced since):
    a second SEG, SR (superseding the first) and summary, in ``work/out/<dsc series>/adc-<ADC series>``."""
    from meshdcm.stroke.late_adc import rerun_with_adc

    known = adcs.find(study)
    if known is None:
        return
    adc_uid, adc_uris = known
    for analysis in kept.waiting(study, adc_uid):
        out = work / "out" / analysis.series_uid / f"adc-{adc_uid}"
        dest = work / "in" / f"{analysis.series_uid}-late-adc"
        try:
            adc = node.fetch_folder(adc_uris, dest)
        except TransferError as exc:
            raise HandlerError(f"ADC series {adc_uid} of study {study} could not be fetched for the stroke core of "
                               f"series {analysis.series_uid}: {exc}", retry=True,
                               action="check that the node holding it is running; publish its stored.series "
                               "again") from exc
        try:
            stroke = rerun_with_adc(analysis, adc, out)
        finally:
            shutil.rmtree(dest, ignore_errors=True)
        if stroke is None:  # unusable ADC (the warning says why): the rCBF objects stand
            kept.tried(analysis, adc_uid)
            continue
        _announce_stroke(node, stroke, analysis.series_uid, reply_to)
        kept.done(analysis)
        log.info("series %s: stroke core by the ADC series %s that came after it (%.1f ml, was by rCBF); new SEG, "
                 "SR and summary published", analysis.series_uid, adc_uid, stroke.get("core_ml") or 0.0)


def _gpu_present() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, no device: the NumPy path
        return False
