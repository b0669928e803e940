"""A digital DSC-MRI phantom with known CBF, CBV, MTT and bolus delay (after Wu et al. 2003, MRM 50:164,
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

__all__ = ["PhantomSpec", "Phantom", "make_phantom", "write_phantom_dicom", "phantom_combinations"]

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


def _gamma(t, t0, alpha, beta):
    x = np.clip(t - t0, 0, None)
    return x**alpha * np.exp(-x / beta)


def make_phantom(spec: PhantomSpec | None = None) -> Phantom:
    """Generate the phantom (deterministic for a given ``spec.seed``)."""
    spec = spec or PhantomSpec()
    nz, ny, nx = spec.shape
    b = spec.block
    rng = np.random.default_rng(spec.seed)
    times = np.arange(spec.n_time) * spec.tr
    dtf = 0.05
    tf = np.arange(0, times[-1] + spec.tr + 3.0, dtf)
    unit_aif = _gamma(tf, spec.t0, spec.alpha, spec.beta)

    def tissue_curve(cbf, mtt, delay, amp):
        ca = amp * _gamma(tf, spec.t0 + delay, spec.alpha, spec.beta)
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
    venous = np.convolve(amp * _gamma(tf, spec.t0 + 5.0, spec.alpha, spec.beta), np.exp(-tf / 3.0) / 3.0)[: tf.size] * dtf
    for z in range(nz):
        for y in vessel_rows:
            artery[z, y, 1:3] = True
            vein[z, y, nx - 3:nx - 1] = True
    conc[:, artery] = spec.artery_fraction * aif[:, None]
    conc[:, vein] = spec.vein_fraction * venous[sample][:, None]

    body = tissue | artery | vein
    s_clean = np.where(body, spec.s0, 0.0) * np.exp(-spec.te * conc)
    sigma = spec.s0 / spec.snr
    noise_re = rng.standard_normal(s_clean.shape, dtype=np.float32)
    noise_im = rng.standard_normal(s_clean.shape, dtype=np.float32)
    signal = np.hypot(s_clean + sigma * noise_re, sigma * noise_im).astype(np.float32)

    table = np.array(spec.combinations, dtype=np.float64)
    def truth(col):
        out = np.full(region.shape, np.nan, dtype=np.float32)
        out[tissue] = table[region[tissue], col]
        return out
    return Phantom(spec, signal, times, aif.astype(np.float32), truth(0), truth(1), truth(2), truth(3),
                   region, tissue, artery, vein)


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
