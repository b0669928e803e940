"""One writer for every single-frame DICOM image meshdcm makes: synthetic studies, test phantoms, derived series.

An image instance is built in a few steps, one function each, so that the writer of a series kind says only what
is particular to it (its acquisition attributes, its values)::

    header = series_header(study, sop_class_uid=..., modality=..., series_uid=..., series_number=...,
                           series_description=..., image_type=..., frame_of_reference_uid=...)   # once a series
    ds = image_instance(header, sop_instance_uid=..., instance_number=...)                      # each instance
    image_plane(ds, position=..., orientation=..., pixel_spacing=..., slice_thickness=...)
    image_pixels(ds, to_stored(values, slope, intercept, np.uint16))
    rescale(ds, slope, intercept, "US")
    window(ds, center, width)
    pixel_padding(ds, value)        # only where pixels outside the object carry no value
    write_instance(ds, path)

The modules are those of the MR and CT Image IODs (PS3.3 A.4, A.3): Patient and General Study (copied as the
caller gives them), General Series, Frame of Reference, General Image, Image Plane (C.7.6.2), Image Pixel
(C.7.6.3), Modality LUT (rescale, C.11.1), VOI LUT (window, C.11.2) and SOP Common; the file is DICOM Part 10
with explicit VR little endian. Values are written as the caller gives them (numbers or Decimal String text,
:func:`ds_text` makes the usual one), so a series keeps its exact text.

pydicom does what it does well: ``Dataset.set_pixel_data`` fills the Image Pixel module from the array (dtype ->
Bits Allocated and Pixel Representation) and ``dcmwrite(enforce_file_format=True)`` completes the File Meta group
(PS3.10 7.1: media storage UIDs from the dataset, version, implementation UID, preamble). highdicom builds the SR
and SEG objects (meshdcm.index, meshdcm.web) but has no class for classic single-frame MR or CT images.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

from .atomic import replacing

__all__ = [
    "diffusion",
    "ds_text",
    "encode_values",
    "file_meta",
    "image_instance",
    "image_pixels",
    "image_plane",
    "pixel_module",
    "pixel_padding",
    "rescale",
    "series_header",
    "to_stored",
    "window",
    "write_instance",
]


def ds_text(value: float) -> str:
    """``value`` as Decimal String text of at most 16 characters: at most 6 decimals, no trailing zeros, no ``-0``."""
    s = f"{value:.6f}".rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s if len(s) <= 16 else f"{value:.9g}"[:16]


# --- header: Patient, General Study, General Series, Frame of Reference, General Image, SOP Common ----------------


def series_header(study: Mapping[str, object], *, sop_class_uid: str, modality: str, series_uid: str,
                  series_number: int, series_description: str, image_type: Sequence[str],
                  frame_of_reference_uid: str | None = None) -> Dataset:
    """What every instance of one image series shares.

    ``study`` maps keywords to values of the Patient and General Study modules (and any other attribute the whole
    series shares, such as the equipment), set first, in its order. Without ``frame_of_reference_uid`` the caller
    sets the Frame of Reference module itself (copied from a source image, say).
    """
    ds = Dataset()
    for keyword, value in study.items():
        setattr(ds, keyword, value)
    ds.SOPClassUID = sop_class_uid
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.ImageType = list(image_type)
    if frame_of_reference_uid is not None:
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
    return ds


def image_instance(header: Dataset, *, sop_instance_uid: str, instance_number: int) -> Dataset:
    """A new instance of the series ``header`` describes; it shares no element with the header or other instances."""
    ds = copy.deepcopy(header)
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceNumber = instance_number
    return ds


# --- image plane --------------------------------------------------------------------------------------------------


def image_plane(ds: Dataset, *, position: Sequence, orientation: Sequence, pixel_spacing: Sequence,
                slice_thickness=None, spacing_between_slices=None, slice_location=None) -> None:
    """Image Plane module (C.7.6.2) of one slice.

    ``position`` is the centre of the first transmitted voxel (LPS, mm); ``orientation`` the direction cosines of a
    row and then of a column; ``pixel_spacing`` the spacing between rows and then between columns (mm): the
    reverse of the (x, y) order of the direction cosines. Attributes given as None are left out.
    """
    ds.ImagePositionPatient = list(position)
    ds.ImageOrientationPatient = list(orientation)
    ds.PixelSpacing = list(pixel_spacing)
    if slice_thickness is not None:
        ds.SliceThickness = slice_thickness
    if spacing_between_slices is not None:
        ds.SpacingBetweenSlices = spacing_between_slices
    if slice_location is not None:
        ds.SliceLocation = slice_location


# --- pixels: Image Pixel, Modality LUT, VOI LUT --------------------------------------------------------------------


def to_stored(values: np.ndarray, slope: float, intercept: float, dtype) -> np.ndarray:
    """Real-world values -> stored integers of ``dtype`` (``value = stored * slope + intercept``), rounded and
    clipped to the dtype's range."""
    info = np.iinfo(dtype)
    return np.clip(np.rint((values - intercept) / slope), info.min, info.max).astype(dtype)


def encode_values(values: np.ndarray, *, slope: float | None = None,
                  intercept: float | None = None) -> tuple[np.ndarray, float, float]:
    """Values -> (16-bit stored integers, slope, intercept).

    With ``slope``/``intercept`` given, ``values`` are already stored integers.  Integer-valued data in the
    int16 (or uint16) range is kept exactly; anything else is rescaled to span int16.
    """
    if slope is not None:
        v = np.asarray(values)
        if v.min() >= -32768 and v.max() <= 32767:
            return v.astype(np.int16), float(slope), float(intercept or 0.0)
        if v.min() >= 0 and v.max() <= 65535:
            return v.astype(np.uint16), float(slope), float(intercept or 0.0)
        values = v * slope + (intercept or 0.0)
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        v = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(v.min()), float(v.max())
    if np.array_equal(v, np.rint(v)):
        if lo >= -32768 and hi <= 32767:
            return v.astype(np.int16), 1.0, 0.0
        if lo >= 0 and hi <= 65535:
            return v.astype(np.uint16), 1.0, 0.0
    if hi == lo:
        return np.zeros(v.shape, np.int16), 1.0, lo
    # 6 significant digits survive the DS encoding: compute stored values from the *encoded* slope/intercept
    slope_f = float(ds_text((hi - lo) / 65000.0))
    inter_f = float(ds_text(lo + 32500.0 * slope_f))
    return to_stored(v, slope_f, inter_f, np.int16), slope_f, inter_f


def image_pixels(ds: Dataset, stored: np.ndarray, *, bits_stored: int | None = None,
                 pixel_range: bool = False) -> None:
    """Image Pixel module (C.7.6.3) and Pixel Data of monochrome ``stored`` integers: (rows, columns), or
    (frames, rows, columns) for a multi-frame image.

    The dtype gives Bits Allocated and Pixel Representation (int16: signed); ``bits_stored`` defaults to all bits.
    ``pixel_range`` adds Smallest/Largest Image Pixel Value (their VR follows the Pixel Representation).
    """
    ds.set_pixel_data(stored, "MONOCHROME2", bits_stored or stored.dtype.itemsize * 8, generate_instance_uid=False)
    if pixel_range:
        vr = "SS" if ds.PixelRepresentation else "US"
        ds.SmallestImagePixelValue = int(stored.min())
        ds.LargestImagePixelValue = int(stored.max())
        ds["SmallestImagePixelValue"].VR = vr
        ds["LargestImagePixelValue"].VR = vr


def pixel_module(ds: Dataset, rows: int, columns: int, dtype, *, bits_stored: int | None = None) -> None:
    """The Image Pixel module of an image without its Pixel Data (a header): as :func:`image_pixels` writes it."""
    image_pixels(ds, np.zeros((rows, columns), dtype=dtype), bits_stored=bits_stored)
    del ds.PixelData


def rescale(ds: Dataset, slope, intercept, rescale_type: str | None = None) -> None:
    """Modality LUT (C.11.1): real-world value = stored value * ``slope`` + ``intercept``, in ``rescale_type``
    units (``HU``, or ``US`` for unspecified)."""
    ds.RescaleIntercept = intercept
    ds.RescaleSlope = slope
    if rescale_type is not None:
        ds.RescaleType = rescale_type


def window(ds: Dataset, center, width, explanation=None) -> None:
    """VOI LUT (C.11.2): the window a viewer opens the image with; lists give several windows, the first the
    default."""
    ds.WindowCenter = center
    ds.WindowWidth = width
    if explanation is not None:
        ds.WindowCenterWidthExplanation = explanation


def pixel_padding(ds: Dataset, stored_value: int) -> None:
    """Pixel Padding Value (C.7.5.1.1.2): the stored value of pixels outside the object (no real-world value; a
    viewer shows them as background). Its VR follows the Pixel Representation, so call it after the pixels."""
    ds.PixelPaddingValue = int(stored_value)
    ds["PixelPaddingValue"].VR = "SS" if ds.get("PixelRepresentation", 0) else "US"


# --- acquisition ----------------------------------------------------------------------------------------------

def diffusion(ds: Dataset, b_value: float, *, directionality: str | None = None) -> None:
    """The diffusion weighting of a diffusion-weighted MR image (MR Diffusion Macro, PS3.3 C.8.13.5.9, whose
    attributes single-frame MR images carry too): ``b_value`` in s/mm2; ``directionality`` ISOTROPIC for a trace
    image, NONE for b = 0 (the default), DIRECTIONAL or BMATRIX."""
    ds.DiffusionBValue = float(b_value)
    ds.DiffusionDirectionality = directionality or ("ISOTROPIC" if b_value else "NONE")


# --- file ---------------------------------------------------------------------------------------------------------


def file_meta(ds: Dataset, implementation_version: str | None = None) -> None:
    """Attach the File Meta group (PS3.10 7.1) of an explicit VR little endian file of ``ds``.

    ``implementation_version`` (at most 16 characters) names the writer; without it pydicom writes its own.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    if implementation_version is not None:
        meta.ImplementationVersionName = implementation_version
    ds.file_meta = meta


def write_instance(ds: Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` as a DICOM Part 10 file at ``path`` (folders made as needed) and return the path.

    The file is replaced whole (:func:`meshdcm.atomic.replacing`): a reader sees the old file or the new one. A
    dataset whose file meta names no transfer syntax gets :func:`file_meta`'s; pydicom completes the group from
    the dataset (media storage UIDs, version).
    """
    path = Path(path)
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", ()):
        file_meta(ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path
