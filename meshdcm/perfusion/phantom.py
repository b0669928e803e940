"""Digital DSC-MRI phantoms with known CBF, CBV, MTT and bolus delay (after Wu et al. 2003, MRM 50:164,
and Kudo et al. 2013, Radiology 267:201), written as a DICOM DSC series usable end to end.

Model.  AIF: gamma variate ``C_a(t) = A (t - t0)^alpha exp(-(t - t0)/beta)``, alpha = 3, beta = 1.5 s,
t0 = 10 s (Wu 2003); no recirculation.  Tissue: exponential residue ``R(t) = exp(-t/MTT)`` and
``C_t(t) = (rho/kH) CBF (C_a(. - delay) (*) R)(t)`` computed on a 0.05 s grid and sampled every TR.
Signal: ``S = S0 exp(-TE C)`` plus complex Gaussian noise of sigma = S0/SNR, magnitude taken (Rician).
``A`` is set so that grey matter (CBV 4 ml/100 g, MTT 4 s) loses ``gm_peak_drop`` (40 %) of its signal at
the peak, as in Wu 2003.  Arterial and venous voxels are partial-volume voxels (blood fraction
``artery_fraction``, ``vein_fraction``) so that their signal does not vanish in the noise; an automatic
AIF from them is therefore ``artery_fraction`` times the true AIF, which scales absolute CBF/CBV by
1/``artery_fraction`` (the usual partial-volume problem; relative maps and correlations are unaffected).
Veins carry the AIF delayed by 5 s and dispersed (exponential kernel, 3 s): high area, late arrival.
Every slice of a time point is acquired at the same instant (no slice-timing offsets).

Layout.  Tissue regions are square blocks (``block`` voxels a side) in a tissue area; each block has one
(CBV, MTT, delay) combination, cycled over blocks and slices.  Combinations: CBV 1-5 ml/100 g x
MTT 2-12 s with CBF = 60 CBV/MTT in 10-70 ml/100 g/min, times delays 0, 1, 2, 3 s.  A two-voxel column
left of the tissue holds arteries (a few voxels per slice), one right of it veins; the rest is air.
This block layout is for correlations and delay (in)sensitivity; its veins are partial-volume voxels too,
so it cannot check absolute values.

Brain layout (:func:`make_brain_phantom`, :class:`BrainPhantomSpec`), for absolute values and tissue
classes: per slice an ellipse with a cortical grey-matter ribbon, two deep grey nuclei, white matter and two
CSF ventricles (no contrast, 1.4 x S0); GM CBF 60 ml/100 g/min / CBV 4.5 ml/100 g (MTT 4.5 s), WM 25 / 2.0
(MTT 4.8 s); a region of the patient's left hemisphere (+x in LPS: the image's right-hand columns),
grey and white, whose bolus arrives ``lesion_delay`` (8 s) late; AIF voxels (two 2 x 2 clusters per slice,
right MCA and ACA positions) holding ``artery_fraction`` (0.4) of the arterial curve plus the rest GM
tissue; and a 3 x 2 sinus at the posterior midline wholly of venous blood: the arterial curve delayed
(5 s) and dispersed by a unit-area exponential (3 s), so its area equals the true AIF's.  Its residue has
gamma-distributed transit times (:func:`gamma_residue`, shape 3; 1 = exponential; ``"box"``: plug flow,
:func:`tissue_residue`): truncated SVD rounds
off the corner of an exponential residue at t = 0 and underestimates CBF by a quarter at MTT 4.5 s even
without noise, which is a property of the deconvolution, not what this layout is for.  TR 1.5 s, bolus at
18 s (12 baseline frames), GM peak signal drop 12 % at SNR 200 — the tissue contrast-to-noise of the block
layout — so that a voxel of venous blood stays above the noise floor at its peak (S/S0 ~ 0.1); at a 40 %
drop it would fall to e^-10 S0 and no magnitude VOF could be measured.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.uid import MRImageStorage

from ..imagewriter import image_instance, image_pixels, image_plane, series_header, write_instance
from ._uid import stable_uid
from .constants import KH, RHO

logger = logging.getLogger(__name__)

__all__ = ["PhantomSpec", "BrainPhantomSpec", "Phantom", "make_phantom", "make_brain_phantom", "write_phantom_dicom",
           "phantom_combinations", "gamma_residue", "tissue_residue"]

CBV_VALUES = (1.0, 2.0, 3.0, 4.0, 5.0)
MTT_VALUES = (2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0)
DELAY_VALUES = (0.0, 1.0, 2.0, 3.0)


def phantom_combinations(cbv_values=CBV_VALUES, mtt_values=MTT_VALUES, delays=DELAY_VALUES,
                         cbf_range=(10.0, 70.0)) -> list[tuple[float, float, float, float]]:
    """``(cbf, cbv, mtt, delay)`` tuples with CBF = 60 CBV / MTT inside ``cbf_range``."""
    combos = []
    for delay in delays:
        for cbv in cbv_values:
            for mtt in mtt_values:
                cbf = 60.0 * cbv / mtt
                if cbf_range[0] - 1e-9 <= cbf <= cbf_range[1] + 1e-9:
                    combos.append((cbf, cbv, mtt, delay))
    return combos


@dataclass
class PhantomSpec:
    """Parameters of the phantom; the defaults make a small, fast test series."""

    shape: tuple[int, int, int] = (4, 48, 56)  # (slices, rows, columns)
    n_time: int = 60
    tr: float = 1.0  # s
    te: float = 0.030  # s
    snr: float = 50.0  # baseline S0 / noise sigma
    s0: float = 1000.0
    block: int = 8
    seed: int = 0
    t0: float = 10.0
    alpha: float = 3.0
    beta: float = 1.5
    gm_peak_drop: float = 0.40
    artery_fraction: float = 0.25
    vein_fraction: float = 0.35
    combinations: list = field(default_factory=phantom_combinations)
    pixel_spacing: tuple[float, float] = (1.8, 1.8)  # (row, column) mm
    slice_thickness: float = 5.0
    field_strength: float = 3.0


@dataclass
class Phantom:
    """Signal (T, Z, Y, X) float32 plus the truth; truth maps are NaN outside tissue."""

    spec: PhantomSpec
    signal: np.ndarray
    times: np.ndarray
    aif: np.ndarray  # true arterial concentration (dR2*, 1/s) at the sample times
    cbf: np.ndarray
    cbv: np.ndarray
    mtt: np.ndarray
    delay: np.ndarray
    region: np.ndarray  # index into spec.combinations, -1 outside tissue
    tissue: np.ndarray
    artery: np.ndarray
    vein: np.ndarray
    labels: dict = field(default_factory=dict)  # brain layout: name -> (Z, Y, X) mask ("GM", "WM", "delayed", ...)


def gamma_variate(t, t0, alpha, beta):
    """The unscaled gamma-variate bolus ``(t - t0)^alpha exp(-(t - t0)/beta)`` (0 before ``t0``)."""
    x = np.clip(t - t0, 0, None)
    return x**alpha * np.exp(-x / beta)


def rician_signal(s0: np.ndarray, conc: np.ndarray, te: float, sigma: float, rng) -> np.ndarray:
    """``|S0 exp(-TE C) + complex Gaussian noise|`` as float32 (T, Z, Y, X)."""
    s_clean = s0 * np.exp(-te * conc)
    noise_re = rng.standard_normal(s_clean.shape, dtype=np.float32)
    noise_im = rng.standard_normal(s_clean.shape, dtype=np.float32)
    return np.hypot(s_clean + sigma * noise_re, sigma * noise_im).astype(np.float32)


def make_phantom(spec: PhantomSpec | None = None) -> Phantom:
    """Generate the phantom (deterministic for a given ``spec.seed``)."""
    spec = spec or PhantomSpec()
    nz, ny, nx = spec.shape
    b = spec.block
    rng = np.random.default_rng(spec.seed)
    times = np.arange(spec.n_time) * spec.tr
    dtf = 0.05
    tf = np.arange(0, times[-1] + spec.tr + 3.0, dtf)
    unit_aif = gamma_variate(tf, spec.t0, spec.alpha, spec.beta)

    def tissue_curve(cbf, mtt, delay, amp):
        ca = amp * gamma_variate(tf, spec.t0 + delay, spec.alpha, spec.beta)
        res = np.exp(-tf / mtt)
        conv = np.convolve(ca, res)[: tf.size] * dtf
        return (RHO / KH) * (cbf / 6000.0) * conv

    # amplitude: GM (CBV 4, MTT 4 -> CBF 60) peak dR2* * TE = -ln(1 - drop)
    gm = tissue_curve(60.0, 4.0, 0.0, 1.0)
    amp = -np.log(1.0 - spec.gm_peak_drop) / spec.te / gm.max()
    sample = np.clip(np.rint(times / dtf).astype(int), 0, tf.size - 1)
    aif = amp * unit_aif[sample]

    conc = np.zeros((spec.n_time, nz, ny, nx), dtype=np.float64)
    region = np.full((nz, ny, nx), -1, dtype=np.int32)
    tissue = np.zeros((nz, ny, nx), bool)
    artery = np.zeros_like(tissue)
    vein = np.zeros_like(tissue)
    x0, x1 = 4, nx - 4  # tissue columns; arteries at x 1-2, veins at nx-3..nx-2
    y0 = 2
    nby, nbx = (ny - 2 * y0) // b, (x1 - x0) // b
    if nby < 1 or nbx < 1:
        raise ValueError(f"phantom shape {spec.shape} is too small for blocks of {b} voxels")
    ncomb = len(spec.combinations)
    curves = {}
    k = 0
    for z in range(nz):
        for by in range(nby):
            for bx in range(nbx):
                idx = k % ncomb
                k += 1
                cbf, _cbv, mtt, delay = spec.combinations[idx]
                if idx not in curves:
                    curves[idx] = tissue_curve(cbf, mtt, delay, amp)[sample]
                sl = (z, slice(y0 + by * b, y0 + (by + 1) * b), slice(x0 + bx * b, x0 + (bx + 1) * b))
                region[sl] = idx
                tissue[sl] = True
    reg_t = region[tissue]
    conc_t = np.stack([curves[i] for i in range(ncomb) if i in curves], axis=1)  # (T, used)
    lookup = {i: j for j, i in enumerate(i for i in range(ncomb) if i in curves)}
    cols = np.array([lookup[i] for i in reg_t])
    conc[:, tissue] = conc_t[:, cols]
    # vessels: every 4th row of the tissue height, 2 voxels wide
    vessel_rows = np.arange(y0 + 1, ny - y0 - 1, 4)
    venous = np.convolve(amp * gamma_variate(tf, spec.t0 + 5.0, spec.alpha, spec.beta), np.exp(-tf / 3.0) / 3.0)[: tf.size] * dtf
    for z in range(nz):
        for y in vessel_rows:
            artery[z, y, 1:3] = True
            vein[z, y, nx - 3:nx - 1] = True
    conc[:, artery] = spec.artery_fraction * aif[:, None]
    conc[:, vein] = spec.vein_fraction * venous[sample][:, None]

    body = tissue | artery | vein
    signal = rician_signal(np.where(body, spec.s0, 0.0), conc, spec.te, spec.s0 / spec.snr, rng)

    table = np.array(spec.combinations, dtype=np.float64)
    def truth(col):
        out = np.full(region.shape, np.nan, dtype=np.float32)
        out[tissue] = table[region[tissue], col]
        return out
    return Phantom(spec, signal, times, aif.astype(np.float32), truth(0), truth(1), truth(2), truth(3),
                   region, tissue, artery, vein)


@dataclass
class BrainPhantomSpec:
    """Parameters of the brain-like layout (:func:`make_brain_phantom`); the module docstring explains them."""

    shape: tuple[int, int, int] = (4, 64, 64)
    n_time: int = 60
    tr: float = 1.5
    te: float = 0.030
    snr: float = 200.0
    s0: float = 1000.0
    seed: int = 0
    t0: float = 18.0  # bolus arrival: 12 baseline frames at TR 1.5 s
    alpha: float = 3.0
    beta: float = 1.5
    gm_peak_drop: float = 0.12
    gm: tuple[float, float] = (60.0, 4.5)  # CBF ml/100 g/min, CBV ml/100 g
    wm: tuple[float, float] = (25.0, 2.0)
    lesion_delay: float = 8.0  # s
    residue_shape: int | str = 3  # transit times gamma-distributed with this integer shape (1 = exponential), or "box"
    artery_fraction: float = 0.4
    vein_delay: float = 5.0
    vein_dispersion: float = 3.0
    pixel_spacing: tuple[float, float] = (1.8, 1.8)
    slice_thickness: float = 5.0
    field_strength: float = 3.0


def gamma_residue(t: np.ndarray, mtt: float, shape: int) -> np.ndarray:
    """Residue function of gamma-distributed transit times (integer ``shape`` k, mean ``mtt``).

    ``R(t) = 1 - P(k, k t / MTT) = exp(-x) sum_{i<k} x^i / i!`` with ``x = k t / MTT``; its integral is MTT.
    k = 1 is the exponential residue of a well-mixed compartment.
    """
    x = shape * np.clip(t, 0, None) / mtt
    term = np.ones_like(x)
    total = np.ones_like(x)
    for i in range(1, shape):
        term = term * x / i
        total = total + term
    return np.exp(-x) * total


def tissue_residue(t: np.ndarray, mtt: float, shape: int | str) -> np.ndarray:
    """The brain phantom's residue: :func:`gamma_residue` of integer ``shape``, or ``"box"``: plug flow, every
    transit time equal to ``mtt`` (``R = 1`` until ``mtt``, then 0; integral MTT)."""
    if shape == "box":
        return (np.asarray(t) < mtt).astype(np.float64)
    return gamma_residue(t, mtt, int(shape))


def _ellipse(yy, xx, cy, cx, ry, rx):
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def make_brain_phantom(spec: BrainPhantomSpec | None = None) -> Phantom:
    """The brain-like layout: GM/WM with known values, a delayed region, partial-volume AIF voxels, a sinus."""
    spec = spec or BrainPhantomSpec()
    nz, ny, nx = spec.shape
    rng = np.random.default_rng(spec.seed)
    times = np.arange(spec.n_time) * spec.tr
    dtf = 0.05
    tf = np.arange(0, times[-1] + spec.tr + 3.0, dtf)
    sample = np.clip(np.rint(times / dtf).astype(int), 0, tf.size - 1)

    def tissue_curve(cbf, cbv, delay, amp=1.0):
        ca = amp * gamma_variate(tf, spec.t0 + delay, spec.alpha, spec.beta)
        conv = np.convolve(ca, tissue_residue(tf, 60.0 * cbv / cbf, spec.residue_shape))[: tf.size] * dtf
        return (RHO / KH) * (cbf / 6000.0) * conv

    amp = -np.log(1.0 - spec.gm_peak_drop) / spec.te / tissue_curve(*spec.gm, 0.0).max()
    aif = amp * gamma_variate(tf, spec.t0, spec.alpha, spec.beta)
    kernel = np.exp(-tf / spec.vein_dispersion) / spec.vein_dispersion
    venous = np.convolve(amp * gamma_variate(tf, spec.t0 + spec.vein_delay, spec.alpha, spec.beta), kernel)[: tf.size] * dtf

    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    cy, cx = (ny - 1) / 2.0, (nx - 1) / 2.0
    ry, rx = 0.42 * ny, 0.36 * nx
    brain2 = _ellipse(yy, xx, cy, cx, ry, rx)
    cortex2 = brain2 & ~_ellipse(yy, xx, cy, cx, 0.8 * ry, 0.8 * rx)
    deep2 = _ellipse(yy, xx, cy + 0.05 * ny, cx - 0.11 * nx, 0.07 * ny, 0.04 * nx) | \
        _ellipse(yy, xx, cy + 0.05 * ny, cx + 0.11 * nx, 0.07 * ny, 0.04 * nx)
    csf2 = _ellipse(yy, xx, cy - 0.06 * ny, cx - 0.05 * nx, 0.1 * ny, 0.028 * nx) | \
        _ellipse(yy, xx, cy - 0.06 * ny, cx + 0.05 * nx, 0.1 * ny, 0.028 * nx)
    delayed2 = brain2 & (xx - cx > 0.09 * nx) & (yy - cy > -0.12 * ny) & (yy - cy < 0.2 * ny)
    artery2 = np.zeros((ny, nx), bool)
    for ay, ax in ((cy - 0.03 * ny, cx - 0.19 * nx), (cy - 0.31 * ny, cx - 0.02 * nx)):
        artery2[int(ay):int(ay) + 2, int(ax):int(ax) + 2] = True
    vein2 = np.zeros((ny, nx), bool)
    vy = int(np.floor(cy + ry)) - 1
    vein2[vy - 1:vy + 1, int(cx) - 1:int(cx) + 2] = True
    gm2 = (cortex2 | deep2) & ~csf2 & ~artery2 & ~vein2
    wm2 = brain2 & ~gm2 & ~csf2 & ~artery2 & ~vein2
    stack = lambda a: np.broadcast_to(a, (nz, ny, nx)).copy()  # noqa: E731 - every slice alike
    gm, wm, csf, delayed = stack(gm2), stack(wm2), stack(csf2), stack(delayed2 & (gm2 | wm2))
    artery, vein = stack(artery2), stack(vein2)
    tissue = gm | wm

    conc = np.zeros((spec.n_time, nz, ny, nx), dtype=np.float64)
    table = []
    region = np.full((nz, ny, nx), -1, dtype=np.int32)
    for cls, (cbf, cbv) in ((gm, spec.gm), (wm, spec.wm)):
        for late, delay in ((~delayed, 0.0), (delayed, spec.lesion_delay)):
            sel = cls & late
            region[sel] = len(table)
            table.append((cbf, cbv, 60.0 * cbv / cbf, delay))
            conc[:, sel] = tissue_curve(cbf, cbv, delay, amp)[sample][:, None]
    gm_curve = tissue_curve(*spec.gm, 0.0, amp)[sample]
    conc[:, artery] = (spec.artery_fraction * aif[sample] + (1 - spec.artery_fraction) * gm_curve)[:, None]
    conc[:, vein] = venous[sample][:, None]
    s0 = np.where(tissue | artery | vein, spec.s0, 0.0) + np.where(csf, 1.4 * spec.s0, 0.0)
    signal = rician_signal(s0, conc, spec.te, spec.s0 / spec.snr, rng)

    truth = np.array(table)

    def truth_map(col):
        out = np.full(region.shape, np.nan, dtype=np.float32)
        out[tissue] = truth[region[tissue], col]
        return out
    labels = {"GM": gm, "WM": wm, "delayed": delayed, "CSF": csf}
    return Phantom(spec, signal, times, (aif[sample]).astype(np.float32), truth_map(0), truth_map(1), truth_map(2),
                   truth_map(3), region, tissue, artery, vein, labels)


def _uid(seed: int, *parts) -> str:
    return stable_uid("phantom", seed, *parts)


def write_phantom_dicom(phantom: Phantom, out_dir: str | Path, series_description: str = "DSC perfusion") -> list[Path]:
    """Write the phantom as a DSC series: one MR Image Storage instance per slice per time point.

    UIDs are derived from ``spec.seed`` so a re-write gives the same files.  Geometry: axial slices
    (ImageOrientationPatient 1\\0\\0\\0\\1\\0) stacked along +z, origin centred on the matrix.
    """
    spec = phantom.spec
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nt, nz, ny, nx = phantom.signal.shape
    study_uid, series_uid, for_uid = (_uid(spec.seed, k) for k in ("study", "series", "frame-of-reference"))
    dr, dc = spec.pixel_spacing
    origin = np.array([-(nx - 1) * dc / 2.0, -(ny - 1) * dr / 2.0, 0.0])
    pixels = np.clip(np.rint(phantom.signal), 0, 65535).astype(np.uint16)
    start = _dt.datetime(2024, 1, 1, 9, 0, 0)
    study = {"PatientName": "Phantom^DSC", "PatientID": f"PHANTOM-DSC-{spec.seed}", "PatientBirthDate": "",
             "PatientSex": "O", "StudyInstanceUID": study_uid, "StudyDate": start.strftime("%Y%m%d"),
             "StudyTime": start.strftime("%H%M%S"), "StudyID": "1", "AccessionNumber": "",
             "ReferringPhysicianName": "", "StudyDescription": "meshdcm digital DSC phantom", "Manufacturer": "meshdcm"}
    header = series_header(study, sop_class_uid=MRImageStorage, modality="MR", series_uid=series_uid,
                           series_number=7, series_description=series_description,
                           image_type=["ORIGINAL", "PRIMARY", "PERFUSION", "NONE"], frame_of_reference_uid=for_uid)
    header.SeriesDate = header.StudyDate
    header.SeriesTime = header.StudyTime
    header.ScanningSequence = ["GR", "EP"]
    header.SequenceVariant = ["SK"]
    header.ScanOptions = ""
    header.MRAcquisitionType = "2D"
    header.SequenceName = "epfid2d1"
    header.EchoTime = round(spec.te * 1000.0, 4)
    header.RepetitionTime = round(spec.tr * 1000.0, 4)
    header.EchoTrainLength = ny
    header.FlipAngle = 90
    header.MagneticFieldStrength = spec.field_strength
    header.ImagedNucleus = "1H"
    header.NumberOfTemporalPositions = nt
    header.AcquisitionDate = header.StudyDate
    header.ContentDate = header.StudyDate
    paths = []
    for t in range(nt):
        when = start + _dt.timedelta(seconds=float(phantom.times[t]))
        tm = when.strftime("%H%M%S.%f")
        for z in range(nz):
            ds = image_instance(header, sop_instance_uid=_uid(spec.seed, "instance", t, z),
                                instance_number=t * nz + z + 1)
            ds.AcquisitionNumber = t + 1
            ds.TemporalPositionIdentifier = t + 1
            ds.AcquisitionTime = tm
            ds.ContentTime = tm
            ds.TriggerTime = round(float(phantom.times[t]) * 1000.0, 3)
            image_plane(ds, position=[float(v) for v in origin + np.array([0, 0, z * spec.slice_thickness])],
                        orientation=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], pixel_spacing=[float(dr), float(dc)],
                        slice_thickness=float(spec.slice_thickness), spacing_between_slices=float(spec.slice_thickness),
                        slice_location=float(z * spec.slice_thickness))
            image_pixels(ds, pixels[t, z])
            paths.append(write_instance(ds, out / f"IM_{t:03d}_{z:03d}.dcm"))
    logger.info("wrote phantom DSC series %s (%d instances) to %s", series_uid, len(paths), out)
    return paths
