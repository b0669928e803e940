"""A digital DSC stroke phantom with known core and hypoperfusion volumes, on the indicator-dilution model of
:mod:`meshdcm.perfusion.phantom` (gamma-variate AIF, exponential residue, ``C_t = rho/kH CBF (C_a(. - delay) * h *
R)``, ``S = S0 exp(-TE C)``, Rician noise), written with the same DICOM writer.

Head.  An ellipsoidal brain (semi-axes 70 mm left-right, 85 mm antero-posterior, 48 mm cranio-caudal; about
1,200 ml): grey matter (CBF 60 ml/100 g/min, CBV 4 ml/100 g) outside an inner ellipsoid of white matter (CBF 22,
CBV 2.2), two lateral ventricles of CSF (no contrast, 1.6 x the tissue signal: bright on T2*), partial-volume
arterial voxels near the midline and venous voxels in a posterior sinus, as in the perfusion phantom (so the
automatic AIF works the same way).

Lesion.  Three concentric spheres in the left hemisphere (patient left, +x), clipped to the brain:
- ``tmax6`` (outer shell): delay 5 s and dispersion (exponential kernel, 1 s): true Tmax about 7.3 s; CBF 90 %,
  CBV 110 % of the tissue's normal (oligaemia with autoregulation);
- ``tmax10`` (middle shell): delay 11 s, same dispersion, true Tmax about 12.5 s; CBF 80 %, CBV 100 %;
- ``core`` (centre): delay 11 s, dispersion 1 s, CBF 15 % and CBV 45 % of normal (< 30 %: core by rCBF).
The true Tmax of a voxel is its delay plus the peak time of (dispersion kernel * residue).  Truth volumes: voxel
counts of the masks x voxel volume; ``tmax6`` includes the inner spheres, ``tmax10`` the core.

Sizes (core / Tmax>10 / Tmax>6 sphere radii in mm): small 14/22/30, medium 22/30/40, large 31/37/45, none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..perfusion.constants import KH, RHO
from ..perfusion.phantom import Phantom, PhantomSpec, gamma_variate, rician_signal, write_phantom_dicom

__all__ = ["ADC_VALUES", "LESIONS", "StrokePhantom", "StrokePhantomSpec", "make_stroke_phantom", "write_adc_series",
           "write_stroke_phantom"]

LESIONS = {"none": None, "small": (14.0, 22.0, 30.0), "medium": (22.0, 30.0, 40.0), "large": (31.0, 37.0, 45.0)}
_SEEDS = {"none": 1900, "small": 1901, "medium": 1902, "large": 1903}  # distinct seeds: distinct study/series UIDs

NORMAL = {"gm": (60.0, 4.0), "wm": (22.0, 2.2)}  # CBF ml/100 g/min, CBV ml/100 g
ARTERIES_MM = ((-35.0, -10.0), (-20.0, 15.0), (0.0, -40.0), (-25.0, 45.0))  # (x, y) in the right hemisphere
ADC_VALUES = {"gm": 800.0, "wm": 720.0, "csf": 3000.0, "core": 450.0}  # x10^-6 mm^2/s
# region: (delay s, dispersion time constant s, CBF factor, CBV factor)
LESION_TISSUE = {"tmax6": (5.0, 1.0, 0.90, 1.10), "tmax10": (11.0, 1.0, 0.80, 1.00), "core": (11.0, 1.0, 0.15, 0.45)}


@dataclass
class StrokePhantomSpec:
    lesion: str = "medium"
    shape: tuple[int, int, int] = (20, 64, 64)  # slices, rows, columns
    pixel_spacing: tuple[float, float] = (3.0, 3.0)  # mm
    slice_thickness: float = 5.0  # mm, contiguous slices
    n_time: int = 80
    tr: float = 1.0
    te: float = 0.030
    snr: float = 50.0
    s0: float = 1000.0
    seed: int | None = None  # None: one per lesion size
    lesion_centre_mm: tuple[float, float, float] = (38.0, 5.0, 5.0)  # x (left +), y (posterior +), z (LPS mm)
    brain_axes_mm: tuple[float, float, float] = (70.0, 85.0, 48.0)
    artery_fraction: float = 0.25
    vein_fraction: float = 0.35
    t0: float = 10.0
    alpha: float = 3.0
    beta: float = 1.5
    gm_peak_drop: float = 0.40

    def __post_init__(self):
        if self.lesion not in LESIONS:
            raise ValueError(f"StrokePhantomSpec.lesion must be one of {', '.join(LESIONS)} (got {self.lesion!r})")


@dataclass
class StrokePhantom:
    """The series (as a perfusion :class:`Phantom`, ready for :func:`write_phantom_dicom`) and the truth."""

    spec: StrokePhantomSpec
    phantom: Phantom
    brain: np.ndarray
    csf: np.ndarray
    core: np.ndarray
    tmax6: np.ndarray
    tmax10: np.ndarray
    true_tmax: np.ndarray
    voxel_ml: float
    truth_ml: dict = field(default_factory=dict)

    @property
    def signal(self) -> np.ndarray:
        return self.phantom.signal

    def affine_lps(self) -> np.ndarray:
        """(column, row, slice) -> LPS mm, as :func:`write_stroke_phantom` places the slices."""
        nz, ny, nx = self.spec.shape
        dr, dc = self.spec.pixel_spacing
        a = np.diag([dc, dr, self.spec.slice_thickness, 1.0])
        a[:3, 3] = [-(nx - 1) * dc / 2.0, -(ny - 1) * dr / 2.0, 0.0]
        return a

    def as_series(self):
        """The phantom as a loaded :class:`~meshdcm.perfusion.DSCSeries` without DICOM files (no instances: for
        the analysis, not for the SEG, which needs the source instances)."""
        from ..perfusion.series import DSCSeries

        p = self.phantom
        return DSCSeries(p.signal, p.times, self.spec.te, self.spec.tr, [], [], f"phantom-{self.spec.lesion}",
                         "phantom-study", None, self.affine_lps())


def _true_tmax(delay: float, tau: float, mtt: float) -> float:
    """Peak time of exp(-t/tau)/tau * exp(-t/mtt), shifted by the delay (no dispersion: the delay)."""
    if tau <= 0:
        return delay
    if abs(mtt - tau) < 1e-9:
        return delay + tau
    return delay + np.log(mtt / tau) * tau * mtt / (mtt - tau)


def _anatomy(xx, yy, zz, spec: StrokePhantomSpec) -> dict[str, np.ndarray]:
    """Brain, white matter, CSF and the lesion spheres at points (phantom-centred LPS mm)."""
    ax, ay, az = spec.brain_axes_mm
    r_brain = (xx / ax) ** 2 + (yy / ay) ** 2 + (zz / az) ** 2
    brain = r_brain <= 1.0
    csf = np.zeros_like(brain)
    for side in (-1, 1):
        csf |= ((xx - side * 11.0) / 6.0) ** 2 + ((yy + 5.0) / 25.0) ** 2 + ((zz - 8.0) / 15.0) ** 2 <= 1.0
    out = {"brain": brain, "wm": r_brain <= 0.78**2, "csf": csf & brain}
    radii = LESIONS[spec.lesion] or (-1.0, -1.0, -1.0)
    cx, cy, cz = spec.lesion_centre_mm
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2 + (zz - cz) ** 2)
    for key, radius in zip(("core", "tmax10", "tmax6"), radii, strict=True):
        out[key] = brain & ~out["csf"] & (dist <= radius)
    return out


def make_stroke_phantom(spec: StrokePhantomSpec | None = None) -> StrokePhantom:
    """Generate the phantom (deterministic for a spec)."""
    spec = spec or StrokePhantomSpec()
    seed = _SEEDS[spec.lesion] if spec.seed is None else spec.seed
    rng = np.random.default_rng(seed)
    nz, ny, nx = spec.shape
    dr, dc = spec.pixel_spacing
    dz = spec.slice_thickness
    # voxel centres in LPS mm, origin at the matrix centre (as write_phantom_dicom places it, z centred here)
    x = (np.arange(nx) - (nx - 1) / 2.0) * dc
    y = (np.arange(ny) - (ny - 1) / 2.0) * dr
    z = (np.arange(nz) - (nz - 1) / 2.0) * dz
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    anatomy = _anatomy(xx, yy, zz, spec)
    brain, wm, csf = anatomy["brain"], anatomy["wm"], anatomy["csf"]
    artery = np.zeros_like(brain)
    vein = np.zeros_like(brain)
    for k in range(nz):  # per slice: 2 x 2 voxels at right-sided MCA/PCA-like and midline ACA-like spots
        for (px, py) in ARTERIES_MM:
            i, j = int(np.argmin(abs(x - px))), int(np.argmin(abs(y - py)))
            artery[k, j:j + 2, i:i + 2] = brain[k, j:j + 2, i:i + 2]
        j_sinus = int(np.argmin(abs(y - 0.9 * spec.brain_axes_mm[1])))
        i_mid = int(np.argmin(abs(x)))
        if brain[k, j_sinus, i_mid]:
            vein[k, j_sinus, i_mid:i_mid + 2] = True
    vessels = artery | vein
    csf &= ~vessels
    tissue = brain & ~csf & ~vessels

    core, tmax10, tmax6 = (anatomy[k] & tissue for k in ("core", "tmax10", "tmax6"))

    times = np.arange(spec.n_time) * spec.tr
    dtf = 0.05
    tf = np.arange(0, times[-1] + spec.tr + 3.0, dtf)
    sample = np.clip(np.rint(times / dtf).astype(int), 0, tf.size - 1)

    def curve(cbf, cbv, delay, tau, amp):
        mtt = 60.0 * cbv / cbf
        ca = amp * gamma_variate(tf, spec.t0 + delay, spec.alpha, spec.beta)
        if tau > 0:
            ca = np.convolve(ca, np.exp(-tf / tau) / tau)[: tf.size] * dtf
        conv = np.convolve(ca, np.exp(-tf / mtt))[: tf.size] * dtf
        return (RHO / KH) * (cbf / 6000.0) * conv

    gm_ref = curve(60.0, 4.0, 0.0, 0.0, 1.0)
    amp = -np.log(1.0 - spec.gm_peak_drop) / spec.te / gm_ref.max()
    aif = amp * gamma_variate(tf, spec.t0, spec.alpha, spec.beta)

    conc = np.zeros((spec.n_time, nz, ny, nx), dtype=np.float32)
    cbf_t = np.full(brain.shape, np.nan, np.float32)
    cbv_t = np.full(brain.shape, np.nan, np.float32)
    delay_t = np.full(brain.shape, np.nan, np.float32)
    true_tmax = np.full(brain.shape, np.nan, np.float32)
    shells = {"normal": tissue & ~tmax6, "tmax6": tmax6 & ~tmax10, "tmax10": tmax10 & ~core, "core": core}
    for region, where in shells.items():
        delay, tau, fcbf, fcbv = LESION_TISSUE.get(region, (0.0, 0.0, 1.0, 1.0))
        for name, (cbf, cbv) in NORMAL.items():
            sel = where & (wm if name == "wm" else ~wm)
            if not sel.any():
                continue
            f, v = cbf * fcbf, cbv * fcbv
            conc[:, sel] = curve(f, v, delay, tau, amp)[sample][:, None]
            cbf_t[sel], cbv_t[sel], delay_t[sel] = f, v, delay
            true_tmax[sel] = _true_tmax(delay, tau, 60.0 * v / f)
    venous = np.convolve(amp * gamma_variate(tf, spec.t0 + 5.0, spec.alpha, spec.beta), np.exp(-tf / 3.0) / 3.0)[: tf.size]
    conc[:, artery] = (spec.artery_fraction * aif[sample])[:, None]
    conc[:, vein] = (spec.vein_fraction * venous[sample] * dtf)[:, None]

    s0 = np.where(brain, spec.s0, 0.0) * np.where(csf, 1.6, 1.0)
    signal = rician_signal(s0[None], conc, spec.te, spec.s0 / spec.snr, rng)

    pspec = PhantomSpec(shape=spec.shape, n_time=spec.n_time, tr=spec.tr, te=spec.te, snr=spec.snr, s0=spec.s0,
                        seed=seed, t0=spec.t0, alpha=spec.alpha, beta=spec.beta, gm_peak_drop=spec.gm_peak_drop,
                        artery_fraction=spec.artery_fraction, vein_fraction=spec.vein_fraction, combinations=[],
                        pixel_spacing=spec.pixel_spacing, slice_thickness=spec.slice_thickness)
    region = np.full(brain.shape, -1, np.int32)
    for i, where in enumerate(shells.values()):
        region[where] = i
    mtt_t = np.where(np.isfinite(cbf_t), 60.0 * cbv_t / np.where(np.isfinite(cbf_t), cbf_t, 1.0), np.nan)
    phantom = Phantom(pspec, signal, times, (amp * gamma_variate(tf, spec.t0, spec.alpha, spec.beta))[sample].astype(
        np.float32), cbf_t, cbv_t, mtt_t.astype(np.float32), delay_t, region, tissue, artery, vein)
    voxel_ml = dr * dc * dz / 1000.0
    truth = {"core_ml": round(float(core.sum()) * voxel_ml, 1), "tmax6_ml": round(float(tmax6.sum()) * voxel_ml, 1),
             "tmax10_ml": round(float(tmax10.sum()) * voxel_ml, 1), "brain_ml": round(float(brain.sum()) * voxel_ml, 1),
             "csf_ml": round(float(csf.sum()) * voxel_ml, 1)}
    truth["mismatch_ml"] = round(truth["tmax6_ml"] - truth["core_ml"], 1)
    return StrokePhantom(spec, phantom, brain, csf, core, tmax6, tmax10, true_tmax, voxel_ml, truth)


def write_stroke_phantom(sp: StrokePhantom, out_dir: str | Path) -> list[Path]:
    """The phantom as a DSC series (one MR instance per slice per time point; UIDs from the lesion's seed)."""
    return write_phantom_dicom(sp.phantom, out_dir, series_description=f"DSC perfusion stroke phantom {sp.spec.lesion}")


def write_adc_series(sp: StrokePhantom, out_dir: str | Path, like, *, shape=(24, 96, 96), spacing=(2.0, 2.0, 4.5),
                     slope: float = 1.0) -> list[Path]:
    """The phantom's ADC map (``ADC_VALUES``, the core sphere restricted) as an MR series of the same study and Frame
    of Reference as the DSC instance ``like``, on a grid of its own (``shape`` slices/rows/columns, ``spacing``
    row/column/slice mm) centred on the same point, so that the analysis must resample it.  Stored integers are
    x10^-6 mm^2/s; ``slope`` (RescaleSlope) 1e-3 or 1e-6 makes the real-world values x10^-3 mm^2/s or mm^2/s, as
    some vendors write them."""
    from pydicom.uid import MRImageStorage

    from ..imagewriter import image_instance, image_pixels, image_plane, rescale, series_header, write_instance
    from ._uid import stable_uid

    nz, ny, nx = shape
    dr, dc, dz = spacing
    dsc_nz = sp.spec.shape[0]
    z_offset = (dsc_nz - 1) / 2.0 * sp.spec.slice_thickness  # DSC world z of the phantom centre
    x = (np.arange(nx) - (nx - 1) / 2.0) * dc
    y = (np.arange(ny) - (ny - 1) / 2.0) * dr
    z = (np.arange(nz) - (nz - 1) / 2.0) * dz
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    a = _anatomy(xx, yy, zz, sp.spec)
    adc = np.where(a["wm"], ADC_VALUES["wm"], ADC_VALUES["gm"])
    adc = np.where(a["csf"], ADC_VALUES["csf"], adc)
    adc = np.where(a["core"], ADC_VALUES["core"], adc)
    adc = np.where(a["brain"], adc, 0.0)
    study = {kw: like.data_element(kw).value for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                                                         "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
                                                         "AccessionNumber", "ReferringPhysicianName",
                                                         "StudyDescription") if kw in like}
    series_uid = stable_uid("phantom-adc", sp.spec.lesion, like.StudyInstanceUID)
    header = series_header(study, sop_class_uid=MRImageStorage, modality="MR", series_uid=series_uid,
                           series_number=5, series_description="ADC (phantom DWI)",
                           image_type=["DERIVED", "PRIMARY", "DIFFUSION", "ADC"],
                           frame_of_reference_uid=str(like.FrameOfReferenceUID))
    header.ScanningSequence, header.SequenceVariant, header.ScanOptions = ["EP"], ["SK"], ""
    header.MRAcquisitionType, header.EchoTime, header.RepetitionTime = "2D", 70.0, 5000.0
    stored = np.rint(adc).astype(np.uint16)
    paths = []
    for k in range(nz):
        ds = image_instance(header, sop_instance_uid=stable_uid(series_uid, k), instance_number=k + 1)
        image_plane(ds, position=[float(x[0]), float(y[0]), float(z[k] + z_offset)],
                    orientation=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], pixel_spacing=[dr, dc], slice_thickness=dz,
                    spacing_between_slices=dz)
        image_pixels(ds, stored[k])
        if slope != 1.0:
            rescale(ds, f"{slope:g}", "0")
        paths.append(write_instance(ds, Path(out_dir) / f"ADC_{k + 1:03d}.dcm"))
    return paths
