"""The ADC map (apparent diffusion coefficient, from the DWI of the same session), in x10^-6 mm^2/s, on its own grid
and on the DSC grid.

The ischaemic core is measured on the ADC's own grid (``ADCMap.native``, its voxel volume ``ADCMap.voxel_ml``):
there its voxels are the DWI's, finer than the DSC's, and the 620 threshold sees each as acquired; resampled to the
coarser DSC grid first, a voxel at the edge of the core mixes core with normal tissue and passes only when most of it
is core (on the realistic stroke study that lost 2.6 ml of a 32 ml core).  The two grids are related by the scanner
coordinates of both series: they are acquired minutes apart in one session, which products assume too; a different
Frame of Reference is reported as a warning, since then the patient coordinates of the two may not agree.
:meth:`ADCMap.from_dsc` brings a DSC mask (the brain, Tmax > 6 s) onto the ADC grid, :meth:`ADCMap.to_dsc` the core
onto the DSC grid for the SEG and the overlays (a DSC voxel is core when at least half of it is).

``ADCMap.values``, the map resampled (trilinear) onto the DSC grid, serves the DSC-side rules (ADC > 2000: CSF).  A
DSC voxel whose interpolation touches an ADC voxel of 0 (the masked background, or outside the series) gets no ADC
there: mixed with 0, tissue would pass for core along every edge of the brain.

Units: vendors store ADC as x10^-6 mm^2/s (Siemens, GE, Philips in most versions), some as x10^-3 mm^2/s or
mm^2/s; the median of the positive values tells which (normal brain is 700-900 x10^-6 mm^2/s, CSF 3000): below
0.01 mm^2/s, below 10 x10^-3 mm^2/s, from 100 up to 5000 x10^-6 mm^2/s; anything else is refused with the value found.
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
    """An ADC series in x10^-6 mm^2/s: on its own grid (``native``, placed by ``affine_lps``) and resampled onto the
    DSC grid (``values``).  Arrays are (Z, Y, X) = (slice, row, column); 0 means no ADC (background, outside)."""

    values: np.ndarray  # (Z, Y, X) on the DSC grid, 0 outside the ADC series' field of view
    series_uid: str
    factor: float  # stored real-world value x factor = x10^-6 mm^2/s
    native: np.ndarray  # (Z, Y, X) on the ADC series' own grid
    affine_lps: np.ndarray  # the ADC grid's (column, row, slice) -> LPS mm
    warnings: list[str] = field(default_factory=list)

    @property
    def voxel_ml(self) -> float:
        """One ADC voxel in ml: pixel area x the distance between slice positions (a gap counts with its slice)."""
        return float(np.prod(np.linalg.norm(np.asarray(self.affine_lps, dtype=np.float64)[:3, :3], axis=0))) / 1000.0

    def from_dsc(self, mask: np.ndarray, dsc_affine_lps: np.ndarray) -> np.ndarray:
        """A (Z, Y, X) mask on the DSC grid on the ADC grid: each ADC voxel takes the DSC voxel its centre lies in
        (a DSC slice stands for its spacing, gap included, as in the volumes); False outside the DSC slab."""
        mask = np.asarray(mask, dtype=bool)
        points, _ = _points(self.native.shape, self.affine_lps, dsc_affine_lps)
        return _take(mask, points).reshape(self.native.shape)

    def to_dsc(self, mask: np.ndarray, dsc_affine_lps: np.ndarray, dsc_shape: tuple[int, int, int]) -> np.ndarray:
        """A (Z, Y, X) mask on the ADC grid on the DSC grid: a DSC voxel is in it when at least half of it is (27
        points spread over the voxel, each taking the ADC voxel it lies in)."""
        mask = np.asarray(mask, dtype=bool)
        centres, step = _points(dsc_shape, dsc_affine_lps, self.affine_lps)
        inside = np.zeros(centres.shape[1], dtype=np.int16)
        thirds = (-1 / 3, 0.0, 1 / 3)
        for offset in ((i, j, k) for i in thirds for j in thirds for k in thirds):
            inside += _take(mask, centres + step @ np.asarray(offset)[:, None])
        return (inside * 2 >= 27).reshape(dsc_shape)


def _points(shape, affine: np.ndarray, other_affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centres of the (Z, Y, X) grid ``shape`` placed by ``affine``, as (column, row, slice) voxel coordinates
    of the grid placed by ``other_affine`` (3, N); and the 3x3 matrix that takes a step in the first grid's voxels
    to one in the other's."""
    m = np.linalg.inv(np.asarray(other_affine, dtype=np.float64)) @ np.asarray(affine, dtype=np.float64)
    nz, ny, nx = shape
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    return m[:3, :3] @ np.stack([i.ravel(), j.ravel(), k.ravel()]) + m[:3, 3:], m[:3, :3]


def _take(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``mask`` (Z, Y, X) at the voxels holding ``points`` ((column, row, slice), 3 x N); False outside it."""
    q = np.rint(points).astype(np.int64)
    nz, ny, nx = mask.shape
    valid = (q[0] >= 0) & (q[0] < nx) & (q[1] >= 0) & (q[1] < ny) & (q[2] >= 0) & (q[2] < nz)
    return valid & mask.ravel()[np.where(valid, (q[2] * ny + q[1]) * nx + q[0], 0)]


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
    """The ADC series in ``adc_dir`` on its own grid, and resampled onto the (Z, Y, X) DSC grid ``shape`` placed by
    ``affine_lps`` ((column, row, slice) -> LPS mm)."""
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
    native = (values * np.float32(factor)).astype(np.float32).transpose(2, 1, 0)
    return ADCMap(out, vol.series_uid, factor, np.ascontiguousarray(native),
                  np.asarray(vol.affine_lps, dtype=np.float64), warnings)
