"""Derived DICOM series for perfusion maps (MR Image Storage, ImageType DERIVED\\SECONDARY).

One series per map, one instance per source slice, with the source's Patient/Study modules, Frame of
Reference and Image Plane geometry (PS3.3 C.7.6.2), float values stored as 16-bit integers with
RescaleSlope/RescaleIntercept (C.11.1.1.2) and units in a Real World Value Mapping (C.7.6.16.2.11,
UCUM).  Values: stored 0 is the background (outside the brain mask), marked by Pixel Padding Value
(C.7.5.1.1.2) so that a viewer leaves it unpainted, and it reads as 0 with the rescale (intercept 0) for one
that does not; brain voxels are stored as 1..65534, values below 0 (noise, or tissue leading the AIF) as the
smallest, so the DICOM maps are >= 0 (the NIfTI files keep the raw floats).  WindowCenter/WindowWidth come
from the map's physiological range (:data:`~.maps.DISPLAY_RANGES`), not from its values.  References:
ReferencedSeriesSequence to the source series and SourceImageSequence to the slice's first-time-point
instance.  The SeriesInstanceUID is derived from (source series UID, map
name, software version) and each SOPInstanceUID from (that series UID, slice index), so a re-run writes
the same UIDs and overwrites the same files instead of creating a second series.  MR Image Storage (not
the Parametric Map IOD) is used because every PACS and viewer displays it.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import MRImageStorage

from ..imagewriter import (
    ds_text, image_instance, image_pixels, pixel_padding, rescale, series_header, to_stored, write_instance,
)
from ..imagewriter import window as voi_window
from ._uid import stable_uid
from .maps import display_range
from .series import DSCSeries

__all__ = ["derived_series_uid", "write_map_series", "SOFTWARE_VERSION"]

try:
    from meshdcm._version import __version__ as SOFTWARE_VERSION
except ImportError:  # pragma: no cover - package layout without _version
    SOFTWARE_VERSION = "0"

_UCUM = {"CBV": ("ml/100g", "ml/100g"), "CBF": ("ml/100g/min", "ml/(100g.min)"), "MTT": ("s", "s"),
         "Tmax": ("s", "s"), "TTP": ("s", "s"), "rCBV": ("ratio", "1"), "rCBF": ("ratio", "1"),
         "rMTT": ("ratio", "1")}
_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyInstanceUID",
                  "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
                  "StudyDescription")
_GEOMETRY = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
             "SpacingBetweenSlices", "SliceLocation", "Rows", "Columns", "FrameOfReferenceUID",
             "PositionReferenceIndicator")


def derived_series_uid(source_series_uid: str, map_name: str, method: str = "") -> str:
    """Deterministic UID of the derived series for one map."""
    return stable_uid("derived-series", source_series_uid, map_name, method, SOFTWARE_VERSION)


def _rescale(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
    """(uint16 stored values, slope): 0 outside ``mask``, 1..65534 inside, intercept 0 (module docstring)."""
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0), 0, None)
    hi = float(v[mask].max()) if mask.any() else 0.0
    slope = float(f"{hi / 65534.0:.8g}") if hi > 0 else 1.0
    stored = np.clip(to_stored(v, slope, 0.0, np.uint16), 1, 65534).astype(np.uint16)
    stored[~mask] = 0
    return stored, slope


def write_map_series(series: DSCSeries, name: str, volume: np.ndarray, out_dir: str | Path, method: str,
                     series_number: int = 9000, window: tuple[float, float] | None = None,
                     mask: np.ndarray | None = None) -> tuple[str, list[Path]]:
    """Write ``volume`` (Z, Y, X) as a derived series under ``out_dir``; returns (series UID, files).

    ``window`` (low, high) becomes WindowCenter/WindowWidth (default: the map's :func:`~.maps.display_range`);
    voxels outside ``mask`` (default: none) are background, stored as the padding value 0.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    uid = derived_series_uid(series.series_uid, name, method)
    inside = np.ones(volume.shape, bool) if mask is None else np.asarray(mask, bool)
    stored, slope = _rescale(volume, inside)
    intercept = 0.0
    if window is None:
        window = display_range(name, float(series.times[-1]) if series.times.size else None)
    label, ucum = _UCUM.get(name, (name, "1"))
    now = _dt.datetime.now()
    paths = []
    for z, src in enumerate(series.slices):
        header = series_header({kw: src.data_element(kw).value for kw in _PATIENT_STUDY if kw in src},
                               sop_class_uid=MRImageStorage, modality="MR", series_uid=uid,
                               series_number=series_number, series_description=f"{name} ({method.upper()}) [{label}]",
                               image_type=["DERIVED", "SECONDARY", name.upper()])
        ds = image_instance(header, sop_instance_uid=stable_uid("derived-instance", uid, z), instance_number=z + 1)
        for kw in _GEOMETRY:  # the source slice's Image Plane and Frame of Reference, as they are
            if kw in src:
                setattr(ds, kw, src.data_element(kw).value)
        ds.SeriesDate = now.strftime("%Y%m%d")
        ds.SeriesTime = now.strftime("%H%M%S")
        ds.ContentDate, ds.ContentTime = ds.SeriesDate, ds.SeriesTime
        ds.Manufacturer = "meshdcm"
        ds.SoftwareVersions = SOFTWARE_VERSION
        ds.DerivationDescription = f"DSC perfusion {name} by {method} deconvolution (meshdcm.perfusion)"
        ds.ScanningSequence = src.get("ScanningSequence", "EP")
        ds.SequenceVariant = src.get("SequenceVariant", "NONE")
        ds.ScanOptions = src.get("ScanOptions", "")
        ds.MRAcquisitionType = src.get("MRAcquisitionType", "2D")
        ds.EchoTime = src.get("EchoTime")
        ds.RepetitionTime = src.get("RepetitionTime")
        ds.EchoTrainLength = src.get("EchoTrainLength", 1)
        ref_inst = Dataset()
        ref_inst.ReferencedSOPClassUID = src.SOPClassUID
        ref_inst.ReferencedSOPInstanceUID = src.SOPInstanceUID
        ds.SourceImageSequence = DicomSequence([ref_inst])
        ref_series = Dataset()
        ref_series.SeriesInstanceUID = series.series_uid
        ref_series.ReferencedInstanceSequence = DicomSequence([ref_inst])
        ds.ReferencedSeriesSequence = DicomSequence([ref_series])
        rwv = Dataset()
        rwv.RealWorldValueFirstValueMapped = 1  # 0 is the padding: no value
        rwv.RealWorldValueLastValueMapped = 65534
        rwv.RealWorldValueSlope = slope
        rwv.RealWorldValueIntercept = intercept
        rwv.LUTExplanation = name
        rwv.LUTLabel = name
        unit = Dataset()
        unit.CodeValue = ucum
        unit.CodingSchemeDesignator = "UCUM"
        unit.CodeMeaning = label
        rwv.MeasurementUnitsCodeSequence = DicomSequence([unit])
        ds.RealWorldValueMappingSequence = DicomSequence([rwv])
        image_pixels(ds, stored[z])
        pixel_padding(ds, 0)
        rescale(ds, f"{slope:.8g}", "0", "US")
        if window is not None:
            lo, hi = window
            voi_window(ds, ds_text((lo + hi) / 2.0), ds_text(hi - lo), f"{name} {lo:g}-{hi:g} {label}")
        paths.append(write_instance(ds, out / f"{name}_{z + 1:04d}.dcm"))
    return uid, paths
