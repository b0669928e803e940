"""One RGB summary image of the stroke analysis, for viewers that show only images: a Secondary Capture (highdicom
``SCImage``; meshdcm.imagewriter writes monochrome images only) and the same picture as PNG.

Layout: a text panel (the volumes, the DEFUSE-3 statement, the core method, warnings, a colour legend) above a 3 x 2
montage of DSC slices: the six with the largest lesion (Tmax > 6 s or core), else six spread over the brain, in
slice order.  Background: the pre-bolus DSC signal in grey; overlays: Tmax > 6 s green, Tmax > 10 s yellow, core
red.  Slices are shown as stored (for axial DICOM: patient left on the image's right when the rows run to patient
left); orientation letters mark the image edges.  The text carries no patient identity (BurnedInAnnotation NO).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from ..atomic import replacing
from .codes import FINDINGS
from .errors import StrokeError
from .rules import ALGORITHM_NAME, ALGORITHM_VERSION
from .volumes import StrokeResult

__all__ = ["render_summary", "write_summary", "SERIES_NUMBER"]

SERIES_NUMBER = 9102
TILES = 6
COLUMNS = 3
TILE_PX = 192
_ALPHA = {"tmax6": 0.45, "tmax10": 0.5, "core": 0.65}
_COLOUR = {f.key: f.rgb for f in FINDINGS}


def _letters(direction) -> str:
    """The patient-orientation letter a direction cosine vector points to (its largest LPS component)."""
    d = np.asarray(direction, dtype=float)
    axis = int(np.argmax(np.abs(d)))
    return ("LR", "PA", "HF")[axis][0 if d[axis] > 0 else 1]


def _pick_slices(lesion: np.ndarray, brain: np.ndarray) -> list[int]:
    per_slice = lesion.reshape(lesion.shape[0], -1).sum(1)
    if per_slice.any():
        ranked = [int(z) for z in np.argsort(per_slice)[::-1] if per_slice[z] > 0][:TILES]
        return sorted(ranked)
    with_brain = np.flatnonzero(brain.reshape(brain.shape[0], -1).any(1))
    if with_brain.size == 0:
        with_brain = np.arange(brain.shape[0])
    return sorted({int(z) for z in np.linspace(with_brain[0], with_brain[-1], min(TILES, with_brain.size))})


def _text_lines(result: StrokeResult) -> list[str]:
    core = "ADC < 620" if result.core_method == "adc" else "rCBF < 30 %"
    ratio = f"{result.mismatch_ratio:.1f}" if result.mismatch_ratio is not None else "undefined (no core)"
    hir = f"{result.hir:.2f}" if result.hir is not None else "-"
    d3, rules = result.defuse3, result.rules

    def met(key):
        return "met" if d3[key] else "not met"

    lines = [f"Stroke perfusion (DSC) - {ALGORITHM_NAME} {ALGORITHM_VERSION} - automated result, to be reviewed",
             f"Core ({core}): {result.core_ml:.1f} ml    Tmax > 6 s: {result.tmax6_ml:.1f} ml    "
             f"Tmax > 10 s: {result.tmax10_ml:.1f} ml",
             f"Mismatch: {result.mismatch_ml:.1f} ml    ratio {ratio}    HIR {hir}"
             + (f"    side: {result.side}" if result.side else ""),
             f"DEFUSE-3 imaging criteria {'met' if d3['all_met'] else 'NOT met'}: core < {rules.defuse3_core_ml:g} ml "
             f"{met('core_lt_70ml')}, ratio >= {rules.defuse3_ratio:g} {met('mismatch_ratio_ge_1_8')}, "
             f"mismatch >= {rules.defuse3_mismatch_ml:g} ml {met('mismatch_ge_15ml')}"]
    for warning in result.warnings:
        lines += ["WARNING: " + part for part in textwrap.wrap(warning, 110)]
    return lines


def render_summary(background: np.ndarray, result: StrokeResult, orientation=None) -> np.ndarray:
    """The summary picture (rows, columns, 3) uint8 from ``background`` (Z, Y, X) and ``result.masks``."""
    from PIL import Image, ImageDraw, ImageFont

    masks = result.masks
    if masks is None:
        raise StrokeError("the stroke result carries no masks to draw")
    bg = np.asarray(background, dtype=np.float32)
    inside = bg[masks.csf | masks.normal | masks.tmax6] if (masks.normal.any()) else bg[bg > 0]
    top = float(np.percentile(inside, 99)) if inside.size else float(bg.max() or 1.0)
    grey = np.clip(bg / (top or 1.0), 0, 1) * 255.0
    slices = _pick_slices(masks.tmax6 | masks.core, masks.normal | masks.tmax6 | masks.csf)
    ny, nx = bg.shape[1:]
    scale = max(1, int(round(TILE_PX / max(ny, nx))))
    th, tw = ny * scale, nx * scale
    rows = (len(slices) + COLUMNS - 1) // COLUMNS
    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=11)
    lines = _text_lines(result)
    width = max(COLUMNS * tw, 760)
    panel = 12 + 18 * len(lines) + 26
    canvas = Image.new("RGB", (width, panel + rows * th), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    y = 8
    for i, line in enumerate(lines):
        draw.text((8, y), line[:120], fill=(255, 120, 120) if line.startswith("WARNING") else (255, 255, 255),
                  font=font if i < 4 else small)
        y += 18
    x = 8
    for key, label in (("tmax6", "Tmax > 6 s"), ("tmax10", "Tmax > 10 s"), ("core", "core")):
        draw.rectangle((x, y + 3, x + 12, y + 15), fill=_COLOUR[key])
        draw.text((x + 18, y + 1), label, fill=(255, 255, 255), font=small)
        x += 110
    for n, z in enumerate(slices):
        rgb = np.repeat(grey[z][..., None], 3, axis=2)
        for key in ("tmax6", "tmax10", "core"):
            m = getattr(masks, key)[z]
            rgb[m] = (1 - _ALPHA[key]) * rgb[m] + _ALPHA[key] * np.array(_COLOUR[key], np.float32)
        tile = np.kron(np.clip(rgb, 0, 255).astype(np.uint8), np.ones((scale, scale, 1), np.uint8))
        ox, oy = (n % COLUMNS) * tw, panel + (n // COLUMNS) * th
        canvas.paste(Image.fromarray(tile, "RGB"), (ox, oy))
        draw.text((ox + 4, oy + 2), f"slice {z + 1}", fill=(255, 255, 0), font=small)
        if orientation is not None:
            row_dir, col_dir = orientation
            left, right = _letters(-np.asarray(row_dir)), _letters(row_dir)
            draw.text((ox + 3, oy + th // 2), left, fill=(200, 200, 255), font=small)
            draw.text((ox + tw - 12, oy + th // 2), right, fill=(200, 200, 255), font=small)
            draw.text((ox + tw // 2, oy + 2), _letters(-np.asarray(col_dir)), fill=(200, 200, 255), font=small)
    return np.asarray(canvas, dtype=np.uint8)


def write_summary(picture: np.ndarray, source: Dataset, path: str | Path, *, series_uid: str, sop_instance_uid: str,
                  png_path: str | Path | None = None) -> Dataset:
    """Write ``picture`` as an RGB Secondary Capture of the source's study (and as PNG when ``png_path``)."""
    iop = [float(v) for v in source.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0])]
    try:
        sc = hd.sc.SCImage(
            pixel_array=picture, photometric_interpretation="RGB", bits_allocated=8, coordinate_system="PATIENT",
            study_instance_uid=source.StudyInstanceUID, series_instance_uid=series_uid, series_number=SERIES_NUMBER,
            sop_instance_uid=sop_instance_uid, instance_number=1, manufacturer="meshdcm",
            patient_id=source.get("PatientID"), patient_name=source.get("PatientName"),
            patient_birth_date=source.get("PatientBirthDate"), patient_sex=source.get("PatientSex") or None,
            accession_number=source.get("AccessionNumber"), study_id=source.get("StudyID"),
            study_date=source.get("StudyDate"), study_time=source.get("StudyTime"),
            referring_physician_name=source.get("ReferringPhysicianName"),
            patient_orientation=(_letters(iop[:3]), _letters(iop[3:])))
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise StrokeError(f"the stroke summary image of series {source.get('SeriesInstanceUID', '?')} could not be "
                          f"built: {exc}") from exc
    sc.SeriesDescription = "Stroke perfusion summary (meshdcm)"
    sc.ImageType = ["DERIVED", "SECONDARY", "STROKE SUMMARY"]
    sc.BurnedInAnnotation = "NO"
    sc.DerivationDescription = (f"{ALGORITHM_NAME} {ALGORITHM_VERSION}: core, Tmax > 6 s and Tmax > 10 s over the "
                                "pre-bolus DSC signal")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        sc.save_as(tmp)
    if png_path is not None:
        from PIL import Image

        with replacing(png_path) as tmp:
            Image.fromarray(picture, "RGB").save(tmp, format="PNG")
    return sc
