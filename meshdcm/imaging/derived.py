"""Write a volume as a derived DICOM series of the same study, and NIfTI -> DICOM.

The series follows the MR Image / CT Image IODs (PS3.3 A.4 / A.3) as classic single-frame instances:

* Patient, General Study and (where present) MR/CT acquisition attributes are copied from the source series;
  the Frame of Reference is the source's (or the geometry reference's, for registered series).
* ``ImageType`` is ``DERIVED\\SECONDARY``; the source is referenced by ``ReferencedSeriesSequence``
  (Common Instance Reference, C.12.2) and, per instance, by ``SourceImageSequence`` (General Image, C.7.6.1)
  naming the nearest source image; provenance marks are added by :func:`meshdcm.imaging.provenance.stamp`.
* Series and SOP Instance UIDs are derived deterministically (``pydicom.uid.generate_uid(entropy_srcs=...)``)
  from the input content, the source series, the node name and version, so re-running a node yields the same
  UIDs (PACS overwrite instead of duplicates).
* Geometry: each slice's ImagePositionPatient is ``A @ (0, 0, k, 1)`` and its ImageOrientationPatient the
  normalised first two columns of the LPS affine ``A``; a sheared affine is therefore kept exactly.
* Window (MR): from the background to the 99.5th percentile of the head voxels (:func:`display_window`); CT: the brain window 40/80.
* Float maps are stored as 16-bit integers with RescaleSlope/RescaleIntercept chosen to span the value range
  (quantisation step = range / 65534); integer data that fits 16 bits is stored unchanged.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, MRImageStorage, generate_uid

from .._version import __version__
from ..imagewriter import (
    ds_text,
    encode_values,
    file_meta,
    image_instance,
    image_pixels,
    image_plane,
    rescale,
    series_header,
    window,
    write_instance,
)
from .errors import NiftiError
from .nifti import LPS_TO_RAS, _get
from .provenance import stamp
from .series import SeriesVolume, load_series

__all__ = ["align_axes", "display_window", "encode_values", "nifti_to_series", "write_derived_series"]

log = logging.getLogger(__name__)

_PATIENT_STUDY = [
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientWeight", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName", "StudyDescription", "Manufacturer", "ManufacturerModelName", "InstitutionName",
    "StationName", "DeviceSerialNumber", "BodyPartExamined", "PatientPosition", "AcquisitionNumber",
]
_MR_ATTRS = ["ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "RepetitionTime",
             "EchoTime", "EchoTrainLength", "InversionTime", "FlipAngle", "MagneticFieldStrength",
             "ImagingFrequency", "ImagedNucleus", "EchoNumbers"]
_CT_ATTRS = ["KVP", "ConvolutionKernel", "XRayTubeCurrent", "ExposureTime", "Exposure"]


def _nearest_frames(vol: SeriesVolume, positions: np.ndarray, normal: np.ndarray) -> list:
    """For each output slice position, the source frame whose plane centre is nearest."""
    nx, ny = vol.stored.shape[:2]
    a = vol.affine_lps
    centres = []
    nz = vol.stored.shape[2]
    for k in range(nz):
        centres.append(a @ np.array([(nx - 1) / 2, (ny - 1) / 2, k, 1.0]))
    centres = np.array(centres)[:, :3]
    out = []
    for p in positions:
        k = int(np.argmin(np.linalg.norm(centres - p, axis=1)))
        out.append(vol.frames[k])
    return out


#: An MR voxel brighter than this fraction of the volume's 99.5th percentile is in the head (MR background is
#: noise; the web viewer's rule for a series without a window of its own, meshdcm/web/windows.py).
BACKGROUND_FRACTION = 0.05


def display_window(values: np.ndarray) -> tuple[float, float]:
    """(WindowCenter, WindowWidth) of a derived MR series: from the volume's lowest values (its 0.5th percentile,
    the background) to the 99.5th percentile of its head voxels (those above 5 % of the volume's 99.5th
    percentile), as a scanner's MR window spans its image (the realistic T2's own 578/1155; within 2 %).

    Not the median and range of all voxels: a series registered or reformatted onto a 3D T1 is mostly air outside
    the moving series' slab, so the median is the background; a window centred there showed the brain saturated
    white (a registered T2 at 7/1040, 40-66 % of the brain white)."""
    v = np.asarray(values, dtype=np.float32)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    top = float(np.percentile(v, 99.5))
    head = v[v > BACKGROUND_FRACTION * top] if top > 0 else v
    lo, hi = float(np.percentile(v, 0.5)), float(np.percentile(head if head.size else v, 99.5))
    return round((lo + hi) / 2, 3), round(max(hi - lo, 1e-3), 3)


def write_derived_series(values: np.ndarray, affine_lps: np.ndarray, source: SeriesVolume, out_dir: str | Path, *,
                         series_description: str, node_name: str, node_version: str, derivation: str,
                         entropy: list[str], frame_of_reference_uid: str | None = None,
                         geometry_reference: SeriesVolume | None = None, series_number: int | None = None,
                         stored_rescale: tuple[float, float] | None = None,
                         slice_thickness: float | None = None) -> list[Path]:
    """Write ``values`` (nx, ny, nz), placed by ``affine_lps``, as a derived series of ``source``'s study.

    ``entropy`` (strings identifying the input content) makes the UIDs deterministic;
    ``geometry_reference`` is the series whose grid and Frame of Reference the values are on, when not the
    source's (registration).  Returns the written paths, one per slice.
    """
    values = np.asarray(values)
    if values.ndim == 4 and values.shape[3] == 1:
        values = values[..., 0]
    if values.ndim != 3:
        raise NiftiError(f"derived series of {source.series_uid}: need a 3D volume, got shape {values.shape}; "
                         "split 4D data into one series per volume")
    ref = source.reference
    modality = str(ref.get("Modality", ""))
    if modality not in ("MR", "CT"):
        raise NiftiError(f"source series {source.series_uid} has modality {modality!r}; derived series are written "
                         "for MR and CT only")
    if stored_rescale is not None:
        stored, slope, intercept = encode_values(values, slope=stored_rescale[0], intercept=stored_rescale[1])
    else:
        stored, slope, intercept = encode_values(values)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid(entropy_srcs=["meshdcm-derived", source.series_uid, node_name, node_version,
                                            series_description, *entropy])
    for_uid = frame_of_reference_uid or str((geometry_reference or source).reference.get("FrameOfReferenceUID", ""))
    a = np.asarray(affine_lps, dtype=np.float64)
    dc, dr = np.linalg.norm(a[:3, 0]), np.linalg.norm(a[:3, 1])
    row, col = a[:3, 0] / dc, a[:3, 1] / dr
    normal = np.cross(row, col)
    thickness = slice_thickness or abs(float(a[:3, 2] @ normal))
    nx, ny, nz = values.shape
    positions = np.array([(a @ np.array([0.0, 0.0, k, 1.0]))[:3] for k in range(nz)])
    nearest = _nearest_frames(source, positions, normal)
    now = _dt.datetime.now()
    center, width = (40.0, 80.0) if modality == "CT" else display_window(stored.astype(np.float32) * slope + intercept)
    refd = Dataset()
    refd.SeriesInstanceUID = source.series_uid
    inst_items = []
    for f in {fr.sop_instance_uid: fr for fr in source.frames}.values():
        it = Dataset()
        it.ReferencedSOPClassUID = f.dataset.SOPClassUID
        it.ReferencedSOPInstanceUID = f.sop_instance_uid
        inst_items.append(it)
    refd.ReferencedInstanceSequence = Sequence(inst_items)
    referenced_series = [refd]
    if geometry_reference is not None and geometry_reference.series_uid != source.series_uid:
        geo = Dataset()
        geo.SeriesInstanceUID = geometry_reference.series_uid
        geo.ReferencedInstanceSequence = Sequence([])
        referenced_series.append(geo)
    study = {kw: ref.get(kw) for kw in _PATIENT_STUDY if kw in ref}
    for kw in _MR_ATTRS if modality == "MR" else _CT_ATTRS:
        v = _get(ref, kw)
        if v is not None:
            study[kw] = v
    if modality == "MR" and "EchoTime" not in study and source.echo_time is not None:
        study["EchoTime"] = ds_text(source.echo_time)
    header = series_header(study, sop_class_uid=MRImageStorage if modality == "MR" else CTImageStorage,
                           modality=modality, series_uid=series_uid,
                           series_number=series_number if series_number is not None
                           else int(ref.get("SeriesNumber", 0) or 0) + 1000,
                           series_description=series_description[:64], image_type=["DERIVED", "SECONDARY"],
                           frame_of_reference_uid=for_uid)
    header.SeriesDate = now.strftime("%Y%m%d")
    header.SeriesTime = now.strftime("%H%M%S")
    header.ContentDate = header.SeriesDate
    header.ContentTime = header.SeriesTime
    rescale(header, ds_text(slope), ds_text(intercept), "HU" if modality == "CT" else "US")
    window(header, ds_text(center), ds_text(max(width, 1.0)))
    header.BurnedInAnnotation = "NO"
    header.LossyImageCompression = "00"
    paths = []
    for k in range(nz):
        ds = image_instance(header, sop_instance_uid=generate_uid(entropy_srcs=[series_uid, str(k)]),
                            instance_number=k + 1)
        image_plane(ds, position=[ds_text(v) for v in positions[k]], orientation=[ds_text(v) for v in (*row, *col)],
                    pixel_spacing=[ds_text(dr), ds_text(dc)], slice_thickness=ds_text(thickness),
                    spacing_between_slices=ds_text(abs(float(a[:3, 2] @ normal))),
                    slice_location=ds_text(float(positions[k] @ normal)))
        ds.ReferencedSeriesSequence = Sequence(referenced_series)
        src = Dataset()
        src.ReferencedSOPClassUID = nearest[k].dataset.SOPClassUID
        src.ReferencedSOPInstanceUID = nearest[k].sop_instance_uid
        if nearest[k].frame_index is not None:
            src.ReferencedFrameNumber = nearest[k].frame_index + 1
        ds.SourceImageSequence = Sequence([src])
        stamp(ds, node_name=node_name, node_version=node_version, source_series_uid=source.series_uid,
              description=derivation)
        image_pixels(ds, np.ascontiguousarray(stored[:, :, k].T))
        file_meta(ds, implementation_version=f"MESHDCM_{__version__}"[:16])
        paths.append(write_instance(ds, out / f"{ds.SOPInstanceUID}.dcm"))
    log.info("wrote derived series %s (%d instances) from series %s", series_uid, len(paths), source.series_uid)
    return paths


def align_axes(values: np.ndarray, affine: np.ndarray, like: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip/permute voxel axes (losslessly) so that they run as ``like``'s do.

    NIfTI files have their rows flipped relative to DICOM (dcm2niix convention); written back unchanged they
    would display upside down, so derived slices take the source series' row/column directions.
    """
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

    transform = ornt_transform(io_orientation(affine), io_orientation(like))
    return apply_orientation(values, transform), affine @ inv_ornt_aff(transform, values.shape[:3])


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def nifti_to_series(nifti_path: str | Path, reference_dir: str | Path, out_dir: str | Path, *,
                    series_description: str, node_name: str, node_version: str,
                    derivation: str = "converted from NIfTI") -> list[Path]:
    """Write the NIfTI image (in the reference series' scanner space) as a derived series of the reference.

    The NIfTI must be in the same scanner coordinates as ``reference_dir`` (as a dcm2niix or
    :func:`series_to_nifti` output of that study and any processing that keeps the affine).
    """
    nifti_path = Path(nifti_path)
    try:
        img = nib.load(nifti_path)
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise NiftiError(f"cannot read NIfTI {nifti_path}: {exc}; give a .nii or .nii.gz file") from exc
    source = load_series(reference_dir)[0]
    affine_lps = np.linalg.inv(LPS_TO_RAS) @ img.affine
    shape = img.shape[:3]
    # the image must overlap the reference: a NIfTI from another study/space would be placed wrongly
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[2] - 1)])
    ours = (corners @ affine_lps.T)[:, :3]
    ref_shape = source.stored.shape[:3]
    ref_c = np.array([[i, j, k, 1.0] for i in (0, ref_shape[0] - 1) for j in (0, ref_shape[1] - 1)
                      for k in (0, ref_shape[2] - 1)]) @ source.affine_lps.T
    lo, hi = ref_c[:, :3].min(0), ref_c[:, :3].max(0)
    if np.any(ours.max(0) < lo - 1.0) or np.any(ours.min(0) > hi + 1.0):
        raise NiftiError(f"{nifti_path.name} does not overlap reference series {source.series_uid}; it is not in "
                         "that series' scanner space (converted from another study?)")
    if len(img.shape) > 3 and int(np.prod(img.shape[3:])) > 1:
        raise NiftiError(f"{nifti_path.name} is {len(img.shape)}D {img.shape}; write one 3D volume per series")
    raw = np.asarray(img.dataobj.get_unscaled()).reshape(shape)
    slope, inter = img.dataobj.slope, img.dataobj.inter
    rescale = None
    if np.issubdtype(raw.dtype, np.integer):
        rescale = (float(slope) if slope is not None and np.isfinite(slope) else 1.0,
                   float(inter) if inter is not None and np.isfinite(inter) else 0.0)
        values = raw
    else:
        values = np.asarray(img.get_fdata()).reshape(shape)
    values, affine_lps = align_axes(values, affine_lps, source.affine_lps)
    return write_derived_series(values, affine_lps, source, out_dir, series_description=series_description,
                                node_name=node_name, node_version=node_version, derivation=derivation,
                                entropy=[_file_digest(nifti_path)], stored_rescale=rescale)
