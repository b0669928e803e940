"""Synthetic, realistic DICOM studies for tests, benchmarks and demos.

Nothing is downloaded: every study is generated from a seed, so the same call always produces byte-identical
headers and pixel data (UIDs are name-based UUIDs of the seed and the instance's place in the study, written as
``2.25.`` UIDs, so they are stable across runs).

What is generated
-----------------
* :func:`ct_header` / :func:`mr_header` -- one realistic header (no pixel data), e.g. for message benchmarks.
* :func:`head_ct` -- a non-contrast head CT: axial slices of 512x512 int16 with RescaleSlope/Intercept (HU),
  an analytic head phantom (skull, brain, ventricles) with correct Image Plane geometry.
* :func:`mr_brain` -- an MR brain study with a 3D T1 (about 1 mm isotropic), T2 axial, FLAIR axial, DWI (b0 and
  b1000 trace) and a DSC perfusion series (many time points with a gamma-variate bolus signal drop).

Headers follow the CT Image and MR Image IODs (PS3.3 A.3, A.4): Patient, General Study, Patient Study, General
Series, Frame of Reference, General Equipment, General/Image Plane/Image Pixel, CT/MR Image and SOP Common
modules, with vendor-like values (manufacturer, field strength, TE/TR/FA, sequence names, ImageType) and
``SpecificCharacterSet = ISO_IR 192`` (UTF-8), so a non-ASCII patient name can be exercised.

``size`` chooses the scale: ``"full"`` is realistic (200 CT slices of 512x512; MR 176-slice T1 and a 60
time-point DSC), ``"small"`` keeps the same structure with few small images for fast tests.
"""

from __future__ import annotations

import datetime as _dt
import math
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, MRImageStorage

from .imagewriter import (
    file_meta,
    image_instance,
    image_pixels,
    image_plane,
    pixel_module,
    rescale,
    series_header,
    window,
    write_instance,
)

__all__ = [
    "Patient",
    "TEST_PATIENT",
    "NON_ASCII_PATIENT",
    "ct_header",
    "mr_header",
    "head_ct",
    "mr_brain",
    "write_study",
    "CT_IMAGE_STORAGE",
    "MR_IMAGE_STORAGE",
]

CT_IMAGE_STORAGE = CTImageStorage
MR_IMAGE_STORAGE = MRImageStorage


@dataclass(frozen=True)
class Patient:
    """The (fake) patient a synthetic study belongs to."""

    name: str = "MESHDCM^TEST"
    id: str = "MESHDCM-0001"
    birth_date: str = "19700101"
    sex: str = "O"
    age: str = "055Y"
    weight: float = 70.0


#: The known fake patient used by tests.
TEST_PATIENT = Patient()
#: A fake patient whose name needs UTF-8 (ISO_IR 192).
NON_ASCII_PATIENT = Patient(name="Müller^Jürgen=ミュラー^ユルゲン", id="MESHDCM-0002", birth_date="19630412", sex="M")

_SIZES = ("small", "full")


_UID_NAMESPACE = uuid.UUID("6f1c3a2e-7d0b-5e8a-9c4f-1b2d3e4f5a6b")


def _uid(seed: int, *parts) -> str:
    """A deterministic ``2.25.<uuid>`` UID (PS3.5 B.2) from a name-based UUID (RFC 4122 v5)."""
    name = "/".join(["meshdcm-synthetic", str(seed), *map(str, parts)])
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"


def _study_datetime(seed: int) -> _dt.datetime:
    # Deterministic date in 2024 so date-range queries can be tested.
    return _dt.datetime(2024, 1, 1, 8, 0, 0) + _dt.timedelta(days=seed % 300, minutes=(seed * 37) % 600)


def _study(*, seed: int, patient: Patient, study_uid: str, accession: str, study_desc: str, modality: str,
           when: _dt.datetime) -> dict[str, object]:
    """Patient, General Study, Patient Study, General Equipment and SOP Common attributes of a study."""
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    return {
        "SpecificCharacterSet": "ISO_IR 192",
        "PatientName": patient.name,
        "PatientID": patient.id,
        "IssuerOfPatientID": "MESHDCM",
        "PatientBirthDate": patient.birth_date,
        "PatientSex": patient.sex,
        "PatientAge": patient.age,
        "PatientWeight": f"{patient.weight:g}",
        "StudyInstanceUID": study_uid,
        "StudyDate": date,
        "StudyTime": time,
        "AccessionNumber": accession,
        "StudyID": str(1000 + seed % 9000),
        "StudyDescription": study_desc,
        "ReferringPhysicianName": "REFERRER^SYNTHETIC",
        "InstitutionName": "meshdcm Synthetic Hospital",
        "InstitutionalDepartmentName": "Neuroradiology",
        "StationName": f"{modality}SYN01",
        "BodyPartExamined": "HEAD",
        "PatientPosition": "HFS",
        "InstanceCreationDate": date,
        "InstanceCreationTime": time,
        "TimezoneOffsetFromUTC": "+0000",
    }


def _ct_series_header(seed: int, patient: Patient, study_uid: str, series_uid: str, for_uid: str,
                      when: _dt.datetime, cols: int, spacing: float) -> Dataset:
    study = _study(seed=seed, patient=patient, study_uid=study_uid, accession=f"CT{seed:06d}",
                   study_desc="CT HEAD WO CONTRAST", modality="CT", when=when)
    ds = series_header(study, sop_class_uid=CT_IMAGE_STORAGE, modality="CT", series_uid=series_uid, series_number=2,
                       series_description="Head 5mm", image_type=["ORIGINAL", "PRIMARY", "AXIAL"],
                       frame_of_reference_uid=for_uid)
    ds.Manufacturer = "SYNTHETIC MEDICAL"
    ds.ManufacturerModelName = "SynthCT 128"
    ds.DeviceSerialNumber = "SYN-CT-0042"
    ds.SoftwareVersions = "meshdcm-synthetic 1.0"
    ds.ProtocolName = "ROUTINE HEAD"
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = ds.StudyTime
    ds.AcquisitionDate = ds.StudyDate
    ds.ContentDate = ds.StudyDate
    ds.ScanOptions = "HELICAL MODE"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = f"{spacing * cols:.1f}"
    ds.DistanceSourceToDetector = "1085.6"
    ds.DistanceSourceToPatient = "595"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "140"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "1000"
    ds.XRayTubeCurrent = "300"
    ds.Exposure = "300"
    ds.FilterType = "HEAD FILTER"
    ds.GeneratorPower = "36"
    ds.FocalSpots = "0.7"
    ds.ConvolutionKernel = "H30s"
    ds.RevolutionTime = 1.0
    ds.SingleCollimationWidth = 0.6
    ds.TotalCollimationWidth = 38.4
    ds.SpiralPitchFactor = 0.55
    ds.CTDIvol = 55.2
    rescale(ds, "1", "-1024", "HU")
    window(ds, ["40", "600"], ["80", "2800"], ["BRAIN", "BONE"])
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    return ds


def _mr_series_header(seed: int, patient: Patient, study_uid: str, series_uid: str, for_uid: str,
                      when: _dt.datetime, spec: dict) -> Dataset:
    study = _study(seed=seed, patient=patient, study_uid=study_uid, accession=f"MR{seed:06d}",
                   study_desc="MR BRAIN WITH PERFUSION", modality="MR", when=when)
    ds = series_header(study, sop_class_uid=MR_IMAGE_STORAGE, modality="MR", series_uid=series_uid,
                       series_number=spec["number"], series_description=spec["description"],
                       image_type=spec["image_type"], frame_of_reference_uid=for_uid)
    ds.Manufacturer = "SYNTHETIC MEDICAL"
    ds.ManufacturerModelName = "SynthMR Prisma"
    ds.DeviceSerialNumber = "SYN-MR-0007"
    ds.SoftwareVersions = "syngo-like MR XA60"
    ds.MagneticFieldStrength = "3"
    ds.ImagingFrequency = "123.2"
    ds.ImagedNucleus = "1H"
    ds.TransmitCoilName = "Body"
    ds.ReceiveCoilName = "Head_32"
    ds.ProtocolName = spec["description"]
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = (when + _dt.timedelta(minutes=3 * spec["number"])).strftime("%H%M%S")
    ds.AcquisitionDate = ds.StudyDate
    ds.ContentDate = ds.StudyDate
    ds.ScanningSequence = spec["scanning_sequence"]
    ds.SequenceVariant = spec["sequence_variant"]
    ds.ScanOptions = spec.get("scan_options", "")
    ds.MRAcquisitionType = spec["acq_type"]
    ds.SequenceName = spec["sequence_name"]
    ds.AngioFlag = "N"
    ds.RepetitionTime = f"{spec['tr']:g}"
    ds.EchoTime = f"{spec['te']:g}"
    if "ti" in spec:
        ds.InversionTime = f"{spec['ti']:g}"
    ds.NumberOfAverages = "1"
    ds.EchoNumbers = "1"
    ds.EchoTrainLength = str(spec.get("etl", 1))
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = "100"
    ds.PixelBandwidth = str(spec.get("bandwidth", 200))
    ds.AcquisitionMatrix = [0, spec["cols"], spec["rows"], 0]
    ds.InPlanePhaseEncodingDirection = "ROW"
    ds.FlipAngle = f"{spec['fa']:g}"
    ds.VariableFlipAngleFlag = "N"
    ds.SAR = "0.45"
    ds.dBdt = "0"
    window(ds, *_scanner_window(spec["contrast"]))
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    return ds


def _axial_slice(header: Dataset, sop_uid: str, number: int, index: int, n: int, *, rows: int, cols: int,
                 spacing: float, thickness: float, step: float) -> tuple[Dataset, float]:
    """Instance ``number`` of the series: axial slice ``index`` of ``n`` (feet-to-head order, centred on the
    origin); returns it and its z."""
    ds = image_instance(header, sop_instance_uid=sop_uid, instance_number=number)
    z = -step * (n - 1) / 2.0 + index * step
    image_plane(ds, position=[f"{-spacing * (cols - 1) / 2:.4f}", f"{-spacing * (rows - 1) / 2:.4f}", f"{z:.4f}"],
                orientation=[1, 0, 0, 0, 1, 0], pixel_spacing=[f"{spacing:.6g}", f"{spacing:.6g}"],
                slice_thickness=f"{thickness:g}", spacing_between_slices=f"{step:g}", slice_location=f"{z:.4f}")
    return ds, z


def _finish(ds: Dataset) -> Dataset:
    file_meta(ds, implementation_version="MESHDCM_SYN")
    return ds


# --- phantom -------------------------------------------------------------------------------------------------


def _head_tissues(rows: int, cols: int, spacing: float, z: float) -> dict[str, np.ndarray]:
    """Boolean masks of a simple analytic head (ellipsoids, mm) at axial position ``z``."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    x = (x - (cols - 1) / 2.0) * spacing
    y = (y - (rows - 1) / 2.0) * spacing

    def ellipsoid(a, b, c, cx=0.0, cy=0.0, cz=0.0):
        t = 1.0 - ((z - cz) / c) ** 2
        if t <= 0:
            return np.zeros((rows, cols), dtype=bool)
        return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= t

    head = ellipsoid(75, 95, 100)
    brain = ellipsoid(68, 88, 92)
    ventricles = ellipsoid(8, 22, 15, cx=-9, cz=10) | ellipsoid(8, 22, 15, cx=9, cz=10)
    lesion = ellipsoid(9, 9, 9, cx=30, cy=-20, cz=20)
    return {"head": head, "brain": brain, "ventricles": ventricles, "lesion": lesion}


def _noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    return rng.normal(0.0, sigma, size=shape).astype(np.float32)


# --- CT ------------------------------------------------------------------------------------------------------


def ct_header(seed: int = 0, patient: Patient = TEST_PATIENT, rows: int = 512, cols: int = 512) -> Dataset:
    """One realistic head-CT header (CT Image IOD, PS3.3 A.3) with file meta, without Pixel Data."""
    when = _study_datetime(seed)
    header = _ct_series_header(seed, patient, _uid(seed, "ct-study"), _uid(seed, "ct-series"), _uid(seed, "ct-for"),
                               when, cols, 0.45)
    ds, _ = _axial_slice(header, _uid(seed, "ct-series", 1), 1, 0, 1, rows=rows, cols=cols, spacing=0.45,
                         thickness=5.0, step=5.0)
    ds.AcquisitionNumber = 1
    ds.AcquisitionTime = ds.StudyTime
    ds.ContentTime = ds.StudyTime
    pixel_module(ds, rows, cols, np.int16)
    return _finish(ds)


def head_ct(seed: int = 0, patient: Patient = TEST_PATIENT, size: str = "full",
            slices: int | None = None, matrix: int | None = None) -> Iterator[Dataset]:
    """Yield the instances of a non-contrast head CT, one axial slice each (int16, HU = value - 1024).

    ``size="full"``: 200 slices of 512x512 at 0.45 mm / 1 mm; ``"small"``: 8 slices of 64x64.
    ``slices``/``matrix`` override the size preset.
    """
    if size not in _SIZES:
        raise ValueError(f"size must be one of {_SIZES}, not {size!r}")
    n = slices or (200 if size == "full" else 8)
    m = matrix or (512 if size == "full" else 64)
    spacing = 230.0 / m
    step = 200.0 / n
    when = _study_datetime(seed)
    study_uid, series_uid = _uid(seed, "ct-study"), _uid(seed, "ct-series")
    header = _ct_series_header(seed, patient, study_uid, series_uid, _uid(seed, "ct-for"), when, m, spacing)
    rng = np.random.default_rng(seed)
    for i in range(n):
        ds, z = _axial_slice(header, _uid(seed, "ct-series", i + 1), i + 1, i, n, rows=m, cols=m, spacing=spacing,
                             thickness=step, step=step)
        ds.AcquisitionNumber = 1
        t = (when + _dt.timedelta(seconds=i * 0.05)).strftime("%H%M%S.%f")
        ds.AcquisitionTime = t
        ds.ContentTime = t
        tis = _head_tissues(m, m, spacing, z)
        hu = np.full((m, m), -1000.0, dtype=np.float32)
        hu[tis["head"]] = 1200.0  # skull
        hu[tis["brain"]] = 35.0
        hu[tis["brain"] & tis["ventricles"]] = 5.0
        hu[tis["brain"] & tis["lesion"]] = 60.0  # a small hyperdensity
        hu += _noise(rng, hu.shape, 4.0)
        image_pixels(ds, np.clip(np.rint(hu + 1024.0), -32768, 32767).astype(np.int16), pixel_range=True)
        yield _finish(ds)


# --- MR ------------------------------------------------------------------------------------------------------


def _mr_specs(size: str) -> list[dict]:
    full = size == "full"
    return [
        dict(key="t1", number=2, description="t1_mprage_sag_1mm", image_type=["ORIGINAL", "PRIMARY", "M", "NORM"],
             scanning_sequence=["GR", "IR"], sequence_variant=["SK", "SP", "MP"], scan_options="IR",
             acq_type="3D", sequence_name="*tfl3d1_16ns", tr=2300, te=2.32, ti=900, fa=8, etl=1, bandwidth=200,
             rows=256 if full else 32, cols=256 if full else 32, pixel_spacing=1.0 if full else 8.0,
             thickness=1.0 if full else 8.0, slices=176 if full else 6, contrast="t1"),
        dict(key="t2", number=3, description="t2_tse_tra", image_type=["ORIGINAL", "PRIMARY", "M", "NORM"],
             scanning_sequence=["SE"], sequence_variant=["SK", "SP", "OSP"], acq_type="2D",
             sequence_name="*tse2d1_15", tr=6000, te=100, fa=150, etl=15, bandwidth=220,
             rows=384 if full else 32, cols=384 if full else 32, pixel_spacing=0.6 if full else 7.0,
             thickness=5.0 if full else 20.0, spacing_between=6.0 if full else 24.0, slices=25 if full else 4,
             contrast="t2"),
        dict(key="flair", number=4, description="t2_tirm_tra_dark-fluid", image_type=["ORIGINAL", "PRIMARY", "M", "NORM"],
             scanning_sequence=["SE", "IR"], sequence_variant=["SK", "SP", "MP", "OSP"], scan_options="IR",
             acq_type="2D", sequence_name="*tir2d1_16", tr=9000, te=81, ti=2500, fa=150, etl=16, bandwidth=287,
             rows=320 if full else 32, cols=320 if full else 32, pixel_spacing=0.7 if full else 7.0,
             thickness=5.0 if full else 20.0, spacing_between=6.0 if full else 24.0, slices=25 if full else 4,
             contrast="flair"),
        dict(key="dwi", number=5, description="ep2d_diff_3scan_trace", image_type=["ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW"],
             scanning_sequence=["EP"], sequence_variant=["SK", "SP"], scan_options="PFP\\FS", acq_type="2D",
             sequence_name="*ep_b1000t", tr=5400, te=72, fa=90, etl=1, bandwidth=1000,
             rows=192 if full else 24, cols=192 if full else 24, pixel_spacing=1.2 if full else 9.6,
             thickness=5.0 if full else 20.0, spacing_between=6.0 if full else 24.0, slices=25 if full else 4,
             contrast="dwi", bvalues=(0, 1000)),
        dict(key="dsc", number=6, description="ep2d_perf_DSC", image_type=["ORIGINAL", "PRIMARY", "PERFUSION", "NONE"],
             scanning_sequence=["EP"], sequence_variant=["SK"], scan_options="FS", acq_type="2D",
             sequence_name="*epfid2d1_128", tr=1500, te=30, fa=90, etl=1, bandwidth=1346,
             rows=128 if full else 16, cols=128 if full else 16, pixel_spacing=1.8 if full else 14.4,
             thickness=5.0 if full else 20.0, spacing_between=6.5 if full else 26.0, slices=19 if full else 3,
             contrast="dsc", timepoints=60 if full else 50),
    ]


def mr_header(seed: int = 0, patient: Patient = TEST_PATIENT, series: str = "t2") -> Dataset:
    """One realistic MR brain header (MR Image IOD, PS3.3 A.4; ~75 elements) with file meta, no Pixel Data.

    ``series`` is one of ``t1, t2, flair, dwi, dsc``.
    """
    specs = {s["key"]: s for s in _mr_specs("full")}
    if series not in specs:
        raise ValueError(f"series must be one of {sorted(specs)}, not {series!r}")
    spec = specs[series]
    spec.setdefault("spacing_between", spec["thickness"])
    when = _study_datetime(seed)
    header = _mr_series_header(seed, patient, _uid(seed, "mr-study"), _uid(seed, "mr-series", spec["key"]),
                               _uid(seed, "mr-for"), when, spec)
    ds, _ = _mr_slice(header, spec, _uid(seed, "mr-series", spec["key"], 1), 1, 0)
    ds.AcquisitionNumber = 1
    ds.AcquisitionTime = ds.SeriesTime
    ds.ContentTime = ds.SeriesTime
    pixel_module(ds, spec["rows"], spec["cols"], np.uint16, bits_stored=12)
    return _finish(ds)


def _mr_slice(header: Dataset, spec: dict, sop_uid: str, number: int, index: int) -> tuple[Dataset, float]:
    return _axial_slice(header, sop_uid, number, index, spec["slices"], rows=spec["rows"], cols=spec["cols"],
                        spacing=spec["pixel_spacing"], thickness=spec["thickness"], step=spec["spacing_between"])


#: (background, scalp/skull, brain, CSF, lesion) intensities per contrast (DWI: b0, then b1000)
_MR_TISSUES = {
    "t1": [(0, 250, 650, 150, 550)],
    "t2": [(0, 300, 500, 1500, 1100)],
    "flair": [(0, 250, 550, 60, 1300)],
    "dwi": [(0, 150, 500, 900, 1000), (0, 20, 250, 40, 700)],
    "dsc": [(0, 200, 800, 1300, 900)],
}


def _scanner_window(contrast: str) -> tuple[str, str]:
    """The window a scanner writes into a series: from black to a little above its brightest tissue (so the CSF
    of a T2 or a FLAIR lesion is not white-saturated), not one window for every contrast."""
    top = 1.1 * max(max(t) for t in _MR_TISSUES[contrast])
    return f"{top / 2:.0f}", f"{top:.0f}"


def _mr_signal(spec: dict, tis: dict[str, np.ndarray], rng: np.random.Generator, bvalue: int = 0,
               drop: float = 0.0) -> np.ndarray:
    c = spec["contrast"]
    table = _MR_TISSUES[c][1 if c == "dwi" and bvalue else 0]
    img = np.full(tis["head"].shape, float(table[0]), dtype=np.float32)
    img[tis["head"]] = table[1]
    img[tis["brain"]] = table[2] * (1.0 - drop)
    img[tis["brain"] & tis["ventricles"]] = table[3]
    img[tis["brain"] & tis["lesion"]] = table[4] * (1.0 - 0.4 * drop)
    img += np.abs(_noise(rng, img.shape, 12.0))
    return np.clip(np.rint(img), 0, 4095).astype(np.uint16)


def _gamma_variate(t: float, t0: float = 15.0, alpha: float = 3.0, beta: float = 1.5) -> float:
    if t <= t0:
        return 0.0
    s = t - t0
    peak = (alpha * beta) ** alpha * math.exp(-alpha)
    return (s**alpha) * math.exp(-s / beta) / peak


def mr_brain(seed: int = 0, patient: Patient = TEST_PATIENT, size: str = "full",
             series: Iterable[str] = ("t1", "t2", "flair", "dwi", "dsc")) -> Iterator[Dataset]:
    """Yield the instances of an MR brain study: 3D T1, T2, FLAIR, DWI (b0 + b1000 trace) and DSC perfusion.

    Every series shares the study's Frame of Reference; slices are axial (3D T1 too, for simplicity) with
    correct ImagePositionPatient/SliceLocation. The DSC series has ``timepoints`` x ``slices`` instances with
    TemporalPositionIdentifier, NumberOfTemporalPositions, AcquisitionNumber and increasing AcquisitionTime.
    """
    if size not in _SIZES:
        raise ValueError(f"size must be one of {_SIZES}, not {size!r}")
    wanted = set(series)
    when = _study_datetime(seed)
    study_uid, for_uid = _uid(seed, "mr-study"), _uid(seed, "mr-for")
    rng = np.random.default_rng(seed)
    for spec in _mr_specs(size):
        if spec["key"] not in wanted:
            continue
        spec.setdefault("spacing_between", spec["thickness"])
        series_uid = _uid(seed, "mr-series", spec["key"])
        header = _mr_series_header(seed, patient, study_uid, series_uid, for_uid, when, spec)
        n, r, c, px = spec["slices"], spec["rows"], spec["cols"], spec["pixel_spacing"]
        step = spec["spacing_between"]
        start = _dt.datetime.strptime(header.StudyDate + header.SeriesTime, "%Y%m%d%H%M%S")
        tissues = [_head_tissues(r, c, px, -step * (n - 1) / 2.0 + i * step) for i in range(n)]
        volumes = spec.get("bvalues") or range(spec.get("timepoints", 1))
        number = 0
        for v_index, v in enumerate(volumes):
            for i in range(n):
                number += 1
                ds, _ = _mr_slice(header, spec, _uid(seed, "mr-series", spec["key"], number), number, i)
                ds.AcquisitionNumber = v_index + 1
                if spec["contrast"] == "dsc":
                    t_sec = v_index * spec["tr"] / 1000.0 + i * spec["tr"] / 1000.0 / n
                    ds.TemporalPositionIdentifier = v_index + 1
                    ds.NumberOfTemporalPositions = len(volumes)
                    ds.TriggerTime = f"{t_sec * 1000:.1f}"
                    drop = 0.45 * _gamma_variate(v_index * spec["tr"] / 1000.0)
                else:
                    t_sec = v_index * 30.0 + i * 0.1
                    drop = 0.0
                t = (start + _dt.timedelta(seconds=t_sec)).strftime("%H%M%S.%f")
                ds.AcquisitionTime = t
                ds.ContentTime = t
                bvalue = 0
                if spec["contrast"] == "dwi":
                    bvalue = int(v)
                    ds.DiffusionBValue = float(bvalue)
                    ds.DiffusionDirectionality = "ISOTROPIC" if bvalue else "NONE"
                    ds.SequenceName = f"*ep_b{bvalue}t" if bvalue else "*ep_b0"
                pixels = _mr_signal(spec, tissues[i], rng, bvalue=bvalue, drop=drop)
                image_pixels(ds, pixels, bits_stored=12, pixel_range=True)
                yield _finish(ds)


def write_study(instances: Iterable[Dataset], directory: str | Path) -> list[Path]:
    """Write instances as DICOM Part 10 files ``<SeriesNumber>/<InstanceNumber>.dcm``; return the paths."""
    out = Path(directory)
    return [write_instance(ds, out / f"{int(ds.SeriesNumber):03d}" / f"{int(ds.InstanceNumber):05d}.dcm")
            for ds in instances]
