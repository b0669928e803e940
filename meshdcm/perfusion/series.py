"""Finding and loading a DSC-MRI series from DICOM files or pydicom datasets.

A DSC series is a 2D multi-slice gradient-echo (T2*-weighted) EPI series repeated over >= 30 time
points during a contrast bolus.  ``DSC_FILTER`` is the default meshdcm filter string a perfusion node
subscribes with (it sees one instance, so it cannot count time points); ``is_dsc_series`` is the full
check on a whole series.  Supported storage: classic single-frame MR Image Storage, one instance per
slice per time point (Siemens mosaics and enhanced multi-frame MR are refused with a clear message).

Time points are grouped by TemporalPositionIdentifier, else by AcquisitionNumber, else by the slice
position repeating; frame times come from TriggerTime, else AcquisitionTime, else ContentTime, else
RepetitionTime x index.  Geometry (DICOM C.7.6.2 Image Plane module) is kept for the derived outputs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from .errors import NotDSCSeriesError, PerfusionError

logger = logging.getLogger(__name__)

__all__ = ["DSC_FILTER", "MIN_TIME_POINTS", "DSCSeries", "is_dsc_series", "load_dsc_series", "read_datasets"]

MIN_TIME_POINTS = 30
_DESCRIPTION = "(?i)perf|dsc|bolus"
DSC_FILTER = (
    f'Modality == "MR" and (SeriesDescription ~ "{_DESCRIPTION}" or ProtocolName ~ "{_DESCRIPTION}" '
    'or (ScanningSequence contains "EP" and ImageType ~ "(?i)perfusion")) '
    'and not ImageType ~ "(?i)derived"'
)


@dataclass
class DSCSeries:
    """A loaded DSC series: ``signal`` (T, Z, Y, X) float32, ``times`` (T,) s from the first frame."""

    signal: np.ndarray
    times: np.ndarray
    te: float  # s
    tr: float  # s
    slices: list[Dataset]  # one reference instance per slice (first time point), pixel data dropped
    instances: list[list[Dataset]]  # [t][z]
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str | None
    affine_lps: np.ndarray  # 4x4: (col i, row j, slice k, 1) -> LPS mm

    @property
    def dt(self) -> float:
        return float(np.median(np.diff(self.times))) if self.times.size > 1 else self.tr


def _str(ds: Dataset, keyword: str) -> str:
    v = ds.get(keyword, "")
    if isinstance(v, pydicom.multival.MultiValue):
        return "\\".join(str(x) for x in v)
    return str(v or "")


def _time_points(datasets: Sequence[Dataset]) -> int:
    tpi = {ds.get("TemporalPositionIdentifier") for ds in datasets if "TemporalPositionIdentifier" in ds}
    if len(tpi) > 1:
        return len(tpi)
    positions = {tuple(round(float(x), 2) for x in ds.ImagePositionPatient) for ds in datasets
                 if "ImagePositionPatient" in ds}
    return len(datasets) // max(1, len(positions))


def is_dsc_series(datasets: Sequence[Dataset]) -> bool:
    """True when the datasets of one series look like a DSC perfusion acquisition.

    MR; T2*-weighted gradient-echo EPI, or described as perfusion/DSC/bolus; EchoTime 10-80 ms when
    present; not derived; at least ``MIN_TIME_POINTS`` time points.
    """
    if not datasets:
        return False
    ds = datasets[0]
    if _str(ds, "Modality") != "MR" or re.search("(?i)derived", _str(ds, "ImageType")):
        return False
    text = _str(ds, "SeriesDescription") + " " + _str(ds, "ProtocolName")
    seq = _str(ds, "ScanningSequence")
    described = re.search(_DESCRIPTION, text) is not None
    gre_epi = "EP" in seq and "SE" not in seq.split("\\")
    if not (described or gre_epi):
        return False
    te = ds.get("EchoTime")
    if te is not None and not (10.0 <= float(te) <= 80.0):
        return False
    return _time_points(datasets) >= MIN_TIME_POINTS


def read_datasets(directory: str | Path) -> list[Dataset]:
    """All DICOM instances under ``directory`` (recursively); non-DICOM files are skipped."""
    root = Path(directory)
    if not root.is_dir():
        raise PerfusionError(f"{root} is not a directory; give the folder holding the DSC series")
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            out.append(pydicom.dcmread(path))
        except (InvalidDicomError, OSError):
            logger.debug("skipping non-DICOM file %s", path)
    if not out:
        raise PerfusionError(f"no DICOM files found under {root}")
    return out


def _frame_time(ds: Dataset) -> float | None:
    if "TriggerTime" in ds and ds.TriggerTime not in (None, ""):
        return float(ds.TriggerTime) / 1000.0
    for kw in ("AcquisitionTime", "ContentTime"):
        v = ds.get(kw)
        if v:
            s = str(v)
            h, m, sec = int(s[0:2]), int(s[2:4] or 0), float(s[4:] or 0)
            return 3600 * h + 60 * m + sec
    return None


def load_dsc_series(source: str | Path | Sequence[Dataset], series_uid: str | None = None) -> DSCSeries:
    """Load a DSC series from a folder or from datasets; ``series_uid`` picks one of several series."""
    datasets = read_datasets(source) if isinstance(source, (str, Path)) else list(source)
    by_series: dict[str, list[Dataset]] = {}
    for ds in datasets:
        by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    if series_uid is not None:
        if series_uid not in by_series:
            raise NotDSCSeriesError(f"series {series_uid} is not among the input ({len(by_series)} series found)")
        chosen = series_uid
    else:
        dsc = [uid for uid, group in by_series.items() if is_dsc_series(group)]
        if not dsc:
            raise NotDSCSeriesError(
                f"none of the {len(by_series)} series ({', '.join(sorted(by_series))}) is a DSC perfusion series "
                f"(MR, T2*-weighted EPI, >= {MIN_TIME_POINTS} time points); pass series_uid= to force one")
        if len(dsc) > 1:
            raise NotDSCSeriesError(f"several DSC series found ({', '.join(sorted(dsc))}); pass series_uid= to choose")
        chosen = dsc[0]
    group = by_series[chosen]
    first = group[0]
    if "PixelData" not in first or int(first.get("NumberOfFrames", 1) or 1) > 1:
        raise NotDSCSeriesError(f"series {chosen}: only single-frame MR images are supported (enhanced multi-frame "
                                "or mosaic data must be converted first, e.g. with dcm2niix)")
    if "ImagePositionPatient" not in first or "ImageOrientationPatient" not in first:
        raise NotDSCSeriesError(f"series {chosen}: ImagePositionPatient/ImageOrientationPatient missing; cannot "
                                "order slices")
    iop = np.array([float(x) for x in first.ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    pos = np.array([np.dot(normal, [float(x) for x in ds.ImagePositionPatient]) for ds in group])
    slice_keys = np.unique(np.round(pos, 2))
    nz = slice_keys.size
    if len(group) % nz:
        raise NotDSCSeriesError(f"series {chosen}: {len(group)} instances do not divide into {nz} slices; "
                                "the series is incomplete — wait for all instances or re-send it")
    nt = len(group) // nz
    zidx = np.searchsorted(slice_keys, np.round(pos, 2))
    if all("TemporalPositionIdentifier" in ds for ds in group):
        tkey = [int(ds.TemporalPositionIdentifier) for ds in group]
    elif all("AcquisitionNumber" in ds for ds in group) and len({int(ds.AcquisitionNumber) for ds in group}) == nt:
        tkey = [int(ds.AcquisitionNumber) for ds in group]
    else:
        tkey = [int(ds.get("InstanceNumber", i)) for i, ds in enumerate(group)]
        # rank within each slice
        ranks = np.empty(len(group), int)
        for z in range(nz):
            members = np.flatnonzero(zidx == z)
            ranks[members[np.argsort(np.array(tkey)[members])]] = np.arange(members.size)
        tkey = list(ranks)
    tvals = np.unique(tkey)
    if tvals.size != nt:
        raise NotDSCSeriesError(f"series {chosen}: {tvals.size} time points found but {nt} expected from "
                                f"{len(group)} instances / {nz} slices")
    tidx = np.searchsorted(tvals, tkey)
    grid: list[list[Dataset | None]] = [[None] * nz for _ in range(nt)]
    for ds, t, z in zip(group, tidx, zidx, strict=True):
        if grid[t][z] is not None:
            raise NotDSCSeriesError(f"series {chosen}: two instances for time point {t + 1}, slice {z + 1}")
        grid[t][z] = ds
    rows, cols = int(first.Rows), int(first.Columns)
    signal = np.empty((nt, nz, rows, cols), dtype=np.float32)
    for t in range(nt):
        for z in range(nz):
            ds = grid[t][z]
            arr = ds.pixel_array.astype(np.float32)
            slope, icpt = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
            signal[t, z] = arr * slope + icpt
    te_ms = first.get("EchoTime")
    if te_ms in (None, ""):
        raise NotDSCSeriesError(f"series {chosen}: EchoTime is missing; it is needed for dR2* = -ln(S/S0)/TE")
    tr = float(first.get("RepetitionTime", 0) or 0) / 1000.0
    ft = [[_frame_time(grid[t][z]) for z in range(nz)] for t in range(nt)]
    if all(v is not None for row in ft for v in row):
        times = np.array([min(row) for row in ft], dtype=np.float64)
        times -= times[0]
        if np.any(np.diff(times) <= 0) or np.any(times < 0):
            times = np.arange(nt) * tr
    else:
        times = np.arange(nt) * tr
    if nt > 2:
        d = np.diff(times)
        if d.max() - d.min() > 0.1 * np.median(d):
            logger.warning("series %s: frame intervals vary (%.3f-%.3f s); using the median", chosen, d.min(), d.max())
    if times[-1] <= 0:
        raise NotDSCSeriesError(f"series {chosen}: no frame timing (TriggerTime/AcquisitionTime/RepetitionTime)")
    ref = [grid[0][z] for z in range(nz)]
    dr, dc = (float(x) for x in first.PixelSpacing)
    p0 = np.array([float(x) for x in ref[0].ImagePositionPatient])
    step = (np.array([float(x) for x in ref[-1].ImagePositionPatient]) - p0) / (nz - 1) if nz > 1 else \
        normal * float(first.get("SpacingBetweenSlices", first.get("SliceThickness", 1.0)))
    affine = np.eye(4)
    affine[:3, 0] = iop[:3] * dc
    affine[:3, 1] = iop[3:] * dr
    affine[:3, 2] = step
    affine[:3, 3] = p0
    logger.info("loaded DSC series %s: %d time points x %d slices of %dx%d", chosen, nt, nz, rows, cols)
    return DSCSeries(signal, times, float(te_ms) / 1000.0, tr, ref, grid, chosen,
                     str(first.get("StudyInstanceUID", "")), first.get("FrameOfReferenceUID"), affine)
