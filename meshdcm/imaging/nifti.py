"""DICOM series -> NIfTI-1 with a BIDS-style JSON sidecar, laid out as dcm2niix lays it out.

Geometry: DICOM patient coordinates are LPS, NIfTI's are RAS, so the affine is ``diag(-1, -1, 1, 1) @ A_lps``.
Like dcm2niix, rows are flipped (the first NIfTI row is the last DICOM row) and slices run along the slice
normal; stored integers are kept with ``scl_slope``/``scl_inter`` (PS3.3 C.11.1 Modality LUT rescale), and
``qform_code = sform_code = 1`` (scanner).  4D series (time) are one file with ``pixdim[4] = TR``; echoes are one
file each (``_e2``, ``_e3`` suffixes).

Gantry tilt (CT): the raw series is a sheared grid.  The plain output keeps the exact sheared affine in the sform
(qform holds the nearest orthogonal frame) and the sidecar says ``"GantryTiltSheared": true``; a second file
``..._Tilt_1.nii`` is resampled slice by slice (linear interpolation along the shear) onto an orthogonal grid, as
dcm2niix does.  Use the ``_Tilt_1`` file for analysis.

Sidecar keys and units follow dcm2niix / BIDS (times in seconds).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset

from .._version import __version__
from .errors import NiftiError
from .series import SeriesVolume, load_series
from ..atomic import replacing

__all__ = ["NiftiResult", "bids_sidecar", "correct_tilt", "series_to_nifti", "volume_to_nifti", "LPS_TO_RAS"]

log = logging.getLogger(__name__)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class NiftiResult:
    """What :func:`series_to_nifti` wrote: NIfTI paths, their sidecars (paths and dicts), and warnings."""

    paths: list[Path]
    sidecar_paths: list[Path]
    sidecars: list[dict]
    series_uid: str
    warnings: list[str] = field(default_factory=list)

    @property
    def sidecar(self) -> dict:
        return self.sidecars[0]


def _flip_rows(ny: int) -> np.ndarray:
    f = np.eye(4)
    f[1, 1] = -1.0
    f[1, 3] = ny - 1
    return f


def volume_to_nifti(vol: SeriesVolume) -> nib.Nifti1Image:
    """The NIfTI image of ``vol`` (rows flipped like dcm2niix, rescale in the header)."""
    data = vol.stored[:, ::-1, :, :]
    if data.shape[3] == 1:
        data = data[..., 0]
    affine = LPS_TO_RAS @ vol.affine_lps @ _flip_rows(vol.stored.shape[1])
    img = nib.Nifti1Image(np.asfortranarray(data), None)
    hdr = img.header
    hdr.set_sform(affine, code=1)
    if vol.sheared:
        # qform cannot hold a shear: keep the nearest orthogonal frame (normal direction, true slice spacing)
        q = affine.copy()
        n = np.cross(q[:3, 0], q[:3, 1])
        n /= np.linalg.norm(n)
        q[:3, 2] = n * abs(q[:3, 2] @ n)
        hdr.set_qform(q, code=1)
    else:
        hdr.set_qform(affine, code=1)
    hdr.set_xyzt_units("mm", "sec")
    tr = _get(vol.reference, "RepetitionTime")
    zooms = list(hdr.get_zooms())
    if len(zooms) == 4:
        zooms[3] = float(tr) / 1000.0 if tr else 1.0
        hdr.set_zooms(zooms)
    if vol.slope != 1.0 or vol.intercept != 0.0 or np.issubdtype(data.dtype, np.integer):
        hdr.set_slope_inter(vol.slope, vol.intercept)
    te = vol.echo_time
    hdr["descrip"] = (f"TE={te:g};" if te is not None else "") + "meshdcm " + __version__
    return img


def _get(ds: Dataset, keyword: str):
    """``keyword`` from the dataset, or from its shared functional groups (enhanced objects)."""
    if keyword in ds:
        return ds.get(keyword)
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        for elem in shared[0]:
            if elem.VR == "SQ" and elem.value and keyword in elem.value[0]:
                return elem.value[0].get(keyword)
    return None


def _num(value):
    if value is None or value == "":
        return None
    f = float(value)
    return int(f) if f.is_integer() else f


def _time_str(value) -> str | None:
    if not value:
        return None
    s = str(value)
    if len(s.split(".")[0]) == 14:
        s = s[8:]
    frac = s.split(".")[1] if "." in s else ""
    return f"{s[0:2]}:{s[2:4]}:{s[4:6]}.{(frac + '000000')[:6]}"


def bids_sidecar(vol: SeriesVolume, *, multi_echo: bool = False) -> dict:
    """BIDS-style sidecar for ``vol`` with dcm2niix's key names and units (seconds)."""
    ds = vol.reference
    out: dict = {}

    def put(key, value):
        if value is not None and value != "" and value != []:
            out[key] = value

    put("Modality", str(ds.get("Modality", "")))
    put("MagneticFieldStrength", _num(_get(ds, "MagneticFieldStrength")))
    put("ImagingFrequency", _num(_get(ds, "ImagingFrequency")))
    put("Manufacturer", str(ds.get("Manufacturer", "")))
    put("ManufacturersModelName", str(ds.get("ManufacturerModelName", "")))
    put("InstitutionName", str(ds.get("InstitutionName", "")))
    put("BodyPart", str(ds.get("BodyPartExamined", "")))
    put("PatientPosition", str(ds.get("PatientPosition", "")))
    put("MRAcquisitionType", str(_get(ds, "MRAcquisitionType") or ""))
    put("StudyDescription", str(ds.get("StudyDescription", "")))
    put("SeriesDescription", str(ds.get("SeriesDescription", "")))
    put("ProtocolName", str(ds.get("ProtocolName", "")))
    put("ScanningSequence", str(_get(ds, "ScanningSequence") or ""))
    put("SequenceVariant", str(_get(ds, "SequenceVariant") or ""))
    image_type = ds.get("ImageType")
    image_type = [str(v) for v in image_type] if image_type else []
    if ds.get("Modality") == "MR" and "M" in image_type[2:] and "MAGNITUDE" not in image_type:
        image_type.append("MAGNITUDE")  # as dcm2niix does (complex image component of an "M" image)
    put("ImageType", image_type)
    put("SeriesNumber", _num(ds.get("SeriesNumber")))
    put("AcquisitionTime", _time_str(ds.get("AcquisitionTime") or ds.get("AcquisitionDateTime")))
    put("AcquisitionNumber", _num(ds.get("AcquisitionNumber")))
    put("ConvolutionKernel", str(ds.get("ConvolutionKernel", "")) or None)
    put("SliceThickness", _num(vol.frames[0].thickness))
    put("SpacingBetweenSlices", _num(_get(ds, "SpacingBetweenSlices")))
    if vol.echo_number is not None and (multi_echo or vol.echo_number > 1):
        put("EchoNumber", vol.echo_number)
    if vol.echo_time is not None and ds.get("Modality") == "MR":
        put("EchoTime", round(vol.echo_time / 1000.0, 6))
    tr = _num(_get(ds, "RepetitionTime"))
    put("RepetitionTime", round(tr / 1000.0, 6) if tr is not None else None)
    put("InversionTime", round(float(_get(ds, "InversionTime")) / 1000.0, 6) if _get(ds, "InversionTime") else None)
    put("FlipAngle", _num(_get(ds, "FlipAngle")))
    put("ImageOrientationPatientDICOM", [_num(round(float(v), 6)) for v in vol.frames[0].orientation])
    if vol.sheared:
        put("GantryDetectorTilt", _num(ds.get("GantryDetectorTilt")))
        out["GantryTiltSheared"] = True
        out["GantryTiltDegrees"] = round(vol.tilt_deg, 4)
    put("SeriesInstanceUID", vol.series_uid)
    put("StudyInstanceUID", str(ds.get("StudyInstanceUID", "")))
    put("FrameOfReferenceUID", str(ds.get("FrameOfReferenceUID", "")))
    out["ConversionSoftware"] = "meshdcm"
    out["ConversionSoftwareVersion"] = __version__
    return out


def correct_tilt(vol: SeriesVolume) -> SeriesVolume:
    """Resample a sheared (gantry-tilted) volume onto an orthogonal grid, slice by slice.

    Each slice keeps its plane; it is shifted in-plane by its offset along the shear, with linear
    interpolation; the grid grows to hold every shifted slice; voxels outside the acquired data get the
    lowest stored value (air).
    """
    from scipy import ndimage  # local: only tilted CT needs it

    if not vol.sheared:
        return vol
    a = vol.affine_lps
    row, col = a[:3, 0] / np.linalg.norm(a[:3, 0]), a[:3, 1] / np.linalg.norm(a[:3, 1])
    dc, dr = np.linalg.norm(a[:3, 0]), np.linalg.norm(a[:3, 1])
    normal = np.cross(row, col)
    step = a[:3, 2]
    dn = float(step @ normal)
    nx, ny, nz, nt = vol.stored.shape
    # in-plane offset of slice k, in voxels along i and j
    ki = np.arange(nz) * (step @ row) / dc
    kj = np.arange(nz) * (step @ col) / dr
    i0, j0 = int(np.floor(min(0.0, ki.min()))), int(np.floor(min(0.0, kj.min())))
    i1, j1 = int(np.ceil(max(0.0, ki.max()))), int(np.ceil(max(0.0, kj.max())))
    out_shape = (nx + i1 - i0, ny + j1 - j0, nz, nt)
    fill = vol.stored.min()
    out = np.empty(out_shape, dtype=vol.stored.dtype)
    ii, jj = np.meshgrid(np.arange(out_shape[0], dtype=float), np.arange(out_shape[1], dtype=float), indexing="ij")
    for t in range(nt):
        for k in range(nz):
            src = vol.stored[:, :, k, t].astype(np.float64)
            coords = np.stack([ii + i0 - ki[k], jj + j0 - kj[k]])
            res = ndimage.map_coordinates(src, coords, order=1, mode="constant", cval=float(fill))
            if np.issubdtype(out.dtype, np.integer):
                res = np.rint(res)
            out[:, :, k, t] = res.astype(out.dtype)
    affine = np.eye(4)
    affine[:3, 0] = row * dc
    affine[:3, 1] = col * dr
    affine[:3, 2] = normal * dn
    affine[:3, 3] = a[:3, 3] + i0 * dc * row + j0 * dr * col
    return SeriesVolume(out, vol.slope, vol.intercept, affine, vol.frames, vol.echo_number, vol.echo_time, 0.0,
                        [*vol.warnings, "resampled to correct gantry tilt"])


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "series"


def series_to_nifti(series_dir: str | Path, out_dir: str | Path, *, compress: bool = False,
                    name: str | None = None) -> NiftiResult:
    """Convert the DICOM series in ``series_dir`` to NIfTI + JSON sidecars in ``out_dir``.

    Files are named ``<SeriesNumber>_<SeriesDescription>[_e<echo>][_Tilt_1].nii[.gz]`` (dcm2niix's ``%s_%d``)
    unless ``name`` is given.  Returns every path written.
    """
    volumes = load_series(series_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ref = volumes[0].reference
    base = name or _safe_name(f"{ref.get('SeriesNumber', '')}_{ref.get('SeriesDescription', '')}")
    ext = ".nii.gz" if compress else ".nii"
    paths, sidecar_paths, sidecars, warnings = [], [], [], []
    for n, vol in enumerate(volumes):
        stem = base + (f"_e{vol.echo_number or n + 1}" if len(volumes) > 1 else "")
        for n_variant, v in enumerate([vol, correct_tilt(vol)] if vol.sheared else [vol]):
            suffix = "_Tilt_1" if n_variant else ""
            img = volume_to_nifti(v)
            path = out / f"{stem}{suffix}{ext}"
            try:
                with replacing(path) as tmp:
                    nib.save(img, tmp)
            except OSError as exc:
                raise NiftiError(f"cannot write {path} for series {vol.series_uid}: {exc}; check space and "
                                 "permissions of the output folder") from exc
            paths.append(path)
            warnings.extend(v.warnings)
            if not n_variant:
                car = bids_sidecar(vol, multi_echo=len(volumes) > 1)
                sp = out / f"{stem}.json"
                with replacing(sp) as tmp:
                    tmp.write_text(json.dumps(car, indent=2) + "\n")
                sidecars.append(car)
                sidecar_paths.append(sp)
    log.info("series %s -> %d NIfTI file(s) in %s", volumes[0].series_uid, len(paths), out)
    return NiftiResult(paths, sidecar_paths, sidecars, volumes[0].series_uid, warnings)
