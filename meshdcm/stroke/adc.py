"""An ADC map (apparent diffusion coefficient, from the DWI of the same session) on the DSC grid, in x10^-6 mm^2/s.

The ADC series is read with :func:`meshdcm.imaging.load_series` (classic or enhanced multi-frame) and resampled
(trilinear) onto the DSC slices by the scanner coordinates of both: the two are acquired minutes apart in one
session, which products assume too; a different Frame of Reference is reported as a warning, since then the
patient coordinates of the two may not agree.  A DSC voxel whose interpolation touches an ADC voxel of 0 (the
masked background, or outside the series) gets no ADC: mixed with 0, tissue would pass for core along every
edge of the brain.  Units: vendors store ADC as x10^-6 mm^2/s (Siemens, GE, Philips
in most versions), some as x10^-3 mm^2/s or mm^2/s; the median of the positive values tells which (normal brain
is 700-900 x10^-6 mm^2/s, CSF 3000): below 0.01 mm^2/s, below 10 x10^-3 mm^2/s, from 100 up to 5000
x10^-6 mm^2/s; anything else is refused with the value found.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ADCError

log = logging.getLogger(__name__)

__all__ = ["ADC_FILTER", "ADCMap", "adc_units_factor", "load_adc"]

#: The meshdcm filter of an ADC series (the perfusion node remembers these per study).
ADC_FILTER = 'Modality == "MR" and (SeriesDescription ~ "(?i)adc|apparent diffusion" or ImageType ~ "(?i)adc")'


@dataclass
class ADCMap:
    values: np.ndarray  # (Z, Y, X) on the DSC grid, x10^-6 mm^2/s, 0 outside the ADC series' field of view
    series_uid: str
    factor: float  # stored real-world value x factor = x10^-6 mm^2/s
    warnings: list[str] = field(default_factory=list)


def adc_units_factor(values: np.ndarray, series_uid: str = "?") -> float:
    """The factor that brings ``values`` to x10^-6 mm^2/s (module docstring: how it is told)."""
    positive = np.asarray(values, dtype=np.float64)
    positive = positive[np.isfinite(positive) & (positive > 0)]
    if positive.size == 0:
        raise ADCError(f"ADC series {series_uid} has no positive value; is it an ADC map?")
    m = float(np.median(positive))
    if m < 0.01:
        return 1e6
    if m < 10:
        return 1e3
    if 100 <= m <= 5000:
        return 1.0
    raise ADCError(f"ADC series {series_uid}: median positive value {m:g} fits no known ADC unit (x10^-6 mm2/s "
                   "expected 100-5000); check that it is an ADC map, not a DWI or an exponential ADC")


def load_adc(adc_dir: str | Path, affine_lps: np.ndarray, shape: tuple[int, int, int],
             frame_of_reference_uid: str | None = None) -> ADCMap:
    """The ADC series in ``adc_dir`` resampled onto the (Z, Y, X) grid ``shape`` placed by ``affine_lps``
    ((column, row, slice) -> LPS mm)."""
    from ..imaging import ImagingError, load_series
    from ..imaging.register import resample_volume

    try:
        volumes = load_series(adc_dir)
    except ImagingError as exc:
        raise ADCError(f"the ADC series in {adc_dir} cannot be read: {exc}") from exc
    vol = volumes[0]
    real = vol.real()
    values = real[..., 0] if real.ndim == 4 else real  # (i, j, k)
    factor = adc_units_factor(values, vol.series_uid)
    nz, ny, nx = shape
    grid = ((nx, ny, nz), np.asarray(affine_lps))
    on_grid = resample_volume(values * np.float32(factor), vol.affine_lps, *grid, order=1)
    measured = resample_volume((values > 0).astype(np.float32), vol.affine_lps, *grid, order=1)
    # a DSC voxel whose interpolation reached a voxel without ADC (0: masked background, or outside the series)
    # would take a low "ADC" from it: a false core along every edge; such voxels have no ADC
    out = np.where(np.asarray(measured) >= 0.999, np.asarray(on_grid), 0.0).astype(np.float32).transpose(2, 1, 0)
    warnings = []
    their_for = str(vol.reference.get("FrameOfReferenceUID", "") or "")
    if frame_of_reference_uid and their_for and their_for != frame_of_reference_uid:
        warnings.append(f"the ADC series {vol.series_uid} has another Frame of Reference than the DSC series: "
                        "the two were placed by scanner coordinates; check their alignment")
    if not (out > 0).any():
        raise ADCError(f"the ADC series {vol.series_uid} does not overlap the DSC slices; is it of the same session?")
    log.info("ADC series %s on the DSC grid (x%g to 1e-6 mm2/s)", vol.series_uid, factor)
    return ADCMap(out, vol.series_uid, factor, warnings)
