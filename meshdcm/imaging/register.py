"""Rigid / affine registration of DICOM series by mutual information, and resampling onto the reference grid.

Two backends behind one API (:func:`register_volumes`):

* ``"simpleitk"`` (CPU, default): ITK's Mattes mutual information (Mattes et al., IEEE TMI 2003) with random
  sampling, a regular-step gradient descent, physical-shift parameter scaling and a three-level pyramid
  (shrink 4-2-1, smoothing 2-1-0 voxels), initialised by aligning the centres of mass of the
  background-subtracted images (robust to shifts of tens of mm).  For large volumes the finest level stops at
  half resolution so that a 256x256x176 MR registers in a few seconds; sub-voxel accuracy is kept because the
  metric is evaluated with linear interpolation at continuous positions.
* ``"cupy"`` / ``"numpy"``: the same method written against an array module ``xp`` (mutual information from a
  joint histogram built with ``bincount``, trilinear sampling with ``ndimage.map_coordinates``, Powell search
  over the 6 rigid parameters on a pyramid).  ``"auto"`` picks CuPy when a GPU is present; the tests run this
  code on NumPy.

Transforms follow ITK's convention: the 4x4 matrix maps *fixed* LPS points to *moving* LPS points, so the
registered image is ``moving(T(p))`` on the fixed grid.  Registered series are written as derived series of the
moving series, on the fixed series' grid and Frame of Reference, with SeriesDescription suffix ``" [reg]"``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from .._version import __version__
from ._xp import get_xp, ndimage, to_numpy
from .derived import write_derived_series
from .errors import RegistrationError
from .geometry import rigid_matrix
from .series import SeriesVolume, load_series

__all__ = [
    "RegisteredSeries",
    "RegistrationResult",
    "choose_reference",
    "register_arrays",
    "register_series",
    "register_study",
    "register_volumes",
    "resample_volume",
]

log = logging.getLogger(__name__)

REG_SUFFIX = " [reg]"


@dataclass
class RegistrationResult:
    """Outcome of one registration: the fixed->moving LPS transform, its metric and the series written."""

    matrix: np.ndarray
    metric: float
    backend: str
    seconds: float
    fixed_series_uid: str
    moving_series_uid: str
    paths: list[Path] = field(default_factory=list)
    series_uid: str | None = None
    #: every series written: one per b-value of a diffusion series, else one (then ``paths``/``series_uid``)
    outputs: list[RegisteredSeries] = field(default_factory=list)


@dataclass
class RegisteredSeries:
    """One series written by a registration: which volume of the moving series (``label``: "" for a 3D series,
    "b1000" for a b-value, "frame 1 of 60" for the first time point of a dynamic series), its folder and files."""

    label: str
    folder: Path
    paths: list[Path]
    series_uid: str | None


def _direction(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return affine[:3, :3] / spacing, spacing


def resample_volume(values, src_affine: np.ndarray, out_shape, out_affine: np.ndarray, *,
                    matrix: np.ndarray | None = None, cval: float = 0.0, order: int = 1, xp=np):
    """Sample ``values`` (placed by ``src_affine``) on the grid ``out_shape``/``out_affine``.

    ``matrix`` (4x4, LPS) maps output points to source points (identity by default).  xp-generic.
    """
    m = np.linalg.inv(src_affine) @ (np.eye(4) if matrix is None else matrix) @ out_affine
    nd = ndimage(xp)
    return nd.affine_transform(xp.asarray(values, dtype=xp.float32), xp.asarray(m[:3, :3]), offset=xp.asarray(m[:3, 3]),
                               output_shape=tuple(out_shape), order=order, mode="constant", cval=float(cval))


# ----------------------------------------------------------------------------------------------- SimpleITK


def _sitk_image(values: np.ndarray, affine: np.ndarray):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(values, dtype=np.float32).transpose(2, 1, 0)))
    direction, spacing = _direction(affine)
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(v) for v in affine[:3, 3]])
    img.SetDirection([float(v) for v in direction.ravel()])
    return img


def _sitk_matrix(tx) -> np.ndarray:
    m = np.eye(4)
    a = np.array(tx.GetMatrix()).reshape(3, 3)
    c = np.array(tx.GetCenter())
    t = np.array(tx.GetTranslation())
    m[:3, :3] = a
    m[:3, 3] = -a @ c + c + t
    return m


def _centre_of_mass(values: np.ndarray, affine: np.ndarray) -> np.ndarray:
    w = values.astype(np.float64) - float(values.min())
    w = w[::2, ::2, ::2]
    idx = np.indices(w.shape).reshape(3, -1).T * 2.0
    total = w.sum()
    if total <= 0:
        return (affine @ np.r_[(np.array(values.shape) - 1) / 2.0, 1.0])[:3]
    c = (idx * w.reshape(-1, 1)).sum(0) / total
    return (affine @ np.r_[c, 1.0])[:3]


def _factor(shape, max_voxels: float, spacing=None) -> tuple[int, int, int]:
    """Block sizes per axis that bring ``shape`` to at most ``max_voxels``, as near cubic in millimetres as they
    can be: an axis whose voxels are already coarse (the 6 mm slice step of a 2D series) is averaged least or not
    at all, so thick-slice series keep what through-plane detail they have (averaging their slices in pairs made
    12 mm blocks and cost a 2D T2 about 1 mm of accuracy against a 1 mm 3D T1)."""
    spacing = np.ones(3) if spacing is None else np.asarray(spacing, dtype=float)
    shape = np.asarray(shape[:3], dtype=float)
    block = float(spacing.min())
    while True:
        f = np.maximum(1, np.rint(block / spacing)).astype(int)
        if np.prod(shape // f) <= max_voxels or np.all(f >= shape):
            return tuple(int(v) for v in f)
        block *= 1.25


def block_mean(values, affine: np.ndarray, factor, xp=np):
    """Average blocks of ``factor`` voxels (one int for cubes, or one per axis): a cheap, alias-free pyramid level,
    and the matching affine.  xp-generic."""
    f = (factor,) * 3 if np.isscalar(factor) else tuple(int(v) for v in factor)
    if f == (1, 1, 1):
        return values, affine
    n = [s // b for s, b in zip(values.shape[:3], f, strict=True)]
    v = values[: n[0] * f[0], : n[1] * f[1], : n[2] * f[2]]
    v = v.reshape(n[0], f[0], n[1], f[1], n[2], f[2]).mean(axis=(1, 3, 5))
    scale = np.diag([*map(float, f), 1.0])
    scale[:3, 3] = (np.asarray(f) - 1) / 2.0
    return v, affine @ scale


def _voxel_ml(affine: np.ndarray) -> float:
    return abs(float(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0


# a moving image with voxels this many times larger than the fixed one's is registered the other way round
COARSER = 1.5
# coarse search (ITK) on at most this many voxels, Powell refinement on at most REFINE_VOXELS
COARSE_VOXELS = 3.0e5
REFINE_VOXELS = 2.0e6


def _register_sitk(fixed: np.ndarray, fixed_affine: np.ndarray, moving: np.ndarray, moving_affine: np.ndarray, *,
                   transform: str, seed: int, samples: int) -> tuple[np.ndarray, float]:
    import SimpleITK as sitk

    # ITK's own pyramid smooths the full-resolution images at every level, which dominates the run time on a
    # 256x256x176 volume; block means computed once are as good for the coarse search and far cheaper.
    fb = _factor(fixed.shape, COARSE_VOXELS, _direction(fixed_affine)[1])
    mb = _factor(moving.shape, COARSE_VOXELS, _direction(moving_affine)[1])
    f_small, f_aff = block_mean(np.asarray(fixed, np.float32), fixed_affine, fb)
    m_small, m_aff = block_mean(np.asarray(moving, np.float32), moving_affine, mb)
    f_img, m_img = _sitk_image(f_small, f_aff), _sitk_image(m_small, m_aff)
    centre = _centre_of_mass(fixed, fixed_affine)
    shift = _centre_of_mass(moving, moving_affine) - centre
    rigid = sitk.Euler3DTransform()
    rigid.SetCenter([float(v) for v in centre])
    rigid.SetTranslation([float(v) for v in shift])
    levels = [4, 2, 1]

    def run(initial, kind: str):
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        pct = [min(1.0, samples / (float(f_small.size) / f**3)) for f in levels]
        reg.SetMetricSamplingPercentagePerLevel(pct, seed + 1)  # seed 0 is sitkWallClock: random on every run
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-3, numberOfIterations=300,
                                                     relaxationFactor=0.85, gradientMagnitudeTolerance=1e-8)
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetShrinkFactorsPerLevel(levels)
        reg.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
        reg.SetInitialTransform(initial, inPlace=True)
        try:
            reg.Execute(f_img, m_img)
        except RuntimeError as exc:
            raise RegistrationError(f"{kind} registration failed ({exc}); the images may not overlap: check both "
                                    "series are of the same patient and cover the same anatomy") from exc
        return float(reg.GetMetricValue())

    metric = run(rigid, "rigid")
    if transform == "affine":
        aff = sitk.AffineTransform(3)
        aff.SetCenter(rigid.GetCenter())
        aff.SetMatrix(rigid.GetMatrix())
        aff.SetTranslation(rigid.GetTranslation())
        metric = run(aff, "affine")
        return _sitk_matrix(aff), metric
    return _sitk_matrix(rigid), metric


# ------------------------------------------------------------------------------------------ xp (CuPy/NumPy)


def _euler(params: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """6 parameters (3 rotations as arc length in mm at ``radius``, 3 translations in mm) -> 4x4 matrix."""
    m = rigid_matrix(np.rad2deg(params[:3] / radius), (0.0, 0.0, 0.0))
    out = np.eye(4)
    out[:3, :3] = m[:3, :3]
    out[:3, 3] = centre - m[:3, :3] @ centre + params[3:]
    return out


def mutual_information(a, b, bins: int = 32, xp=np) -> float:
    """Mutual information of two equally long sample vectors (joint histogram via ``bincount``)."""
    def quantise(v):
        lo, hi = v.min(), v.max()
        q = ((v - lo) / xp.maximum(hi - lo, 1e-12) * (bins - 1e-3)).astype(xp.int64)
        return xp.clip(q, 0, bins - 1)

    joint = xp.bincount(quantise(a) * bins + quantise(b), minlength=bins * bins).reshape(bins, bins)
    p = joint / joint.sum()
    pa, pb = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float(to_numpy((p[nz] * xp.log(p[nz] / (pa @ pb)[nz])).sum()))


def _register_xp(fixed: np.ndarray, fixed_affine: np.ndarray, moving: np.ndarray, moving_affine: np.ndarray, *,
                 xp, seed: int, samples: int, init: np.ndarray | None = None,
                 levels=((4, 2.0), (2, 1.0), (1, 0.0))) -> tuple[np.ndarray, float]:
    """Powell search of the rigid parameters maximising mutual information, level by level.

    The transform is ``init @ E(params)`` with ``E`` a rigid motion about the fixed centre of mass; without
    ``init`` the centres of mass are aligned first.
    """
    from scipy.optimize import minimize

    nd = ndimage(xp)
    rng = np.random.default_rng(seed)
    centre = _centre_of_mass(fixed, fixed_affine)
    if init is None:
        init = np.eye(4)
        init[:3, 3] = _centre_of_mass(moving, moving_affine) - centre
    radius = 50.0
    params = np.zeros(6)
    best = 0.0
    inv_m = np.linalg.inv(moving_affine)
    f_full = xp.asarray(fixed, dtype=xp.float32)
    m_full = xp.asarray(moving, dtype=xp.float32)
    for factor, sigma in levels:
        f, m = (nd.gaussian_filter(f_full, sigma), nd.gaussian_filter(m_full, sigma)) if sigma else (f_full, m_full)
        pts = rng.integers(0, np.array(fixed.shape[:3]), size=(samples, 3)).astype(float)  # fixed voxel centres
        fvals = nd.map_coordinates(f, xp.asarray(pts.T), order=1)
        world = np.c_[pts, np.ones(len(pts))] @ fixed_affine.T

        def cost(p, world=world, m=m, fvals=fvals):
            idx = (world @ (inv_m @ init @ _euler(p, centre, radius)).T)[:, :3]
            mvals = nd.map_coordinates(m, xp.asarray(idx.T), order=1, mode="constant", cval=float(moving.min()))
            return -mutual_information(fvals, mvals, xp=xp)

        res = minimize(cost, params, method="Powell", options={"xtol": 0.01 * factor, "ftol": 1e-6, "maxfev": 800})
        params, best = res.x, -float(res.fun)
    return init @ _euler(params, centre, radius), best


# ------------------------------------------------------------------------------------------------ public API


CT_WINDOW = (-150.0, 250.0)


def _prepare(vol: SeriesVolume) -> np.ndarray:
    """Intensities the metric sees: CT is clipped to a brain-and-edges window (-150..250 HU) so that soft tissue
    is not squeezed into one histogram bin by air (-1000) and bone (+1500)."""
    values = vol.real()[..., 0]
    if str(vol.reference.get("Modality", "")) == "CT":
        values = np.clip(values, *CT_WINDOW)
    return values


def register_volumes(fixed: SeriesVolume, moving: SeriesVolume, *, transform: str = "rigid", backend: str = "auto",
                     seed: int = 0, samples: int = 30000, refine: bool = True) -> tuple[np.ndarray, float, str]:
    """Register ``moving`` onto ``fixed`` (first time point of each); returns (matrix, metric, backend used).

    ``backend``: ``"auto"`` (CuPy if a GPU is present, else SimpleITK), ``"simpleitk"``, ``"cupy"``, ``"numpy"``.
    The xp backends are rigid only.
    """
    if fixed.sheared or moving.sheared:
        raise RegistrationError(f"series {(fixed if fixed.sheared else moving).series_uid} is gantry-tilted; "
                                "correct the tilt first (meshdcm.imaging.nifti.correct_tilt)")
    return register_arrays(_prepare(fixed), fixed.affine_lps, _prepare(moving), moving.affine_lps,
                           transform=transform, backend=backend, seed=seed, samples=samples, refine=refine)


def register_arrays(fixed: np.ndarray, fixed_affine: np.ndarray, moving: np.ndarray, moving_affine: np.ndarray, *,
                    transform: str = "rigid", backend: str = "auto", seed: int = 0, samples: int = 30000,
                    refine: bool = True) -> tuple[np.ndarray, float, str]:
    """:func:`register_volumes` on plain arrays (i, j, k) with their voxel->LPS affines."""
    if transform not in ("rigid", "affine"):
        raise RegistrationError(f"unknown transform {transform!r}; use 'rigid' or 'affine'")
    if _voxel_ml(moving_affine) > COARSER * _voxel_ml(fixed_affine):
        # The metric samples the fixed image at its voxel centres and interpolates the moving one. With a 2D
        # series (6 mm slice step) moving onto a 1 mm 3D T1 that interpolates across the slice gaps, where the
        # image holds nothing; registering the fine image onto the coarse one and inverting samples the coarse
        # image only where it was measured (on the realistic stroke MR: max brain displacement 0.1-0.4 mm
        # instead of 0.6-2.3 mm).
        inverse, metric, used = register_arrays(moving, moving_affine, fixed, fixed_affine, transform=transform,
                                                backend=backend, seed=seed, samples=samples, refine=refine)
        return np.linalg.inv(inverse), metric, used
    f, m = fixed, moving
    if backend == "auto":
        xp = get_xp("auto")
        backend = "cupy" if xp is not np else "simpleitk"
    if backend == "simpleitk":
        mat, metric = _register_sitk(f, fixed_affine, m, moving_affine, transform=transform, seed=seed,
                                     samples=samples)
        if transform == "rigid" and refine:
            # ITK's gradient descent stalls ~0.5-1 mm from the optimum on edge-dominated (CT) images because the
            # sampled MI gradient is noisy there; a Powell search on the value (not the gradient) finishes it.
            fr = _factor(fixed.shape, REFINE_VOXELS, _direction(fixed_affine)[1])
            mr = _factor(moving.shape, REFINE_VOXELS, _direction(moving_affine)[1])
            f_ref, fa_ref = block_mean(np.asarray(f, np.float32), fixed_affine, fr)
            m_ref, ma_ref = block_mean(np.asarray(m, np.float32), moving_affine, mr)
            mat, metric = _register_xp(f_ref, fa_ref, m_ref, ma_ref, xp=np, seed=seed,
                                       samples=min(samples, 20000), init=mat, levels=((1, 0.0),))
    elif backend in ("cupy", "numpy"):
        if transform != "rigid":
            raise RegistrationError(f"the {backend} backend is rigid only; use backend='simpleitk' for affine")
        mat, metric = _register_xp(f, fixed_affine, m, moving_affine, xp=get_xp(backend), seed=seed,
                                   samples=min(samples, 20000))
    else:
        raise RegistrationError(f"unknown backend {backend!r}; use 'auto', 'simpleitk', 'cupy' or 'numpy'")
    return mat, metric, backend


def register_series(fixed_dir: str | Path, moving_dir: str | Path, out_dir: str | Path, *, transform: str = "rigid",
                    backend: str = "auto", node_name: str = "register", node_version: str = __version__,
                    suffix: str = REG_SUFFIX) -> RegistrationResult:
    """Register the series in ``moving_dir`` onto the one in ``fixed_dir``; write it resampled to ``out_dir``."""
    fixed = load_series(fixed_dir)[0]
    moving_volumes = load_series(moving_dir)
    return _register_loaded(fixed, moving_volumes, out_dir, transform=transform, backend=backend,
                            node_name=node_name, node_version=node_version, suffix=suffix)


def _register_loaded(fixed: SeriesVolume, moving_volumes: list[SeriesVolume], out_dir, *, transform, backend,
                     node_name, node_version, suffix) -> RegistrationResult:
    from .nifti import correct_tilt

    fixed, moving = correct_tilt(fixed), correct_tilt(moving_volumes[0])  # no-ops unless gantry-tilted
    start = time.perf_counter()
    matrix, metric, used = register_volumes(fixed, moving, transform=transform, backend=backend)
    seconds = time.perf_counter() - start
    log.info("registered series %s onto %s (%s, %s) in %.1f s", moving.series_uid, fixed.series_uid, transform, used,
             seconds)
    real = moving.real()
    air = float(real.min())
    desc = str(moving.reference.get("SeriesDescription", ""))
    entropy = [fixed.series_uid, transform, np.array2string(np.round(matrix, 4))]
    outputs = []
    volumes = output_volumes(moving)
    for t, label in volumes:
        values = to_numpy(resample_volume(real[..., t], moving.affine_lps, fixed.stored.shape[:3],
                                          fixed.affine_lps, matrix=matrix, cval=air))
        if np.issubdtype(moving.stored.dtype, np.integer) and moving.slope == 1.0:
            values = np.rint(values)
        folder = Path(out_dir) / label.replace(" ", "-") if len(volumes) > 1 else Path(out_dir)
        paths = write_derived_series(values, fixed.affine_lps, _volume_of(moving, t), folder,
                                     series_description=(" ".join(p for p in (desc, label) if p) + suffix).strip(),
                                     node_name=node_name, node_version=node_version,
                                     derivation=f"{transform} registration onto series {fixed.series_uid}",
                                     entropy=entropy + ([label] if label else []), geometry_reference=fixed)
        uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID) if paths else None
        outputs.append(RegisteredSeries(label, folder, paths, uid))
    first = outputs[0]
    return RegistrationResult(matrix, metric, used, seconds, fixed.series_uid, moving.series_uid, first.paths,
                              first.series_uid, outputs)


#: a series with more volumes than this that are not b-values is dynamic (DSC, fMRI): only its first is written
MAX_VOLUMES = 8


def output_volumes(vol: SeriesVolume) -> list[tuple[int, str]]:
    """The volumes of ``vol`` a registration writes, each as (index, label).

    A 3D series: itself (label ""). A diffusion series (volumes of different ``DiffusionBValue``): every b-value,
    each its own series ("b0", "b1000"), since the b1000 is what shows the stroke. A dynamic series (DSC): only its
    first time point, before the bolus ("frame 1 of 60"); the same transform would hold for the others, but 60
    volumes on a 1 mm grid are 2.7 GB and the perfusion maps are computed on the series' own grid anyway.
    The registration itself always uses the first volume (the b0: the most signal; the DSC baseline)."""
    nz, nt = vol.stored.shape[2], vol.stored.shape[3]
    if nt == 1:
        return [(0, "")]
    b = [vol.frames[t * nz].dataset.get("DiffusionBValue") for t in range(nt)]
    if all(v is not None for v in b) and len({float(v) for v in b}) == nt and nt <= MAX_VOLUMES:
        return [(t, f"b{float(v):g}") for t, v in enumerate(b)]
    return [(0, f"frame 1 of {nt}")]


def _volume_of(vol: SeriesVolume, t: int) -> SeriesVolume:
    """Volume ``t`` of a 4D series, as a 3D one (its own frames: the derived series references those)."""
    if vol.stored.shape[3] == 1:
        return vol
    nz = vol.stored.shape[2]
    return SeriesVolume(vol.stored[..., t:t + 1], vol.slope, vol.intercept, vol.affine_lps,
                        vol.frames[t * nz:(t + 1) * nz], echo_number=vol.echo_number, echo_time=vol.echo_time,
                        tilt_deg=vol.tilt_deg)


def choose_reference(volumes: list[SeriesVolume]) -> int:
    """Index of the reference series of a study: a 3D MR T1 if any (smallest voxel), else the thinnest CT,
    else the series with the smallest voxel volume."""
    def voxel(v: SeriesVolume) -> float:
        return float(np.prod(v.spacing))

    def is_3d_t1(v: SeriesVolume) -> bool:
        ds = v.reference
        text = f"{ds.get('SeriesDescription', '')} {ds.get('ProtocolName', '')}".upper()
        return ds.get("Modality") == "MR" and str(ds.get("MRAcquisitionType", "")) == "3D" and (
            "T1" in text or "MPRAGE" in text or "BRAVO" in text or "TFE" in text)

    t1 = [i for i, v in enumerate(volumes) if is_3d_t1(v)]
    if t1:
        return min(t1, key=lambda i: voxel(volumes[i]))
    ct = [i for i, v in enumerate(volumes) if v.reference.get("Modality") == "CT"]
    if ct:
        return min(ct, key=lambda i: volumes[i].spacing[2])
    return min(range(len(volumes)), key=lambda i: voxel(volumes[i]))


def register_study(series_dirs: list[str | Path], out_dir: str | Path, *, reference: int | None = None,
                   transform: str = "rigid", backend: str = "auto", node_name: str = "register",
                   node_version: str = __version__) -> list[RegistrationResult]:
    """Register every series of a study onto a reference series (``choose_reference`` unless given).

    Each registered series goes to ``out_dir/<moving SeriesInstanceUID>/``.
    """
    loaded = [load_series(d) for d in series_dirs]
    firsts = [v[0] for v in loaded]
    ref = choose_reference(firsts) if reference is None else reference
    results = []
    for i, vols in enumerate(loaded):
        if i == ref:
            continue
        results.append(_register_loaded(firsts[ref], vols, Path(out_dir) / firsts[i].series_uid,
                                        transform=transform, backend=backend, node_name=node_name,
                                        node_version=node_version, suffix=REG_SUFFIX))
    return results
