"""Read a DICOM series directory into image volumes with exact geometry.

Follows PS3.3 C.7.6.2 (Image Plane Module) for classic single-frame images and C.7.6.16 (Multi-frame Functional
Groups: Plane Position, Plane Orientation, Pixel Measures, Pixel Value Transformation, Frame Content, MR Echo) for
enhanced multi-frame objects.  Both are turned into the same list of :class:`Frame` records and stacked by
position along the slice normal (row x column direction), then by time (temporal position, acquisition time,
instance number).  Echoes are split into separate volumes, as dcm2niix does.

Geometry convention of :class:`SeriesVolume`: ``stored`` is indexed ``[i, j, k, t]`` with ``i`` the DICOM column,
``j`` the DICOM row and ``k`` slices sorted along the normal; ``affine_lps`` maps ``(i, j, k, 1)`` to patient LPS
millimetres.  A gantry-tilted CT keeps its exact (sheared) slice vector and reports ``tilt_deg``.

Hand-written rather than taken from a library: pydicom reads instances, SimpleITK/GDCM and nibabel's old
``nicom`` do not handle enhanced multi-frame, 4D and echo splitting together with exact sheared geometry.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from .errors import SeriesError

__all__ = ["Frame", "SeriesVolume", "load_series", "read_datasets", "stack_frames"]

log = logging.getLogger(__name__)

_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


@dataclass
class Frame:
    """One 2D image plane: an instance of a classic series or a frame of a multi-frame object."""

    position: np.ndarray
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing) as in PixelSpacing
    slope: float
    intercept: float
    dataset: Dataset
    frame_index: int | None  # None for a single-frame instance
    echo_number: int | None = None
    echo_time: float | None = None
    time_key: tuple = ()
    thickness: float | None = None

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)

    def pixels(self) -> np.ndarray:
        """Stored values (rows, columns) of this frame."""
        return _frame_pixels(self.dataset, self.frame_index)


@dataclass
class SeriesVolume:
    """A stacked volume of one series (one echo), with its geometry and source references."""

    stored: np.ndarray  # (nx, ny, nz, nt) stored values, or real values when rescale varies per frame
    slope: float
    intercept: float
    affine_lps: np.ndarray
    frames: list[Frame]  # in stacking order: index = t * nz + k
    echo_number: int | None = None
    echo_time: float | None = None
    tilt_deg: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def reference(self) -> Dataset:
        return self.frames[0].dataset

    @property
    def series_uid(self) -> str:
        return str(self.reference.SeriesInstanceUID)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.stored.shape

    @property
    def sheared(self) -> bool:
        return self.tilt_deg != 0.0

    def real(self, dtype=np.float32) -> np.ndarray:
        """Real-world values (stored * slope + intercept)."""
        return (self.stored.astype(dtype) * dtype(self.slope) + dtype(self.intercept)).astype(dtype)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(np.linalg.norm(self.affine_lps[:3, c])) for c in range(3))


def read_datasets(series_dir: str | Path) -> list[Dataset]:
    """All DICOM image instances (with pixel data) in ``series_dir`` (not recursive; DICOMDIR ignored)."""
    root = Path(series_dir)
    if not root.is_dir():
        raise SeriesError(f"{root} is not a directory; give the folder that holds one DICOM series")
    out = []
    for path in sorted(root.iterdir()):
        if not path.is_file() or path.name.upper() == "DICOMDIR":
            continue
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError) as exc:
            log.debug("skipping %s: %s", path, exc)
            continue
        if "PixelData" not in ds:
            continue
        out.append(ds)
    if not out:
        raise SeriesError(f"no DICOM image with pixel data in {root}; point to a folder of DICOM instances")
    return out


def _float_list(value, n: int, what: str, ds: Dataset) -> np.ndarray:
    if value is None or len(value) != n:
        raise SeriesError(f"instance {ds.get('SOPInstanceUID', '?')} of series {ds.get('SeriesInstanceUID', '?')} "
                          f"lacks a valid {what}; it cannot be placed in space (not an image series?)")
    return np.array([float(v) for v in value], dtype=np.float64)


def _raw_text(ds: Dataset, tag: int) -> str | None:
    """The text of a string-valued element (DS, IS, TM) without pydicom's per-value conversion.

    Converting DS/IS values through pydicom dominates reading many small instances (a 200-image DSC series);
    the raw bytes are split here instead, falling back to the converted value when already converted.
    """
    try:
        elem = ds.get_item(tag)
    except KeyError:
        return None
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, bytes | bytearray):
        text = value.decode("ascii", "replace").strip(" \x00")
        return text or None
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


def _raw_floats(ds: Dataset, tag: int) -> list[float] | None:
    text = _raw_text(ds, tag)
    if text is None:
        return None
    try:
        return [float(v) for v in text.split("\\")]
    except ValueError:
        return None


def _raw_float(ds: Dataset, tag: int, default: float | None) -> float | None:
    v = _raw_floats(ds, tag)
    return v[0] if v else default


def _seq_item(ds: Dataset, keyword: str) -> Dataset | None:
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _fg(per_frame: Dataset | None, shared: Dataset | None, seq: str, attr: str):
    """A functional-group attribute: per-frame first, then shared (PS3.3 C.7.6.16)."""
    for group in (per_frame, shared):
        if group is None:
            continue
        item = _seq_item(group, seq)
        if item is not None and attr in item:
            return item.get(attr)
    return None


def _acq_seconds(value) -> float:
    """HHMMSS.FFFFFF (or a DT's time part) -> seconds since midnight."""
    if not value:
        return 0.0
    s = str(value)
    if len(s) > 14 and "." in s and len(s.split(".")[0]) == 14:  # a DT: YYYYMMDDHHMMSS.F
        s = s[8:]
    elif len(s.split(".")[0]) == 14:
        s = s[8:]
    try:
        hh, mm, ss = int(s[0:2] or 0), int(s[2:4] or 0), float(s[4:] or 0)
    except ValueError:
        return 0.0
    return hh * 3600 + mm * 60 + ss


def _frames_of(ds: Dataset) -> list[Frame]:
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    if "PerFrameFunctionalGroupsSequence" in ds:
        shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
        frames = []
        for f, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
            ipp = _float_list(_fg(item, shared, "PlanePositionSequence", "ImagePositionPatient"), 3,
                              "ImagePositionPatient (Plane Position functional group)", ds)
            iop = _float_list(_fg(item, shared, "PlaneOrientationSequence", "ImageOrientationPatient"), 6,
                              "ImageOrientationPatient (Plane Orientation functional group)", ds)
            ps = _float_list(_fg(item, shared, "PixelMeasuresSequence", "PixelSpacing"), 2,
                             "PixelSpacing (Pixel Measures functional group)", ds)
            thick = _fg(item, shared, "PixelMeasuresSequence", "SliceThickness")
            slope = _fg(item, shared, "PixelValueTransformationSequence", "RescaleSlope")
            inter = _fg(item, shared, "PixelValueTransformationSequence", "RescaleIntercept")
            te = _fg(item, shared, "MREchoSequence", "EffectiveEchoTime")
            fc = _seq_item(item, "FrameContentSequence")
            tpos = int(fc.get("TemporalPositionIndex", 0) or 0) if fc is not None else 0
            acq = _acq_seconds(fc.get("FrameAcquisitionDateTime")) if fc is not None else 0.0
            dims = tuple(int(v) for v in fc.get("DimensionIndexValues", []) or []) if fc is not None else ()
            frames.append(Frame(ipp, iop, (ps[0], ps[1]), float(slope if slope is not None else 1.0),
                                float(inter if inter is not None else 0.0), ds, f,
                                echo_time=float(te) if te is not None else None,
                                time_key=(tpos, acq, dims, f), thickness=float(thick) if thick else None))
        return frames
    if nframes > 1:
        raise SeriesError(f"instance {ds.SOPInstanceUID} of series {ds.SeriesInstanceUID} has {nframes} frames but "
                          "no per-frame functional groups; legacy multi-frame needs conversion first "
                          "(e.g. dcm2niix or emf2sf)")
    ipp = _float_list(_raw_floats(ds, 0x00200032), 3, "ImagePositionPatient", ds)
    iop = _float_list(_raw_floats(ds, 0x00200037), 6, "ImageOrientationPatient", ds)
    ps = _float_list(_raw_floats(ds, 0x00280030), 2, "PixelSpacing", ds)
    echo_number = _raw_float(ds, 0x00180086, None)  # EchoNumbers
    te = _raw_float(ds, 0x00180081, None)  # EchoTime
    thick = _raw_float(ds, 0x00180050, None)  # SliceThickness
    return [Frame(ipp, iop, (ps[0], ps[1]), _raw_float(ds, 0x00281053, 1.0) or 1.0,  # RescaleSlope
                  _raw_float(ds, 0x00281052, 0.0) or 0.0, ds, None,  # RescaleIntercept
                  echo_number=int(echo_number) if echo_number is not None else None,
                  echo_time=te,
                  time_key=(int(_raw_float(ds, 0x00200100, 0) or 0),  # TemporalPositionIdentifier
                            _acq_seconds(_raw_text(ds, 0x00080032)),  # AcquisitionTime
                            int(_raw_float(ds, 0x00200013, 0) or 0)),  # InstanceNumber
                  thickness=thick or None)]


def _layout(ds: Dataset):
    """(rows, columns, dtype, bits stored) when the pixel data is uncompressed single-sample, else None."""
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else ""
    bits = int(ds.BitsAllocated)
    if ts not in _UNCOMPRESSED or int(ds.get("SamplesPerPixel", 1)) != 1 or bits not in (8, 16, 32):
        return None
    signed = int(ds.PixelRepresentation) == 1
    dtype = np.dtype(f"{'i' if signed else 'u'}{bits // 8}").newbyteorder("<")
    return int(ds.Rows), int(ds.Columns), dtype, int(ds.get("BitsStored", bits))


def _same_shape(ds: Dataset, ref: Dataset) -> bool:
    """Rows/Columns/BitsAllocated/PixelRepresentation identical to ``ref`` (raw bytes, no conversion)."""
    for tag in (0x00280010, 0x00280011, 0x00280100, 0x00280103):
        try:
            a, b = ds.get_item(tag), ref.get_item(tag)
        except KeyError:
            return False
        if a is None or b is None or a.value != b.value:
            return False
    return True


def _frame_pixels(ds: Dataset, frame_index: int | None, layout=None) -> np.ndarray:
    layout = layout if layout is not None else _layout(ds)
    if layout is not None:
        # fast path: view the uncompressed PixelData buffer directly (pydicom's pixel_array copies and checks more)
        rows, cols, dtype, stored = layout
        n = rows * cols
        start = (frame_index or 0) * n
        arr = np.frombuffer(ds.PixelData, dtype=dtype, count=n, offset=start * dtype.itemsize).reshape(rows, cols)
        bits = dtype.itemsize * 8
        if stored < bits:  # mask/sign-extend unused high bits
            signed = dtype.kind == "i"
            arr = arr.astype(np.int32 if signed else np.uint32) & ((1 << stored) - 1)
            if signed:
                arr = np.where(arr >= (1 << (stored - 1)), arr - (1 << stored), arr)
            arr = arr.astype(dtype.newbyteorder("="))
        return arr
    try:
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for missing codecs
        raise SeriesError(f"cannot decode pixel data of instance {ds.SOPInstanceUID}: {exc}; "
                          "install pylibjpeg / python-gdcm for compressed series") from exc
    return arr[frame_index] if frame_index is not None else arr


def _group_key_echo(frames: list[Frame]) -> list[list[Frame]]:
    """Split frames into echoes when the series has more than one echo time / echo number."""
    tes = {round(f.echo_time, 4) for f in frames if f.echo_time is not None}
    nums = {f.echo_number for f in frames if f.echo_number is not None}
    if len(tes) <= 1 and len(nums) <= 1:
        return [frames]
    groups: dict = defaultdict(list)
    for f in frames:
        key = f.echo_number if len(nums) > 1 else None
        groups[(key, round(f.echo_time or 0.0, 4))].append(f)
    return [groups[k] for k in sorted(groups, key=lambda k: (k[0] or 0, k[1]))]


def stack_frames(frames: list[Frame], series_uid: str) -> SeriesVolume:
    """Stack frames of one echo into a (nx, ny, nz, nt) volume with its LPS affine."""
    ori = frames[0].orientation
    for f in frames:
        if np.abs(f.orientation - ori).max() > 1e-4:
            raise SeriesError(f"series {series_uid} mixes image orientations; it holds several stacks (localizer?): "
                              "split it into one series per orientation before converting")
    row, col = ori[:3], ori[3:]
    normal = np.cross(row, col)
    dist = np.array([f.position @ normal for f in frames])
    order = np.argsort(dist, kind="stable")
    # cluster positions (0.01 mm tolerance) into slices
    slices: list[list[int]] = []
    for idx in order:
        if slices and abs(dist[idx] - dist[slices[-1][0]]) < 1e-2:
            slices[-1].append(int(idx))
        else:
            slices.append([int(idx)])
    nz = len(slices)
    counts = {len(s) for s in slices}
    if len(counts) != 1:
        raise SeriesError(f"series {series_uid} is incomplete: slice positions hold {sorted(counts)} frames each; "
                          "re-send the missing instances before converting")
    nt = counts.pop()
    for s in slices:
        s.sort(key=lambda i: frames[i].time_key)
    ordered = [frames[slices[k][t]] for t in range(nt) for k in range(nz)]
    first = ordered[0]
    rows, cols = int(first.dataset.Rows), int(first.dataset.Columns)
    ps = first.pixel_spacing
    warnings = []
    if nz > 1:
        steps = np.diff([dist[s[0]] for s in slices])
        if steps.max() - steps.min() > 0.1 * max(abs(steps.mean()), 1e-6):
            raise SeriesError(f"series {series_uid} has uneven slice spacing ({steps.min():.3f}..{steps.max():.3f} "
                              "mm): slices are missing or it holds several stacks; check the series is complete")
        slice_vec = (frames[slices[-1][0]].position - frames[slices[0][0]].position) / (nz - 1)
    else:
        thick = first.thickness or 1.0
        slice_vec = normal * thick
    tilt = 0.0
    cosang = abs(slice_vec @ normal) / max(np.linalg.norm(slice_vec), 1e-9)
    if cosang < 1.0 - 1e-6:
        tilt = math.degrees(math.acos(min(1.0, cosang)))
        warnings.append(f"gantry tilt / sheared grid of {tilt:.2f} degrees")
    affine = np.eye(4)
    affine[:3, 0] = row * ps[1]
    affine[:3, 1] = col * ps[0]
    affine[:3, 2] = slice_vec
    affine[:3, 3] = first.position
    slopes = {(f.slope, f.intercept) for f in ordered}
    dtype = first.pixels().dtype
    # Fortran order: each slice is then one contiguous block, the DICOM (row, column) frame's transpose copies
    # straight in, and NIfTI (also Fortran order) is written without a reordering copy
    stored = np.empty((cols, rows, nz, nt), dtype=dtype if len(slopes) == 1 else np.float32, order="F")
    layout = _layout(first.dataset)
    for n, f in enumerate(ordered):
        t, k = divmod(n, nz)
        same = layout is not None and (f.dataset is first.dataset or _same_shape(f.dataset, first.dataset))
        px = _frame_pixels(f.dataset, f.frame_index, layout if same else None)
        if px.shape != (rows, cols):
            raise SeriesError(f"series {series_uid} mixes image sizes ({px.shape} vs {(rows, cols)}); "
                              "it cannot be one volume")
        stored[:, :, k, t] = px.T if len(slopes) == 1 else px.T * np.float32(f.slope) + np.float32(f.intercept)
    slope, inter = (ordered[0].slope, ordered[0].intercept) if len(slopes) == 1 else (1.0, 0.0)
    if len(slopes) > 1:
        warnings.append("rescale slope/intercept vary per frame: stored as float32 real values")
    return SeriesVolume(stored, slope, inter, affine, ordered, echo_number=first.echo_number,
                        echo_time=first.echo_time, tilt_deg=tilt, warnings=warnings)


def load_series(series_dir: str | Path, datasets: list[Dataset] | None = None) -> list[SeriesVolume]:
    """Read ``series_dir`` (one series) into one volume per echo."""
    dss = datasets if datasets is not None else read_datasets(series_dir)
    uids = {str(ds.get("SeriesInstanceUID", "")) for ds in dss}
    if len(uids) != 1:
        raise SeriesError(f"{series_dir} holds {len(uids)} series ({', '.join(sorted(uids))}); "
                          "give a folder with exactly one series")
    uid = uids.pop()
    frames = [f for ds in dss for f in _frames_of(ds)]
    volumes = [stack_frames(group, uid) for group in _group_key_echo(frames)]
    for v in volumes:
        for w in v.warnings:
            log.warning("series %s: %s", uid, w)
    return volumes
