"""Synthetic DICOM series with exactly known geometry, for tests and benches.

Every series samples one analytic "phantom head" (soft-edged ellipsoids: scalp, skull, CSF, grey and white
matter, two unequal ventricles, a lesion and a nose, so that no flip or rotation leaves it unchanged) at the
world (patient LPS, mm) position of each voxel.  The same object therefore appears in every orientation,
modality and grid, which is what the conversion tests (against dcm2niix) and the registration accuracy tests
(known rigid motion, target registration error) need.

Kinds written by :func:`write_series`:

``axial`` (MR), ``ct`` (axial CT, HU with intercept -1024), ``oblique`` (MR, double-oblique plane),
``tilted_ct`` (CT with gantry tilt: slice planes tilted, table steps along z, so the grid is sheared),
``enhanced`` (one Enhanced MR Image Storage multi-frame object, per-frame functional groups;
``enhanced_reversed`` stores its frames in reverse spatial order),
``dsc`` (4D perfusion time series, single-frame instances), ``multiecho`` (three echoes in one series),
``float_map`` (MR map stored with a non-unit rescale slope/intercept).

Instances are written in a shuffled order under neutral file names so that readers must sort by geometry.
The attributes follow the MR Image / CT Image / Enhanced MR Image IODs (PS3.3 A.4, A.3, A.36.2) closely enough
for dcm2niix, Orthanc and DCMTK; this is hand-written because no library generates geometry-exact series
of these kinds (pydicom/highdicom only encode what they are given).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, EnhancedMRImageStorage, MRImageStorage, generate_uid

from ..imagewriter import (
    ds_text,
    image_instance,
    image_pixels,
    image_plane,
    rescale,
    series_header,
    to_stored,
    write_instance,
)
from .geometry import rigid_matrix

__all__ = [
    "KINDS",
    "Grid",
    "grid",
    "moved_phantom",
    "phantom",
    "rigid_matrix",
    "write_series",
    "write_volume_series",
]

KINDS = ("axial", "ct", "oblique", "tilted_ct", "enhanced", "enhanced_reversed", "dsc", "multiecho", "float_map")

# tissue name -> (centre as fraction of radius (x, y, z) LPS, semi-axes as fraction of radius)
_TISSUES = [
    ("scalp", (0.0, 0.0, 0.0), (0.80, 1.00, 0.85)),
    ("nose", (0.0, -0.93, -0.25), (0.14, 0.18, 0.22)),
    ("skull", (0.0, 0.0, 0.0), (0.75, 0.95, 0.80)),
    ("csf", (0.0, 0.0, 0.0), (0.70, 0.90, 0.75)),
    ("gm", (0.0, 0.0, 0.0), (0.66, 0.86, 0.71)),
    ("wm", (0.0, 0.02, 0.03), (0.52, 0.72, 0.55)),
    ("vent_l", (0.13, 0.05, 0.10), (0.07, 0.30, 0.14)),
    ("vent_r", (-0.11, 0.08, 0.08), (0.05, 0.22, 0.10)),
    ("lesion", (0.30, -0.35, 0.22), (0.11, 0.11, 0.11)),
]
_CONTRAST = {
    #           scalp  nose  skull  csf   gm    wm  vent_l vent_r lesion  background
    "t1": dict(scalp=700, nose=650, skull=120, csf=250, gm=560, wm=850, vent_l=250, vent_r=250, lesion=420, bg=0),
    "t2": dict(scalp=500, nose=480, skull=80, csf=1400, gm=900, wm=650, vent_l=1400, vent_r=1400, lesion=1200, bg=0),
    "ct": dict(scalp=30, nose=-60, skull=1200, csf=8, gm=42, wm=28, vent_l=8, vent_r=8, lesion=70, bg=-1000),
}


def phantom(points: np.ndarray, *, radius: float = 80.0, contrast: str = "t1", edge_mm: float = 0.8) -> np.ndarray:
    """Intensity of the phantom head at ``points`` (..., 3) in patient LPS mm, head centred at the origin."""
    table = _CONTRAST[contrast]
    p = np.asarray(points, dtype=np.float64)
    out = np.full(p.shape[:-1], float(table["bg"]))
    # smooth anatomical "texture" fixed to the object (+-6 % of the tissue value), so that intensity gradients
    # exist inside tissues too, as in real images
    u = p / radius * 80.0
    texture = 1.0 + 0.06 * np.sin(u[..., 0] / 6.0 + 1.0) * np.sin(u[..., 1] / 7.5) * np.sin(u[..., 2] / 6.8 + 0.5)
    for name, centre, axes in _TISSUES:
        c = np.asarray(centre) * radius
        a = np.asarray(axes) * radius
        r = np.sqrt((((p - c) / a) ** 2).sum(axis=-1))
        s = 0.5 * (1.0 - np.tanh((r - 1.0) * a.mean() / edge_mm))
        value = table[name] * texture if name not in ("skull",) or contrast != "ct" else table[name]
        out = out * (1.0 - s) + value * s
    return out


def moved_phantom(matrix: np.ndarray, *, radius: float = 80.0, contrast: str = "t1"):
    """``f(points)`` of the phantom moved by the rigid 4x4 ``matrix`` (LPS): ``f(q) = phantom(matrix^-1 q)``.

    A registration of this image (moving) onto the unmoved phantom (fixed) must recover ``matrix`` as its
    fixed->moving transform.
    """
    inv = np.linalg.inv(matrix)

    def f(points: np.ndarray) -> np.ndarray:
        return phantom(points @ inv[:3, :3].T + inv[:3, 3], radius=radius, contrast=contrast)

    return f


@dataclass(frozen=True)
class Grid:
    """A voxel grid: ``shape`` (nx, ny, nz) = (columns, rows, slices) and per-slice image positions (LPS mm).

    ``row_dir`` is the direction of increasing column index (IOP[0:3]), ``col_dir`` of increasing row index
    (IOP[3:6]); ``spacing`` is (column spacing, row spacing, nominal slice spacing).
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    row_dir: np.ndarray
    col_dir: np.ndarray
    positions: np.ndarray  # (nz, 3) ImagePositionPatient of each slice
    tilt_deg: float = 0.0

    def points(self, k: int) -> np.ndarray:
        """World points (ny, nx, 3) of slice ``k``, in DICOM pixel-array order (row, column)."""
        nx, ny, _ = self.shape
        i = np.arange(nx)[None, :, None]
        j = np.arange(ny)[:, None, None]
        return self.positions[k] + i * self.spacing[0] * self.row_dir + j * self.spacing[1] * self.col_dir

    @property
    def affine_lps(self) -> np.ndarray:
        """4x4 voxel (i, j, k) -> LPS matrix (exact for untilted grids)."""
        m = np.eye(4)
        m[:3, 0] = self.row_dir * self.spacing[0]
        m[:3, 1] = self.col_dir * self.spacing[1]
        m[:3, 2] = (self.positions[-1] - self.positions[0]) / max(1, self.shape[2] - 1)
        m[:3, 3] = self.positions[0]
        return m


def grid(shape=(64, 64, 20), spacing=(3.5, 3.5, 5.0), *, rotation_deg=(0.0, 0.0, 0.0), centre=(0.0, 0.0, 0.0),
         tilt_deg: float = 0.0, reverse_slices: bool = False) -> Grid:
    """An axial grid centred on ``centre``, rotated by ``rotation_deg`` (oblique), or gantry-tilted.

    With ``tilt_deg`` the image plane is tilted about the x axis but successive slices step along z
    (the table), as on a tilted CT gantry; the grid is then sheared.
    """
    nx, ny, nz = shape
    r = rigid_matrix(rotation_deg)[:3, :3]
    row_dir, col_dir = r[:, 0], r[:, 1]
    step = r[:, 2] * spacing[2]
    if tilt_deg:
        t = np.deg2rad(tilt_deg)
        row_dir = np.array([1.0, 0.0, 0.0])
        col_dir = np.array([0.0, np.cos(t), -np.sin(t)])
        step = np.array([0.0, 0.0, spacing[2] / np.cos(t)])  # table feed keeps the slice spacing along the normal
    if reverse_slices:
        step = -step
    c = np.asarray(centre, dtype=float)
    first = c - row_dir * spacing[0] * (nx - 1) / 2 - col_dir * spacing[1] * (ny - 1) / 2 - step * (nz - 1) / 2
    positions = first + np.arange(nz)[:, None] * step
    return Grid(tuple(shape), tuple(float(s) for s in spacing), row_dir, col_dir, positions, tilt_deg)


def _series_header(modality: str, sop_class: str, *, study_uid: str, series_uid: str, for_uid: str,
                   series_number: int, description: str, when: _dt.datetime, image_type: list[str]) -> Dataset:
    study = {
        "SpecificCharacterSet": "ISO_IR 100",
        "PatientName": "Phantom^Head",
        "PatientID": "PHANTOM-001",
        "PatientBirthDate": "19700101",
        "PatientSex": "O",
        "StudyInstanceUID": study_uid,
        "StudyDate": when.strftime("%Y%m%d"),
        "StudyTime": when.strftime("%H%M%S"),
        "StudyID": "1",
        "AccessionNumber": "ACC0001",
        "ReferringPhysicianName": "",
        "StudyDescription": "Synthetic head",
        "Manufacturer": "meshdcm",
        "ManufacturerModelName": "phantom",
        "InstitutionName": "Test",
        "PatientPosition": "HFS",
        "BodyPartExamined": "HEAD",
    }
    ds = series_header(study, sop_class_uid=sop_class, modality=modality, series_uid=series_uid,
                       series_number=series_number, series_description=description, image_type=image_type,
                       frame_of_reference_uid=for_uid)
    ds.ProtocolName = description
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = ds.StudyTime
    return ds


def write_volume_series(out_dir: str | Path, values, g: Grid, *, modality: str = "MR", description: str = "T1 3D",
                        slope: float = 1.0, intercept: float | None = None, echo_times=None, seed: int = 0,
                        study_uid: str | None = None, for_uid: str | None = None, series_number: int = 1,
                        repetition_time_ms: float = 8.0, extra: dict | None = None) -> list[Path]:
    """Write classic single-frame instances of ``values``.

    ``values`` is either a callable ``f(points) -> intensities`` evaluated on the grid, or an array
    (nx, ny, nz[, nt]) of real-world values.  A 4th axis is written as echoes when ``echo_times`` (ms) is given,
    else as temporal positions (DSC-like, one TR apart).
    """
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    nx, ny, nz = g.shape
    if callable(values):
        vol = np.stack([values(g.points(k)).T for k in range(nz)], axis=2)
    else:
        vol = np.asarray(values, dtype=float)
    if vol.ndim == 3:
        vol = vol[..., None]
    nt = vol.shape[3]
    if intercept is None:
        intercept = -1024.0 if modality == "CT" else 0.0
    when = _dt.datetime(2024, 3, 1, 9, 30, 0)
    study_uid = study_uid or generate_uid(entropy_srcs=["meshdcm-testdata-study", str(seed)])
    for_uid = for_uid or generate_uid(entropy_srcs=["meshdcm-testdata-for", str(seed)])
    series_uid = generate_uid(entropy_srcs=["meshdcm-testdata-series", str(seed), description, str(series_number)])
    header = _series_header(modality, CTImageStorage if modality == "CT" else MRImageStorage, study_uid=study_uid,
                            series_uid=series_uid, for_uid=for_uid, series_number=series_number,
                            description=description, when=when,
                            image_type=["ORIGINAL", "PRIMARY", "AXIAL"] if modality == "CT"
                            else ["ORIGINAL", "PRIMARY", "M", "ND"])
    normal = np.cross(g.row_dir, g.col_dir)
    order = rng.permutation(nz * nt)
    paths = []
    for n, idx in enumerate(order):
        t, k = divmod(int(idx), nz)
        ds = image_instance(header, sop_instance_uid=generate_uid(entropy_srcs=[series_uid, str(t), str(k)]),
                            instance_number=t * nz + k + 1)
        acq = when + _dt.timedelta(seconds=(t * repetition_time_ms / 1000.0 if echo_times is None else 0.0)
                                   + k * 0.05)
        ds.AcquisitionTime = acq.strftime("%H%M%S.%f")
        ds.ContentTime = ds.AcquisitionTime
        ds.AcquisitionNumber = 1
        image_plane(ds, position=[ds_text(v) for v in g.positions[k]],
                    orientation=[ds_text(v) for v in (*g.row_dir, *g.col_dir)],
                    pixel_spacing=[ds_text(g.spacing[1]), ds_text(g.spacing[0])], slice_thickness=ds_text(g.spacing[2]),
                    spacing_between_slices=None if modality == "CT" else ds_text(g.spacing[2]),
                    slice_location=ds_text(float(g.positions[k] @ normal)))
        image_pixels(ds, to_stored(vol[:, :, k, t].T, slope, intercept, np.int16 if modality == "CT" else np.uint16))
        rescale(ds, ds_text(slope), ds_text(intercept), "HU" if modality == "CT" else None)
        if modality == "CT":
            ds.KVP = "120"
            ds.GantryDetectorTilt = ds_text(g.tilt_deg)
            ds.ConvolutionKernel = "H30s"
        else:
            ds.MagneticFieldStrength = "3"
            ds.RepetitionTime = ds_text(repetition_time_ms)
            ds.FlipAngle = "15"
            ds.ScanningSequence = "GR"
            ds.SequenceVariant = "SP"
            ds.MRAcquisitionType = "3D"
            ds.ImagingFrequency = "123.2"
            if echo_times is not None:
                ds.EchoTime = ds_text(echo_times[t])
                ds.EchoNumbers = t + 1
            else:
                ds.EchoTime = "4"
                ds.EchoNumbers = 1
                if nt > 1:
                    ds.TemporalPositionIdentifier = t + 1
                    ds.NumberOfTemporalPositions = nt
                    ds.MRAcquisitionType = "2D"
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        paths.append(write_instance(ds, out / f"I{n:05d}"))
    return paths


def _write_enhanced(out_dir: Path, g: Grid, *, seed: int, reverse_frames: bool = False) -> list[Path]:
    """One Enhanced MR Image Storage object (PS3.3 A.36.2).

    Frames are stored in In-Stack Position order, or in reverse when ``reverse_frames`` (legal, and a trap:
    dcm2niix v1.0.20260724 then pairs the frames with the wrong positions).
    """
    nx, ny, nz = g.shape
    when = _dt.datetime(2024, 3, 1, 9, 40, 0)
    study_uid = generate_uid(entropy_srcs=["meshdcm-testdata-study", str(seed)])
    for_uid = generate_uid(entropy_srcs=["meshdcm-testdata-for", str(seed)])
    series_uid = generate_uid(entropy_srcs=["meshdcm-testdata-series", str(seed), "enhanced", str(reverse_frames)])
    header = _series_header("MR", EnhancedMRImageStorage, study_uid=study_uid, series_uid=series_uid, for_uid=for_uid,
                            series_number=7, description="T1 enhanced", when=when,
                            image_type=["ORIGINAL", "PRIMARY", "M", "NONE"])
    ds = image_instance(header, sop_instance_uid=generate_uid(entropy_srcs=[series_uid, "1"]), instance_number=1)
    ds.ContentDate = ds.StudyDate
    ds.ContentTime = ds.StudyTime
    ds.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S.%f")
    ds.AcquisitionNumber = 1
    ds.MagneticFieldStrength = "3"
    ds.ImagingFrequency = "123.2"
    ds.MRAcquisitionType = "2D"
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ComplexImageComponent = "MAGNITUDE"
    ds.AcquisitionContrast = "T1"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    dim_org = generate_uid(entropy_srcs=[series_uid, "dim"])
    org = Dataset()
    org.DimensionOrganizationUID = dim_org
    ds.DimensionOrganizationSequence = Sequence([org])
    idx1 = Dataset()
    idx1.DimensionOrganizationUID = dim_org
    idx1.DimensionIndexPointer = 0x00209056  # StackID
    idx1.FunctionalGroupPointer = 0x00209111  # FrameContentSequence
    idx2 = Dataset()
    idx2.DimensionOrganizationUID = dim_org
    idx2.DimensionIndexPointer = 0x00209057  # InStackPositionNumber
    idx2.FunctionalGroupPointer = 0x00209111
    ds.DimensionIndexSequence = Sequence([idx1, idx2])

    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = [ds_text(g.spacing[1]), ds_text(g.spacing[0])]
    pm.SliceThickness = ds_text(g.spacing[2])
    pm.SpacingBetweenSlices = ds_text(g.spacing[2])
    shared.PixelMeasuresSequence = Sequence([pm])
    po = Dataset()
    po.ImageOrientationPatient = [ds_text(v) for v in (*g.row_dir, *g.col_dir)]
    shared.PlaneOrientationSequence = Sequence([po])
    pvt = Dataset()
    pvt.RescaleIntercept = "0"
    pvt.RescaleSlope = "1"
    pvt.RescaleType = "US"
    shared.PixelValueTransformationSequence = Sequence([pvt])
    timing = Dataset()
    timing.RepetitionTime = "500"
    timing.FlipAngle = "70"
    timing.EchoTrainLength = 1
    shared.MRTimingAndRelatedParametersSequence = Sequence([timing])
    echo = Dataset()
    echo.EffectiveEchoTime = 12.0
    shared.MREchoSequence = Sequence([echo])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])

    frames, per_frame = [], []
    for n, k in enumerate(reversed(range(nz)) if reverse_frames else range(nz)):
        item = Dataset()
        fc = Dataset()
        fc.StackID = "1"
        fc.InStackPositionNumber = k + 1
        fc.DimensionIndexValues = [1, k + 1]
        fc.FrameAcquisitionDateTime = (when + _dt.timedelta(seconds=0.1 * n)).strftime("%Y%m%d%H%M%S.%f")
        fc.FrameAcquisitionNumber = 1
        item.FrameContentSequence = Sequence([fc])
        pp = Dataset()
        pp.ImagePositionPatient = [ds_text(v) for v in g.positions[k]]
        item.PlanePositionSequence = Sequence([pp])
        per_frame.append(item)
        frames.append(to_stored(phantom(g.points(k), contrast="t1"), 1.0, 0.0, np.uint16))
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    image_pixels(ds, np.stack(frames))
    return [write_instance(ds, out_dir / "ENH00001")]


def write_series(out_dir: str | Path, kind: str = "axial", *, shape=(64, 64, 20), spacing=(3.5, 3.5, 5.0),
                 seed: int = 0) -> list[Path]:
    """Write one synthetic series of ``kind`` (see :data:`KINDS`) into ``out_dir``; returns the files."""
    out = Path(out_dir)
    if kind == "axial":
        return write_volume_series(out, lambda p: phantom(p, contrast="t1"), grid(shape, spacing, reverse_slices=True),
                                   description="T1 axial", seed=seed, series_number=2)
    if kind == "ct":
        return write_volume_series(out, lambda p: phantom(p, contrast="ct"), grid(shape, spacing), modality="CT",
                                   description="Head CT", seed=seed, series_number=3)
    if kind == "oblique":
        g = grid(shape, spacing, rotation_deg=(18.0, -12.0, 25.0), centre=(3.0, -5.0, 8.0))
        return write_volume_series(out, lambda p: phantom(p, contrast="t1"), g, description="T1 oblique",
                                   seed=seed, series_number=4)
    if kind == "tilted_ct":
        g = grid(shape, spacing, tilt_deg=15.0)
        return write_volume_series(out, lambda p: phantom(p, contrast="ct"), g, modality="CT",
                                   description="Head CT tilted", seed=seed, series_number=5)
    if kind == "float_map":
        return write_volume_series(out, lambda p: phantom(p, contrast="t2") * 0.731 - 37.5, grid(shape, spacing),
                                   description="T2 map", slope=0.25, intercept=-200.0, seed=seed, series_number=6)
    if kind in ("enhanced", "enhanced_reversed"):
        return _write_enhanced(out, grid(shape, spacing, rotation_deg=(0.0, 10.0, 0.0)), seed=seed,
                               reverse_frames=kind == "enhanced_reversed")
    if kind == "dsc":
        g = grid(shape, spacing)
        base = np.stack([phantom(g.points(k), contrast="t2").T for k in range(g.shape[2])], axis=2)
        t = np.arange(10, dtype=float)
        drop = 1.0 - 0.4 * np.exp(-((t - 4.0) ** 2) / 2.0)  # bolus passage
        return write_volume_series(out, base[..., None] * drop, g, description="DSC perfusion",
                                   repetition_time_ms=1500.0, seed=seed, series_number=8)
    if kind == "multiecho":
        g = grid(shape, spacing)
        base = np.stack([phantom(g.points(k), contrast="t2").T for k in range(g.shape[2])], axis=2)
        tes = [10.0, 20.0, 30.0]
        vol = np.stack([base * np.exp(-te / 80.0) for te in tes], axis=3)
        return write_volume_series(out, vol, g, description="ME GRE", echo_times=tes, seed=seed, series_number=9,
                                   repetition_time_ms=40.0)
    raise ValueError(f"unknown synthetic series kind {kind!r}; choose one of {', '.join(KINDS)}")
