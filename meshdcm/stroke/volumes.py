"""Ischaemic core, hypoperfusion and mismatch from perfusion maps (and an ADC map when there is one); their volumes;
the DEFUSE-3 imaging criteria.  The rules, in the order applied (docs/stroke.md gives the references):

1. **Normal tissue** (reference of rCBF and rCBV): brain voxels with Tmax < 4 s and a CBV of at least 20 % of the
   reference CBV; the reference CBF and CBV are their medians (robust to vessels and noise; the CBV reference is
   found by taking the median of all Tmax < 4 s voxels, dropping those below 20 % of it, twice).
2. **CSF / ventricles (and background)**: CBV < 20 % of the reference CBV (no blood) *and*, when the baseline
   (pre-bolus) signal is given, a baseline signal >= 1.2 x the normal tissue's (CSF is bright on T2*-weighted EPI;
   an acute core is not, yet its CBV can be as low); a baseline signal < 0.5 x the normal tissue's whatever the CBV
   (background, bone, susceptibility drop-out that the brain mask let in: no perfusion can be measured there); or
   ADC > 2000 x10^-6 mm^2/s when an ADC map is given.  These voxels are never hypoperfusion, and never core by
   rCBF.
3. **Tmax > 6 s** and **Tmax > 10 s**: brain voxels above the threshold, CSF out, connected components (6-connected,
   3D) smaller than 5 ml removed.
4. **Core**: with an ADC map, ADC > 0 and < 620 x10^-6 mm^2/s inside the brain mask (CSF, ADC > 2000, can never
   pass), on the ADC's own grid when it comes as an :class:`~.adc.ADCMap` (the brain mask brought onto it; the
   core's components, volume and ``core_outside_tmax6_ml`` counted there, with its voxel volume; the mask then
   brought onto the DSC grid for the SEG, the overlays and the side); without one, CBF < 30 % of the reference
   CBF, CSF out, *inside the Tmax > 6 s region* (its holes filled: voxels enclosed by it whose Tmax is too noisy to
   pass are part of it), since low flow without delay is no acute ischaemia.  Components smaller than 1 ml removed.
   An rCBF core is added to the Tmax > 6 s region (it is hypoperfused by definition), so the mismatch region is
   exactly Tmax > 6 s minus core.
5. **Volumes** in ml: voxel count x PixelSpacing x slice spacing (of the grid the region was found on).  Mismatch
   volume = Tmax>6 - core (the two volumes as measured, DEFUSE-3's definition), mismatch ratio = Tmax>6 / core
   (undefined without a core), hypoperfusion intensity ratio (HIR) = Tmax>10 / Tmax>6.
6. **DEFUSE-3 imaging criteria**: core < 70 ml, mismatch ratio >= 1.8, mismatch volume >= 15 ml; each stated as met
   or not (the clinical criteria are not ours to judge).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .adc import ADCMap
from .errors import StrokeError
from .rules import DEFAULT_RULES, StrokeRules

log = logging.getLogger(__name__)

__all__ = ["StrokeMasks", "StrokeResult", "analyse_stroke", "defuse3", "lesion_side", "remove_small_components",
           "voxel_volume_ml"]

_SIX_CONNECTED = ndimage.generate_binary_structure(3, 1)


@dataclass
class StrokeMasks:
    """Boolean (Z, Y, X) masks on the DSC grid."""

    core: np.ndarray
    tmax6: np.ndarray
    tmax10: np.ndarray
    mismatch: np.ndarray
    csf: np.ndarray
    normal: np.ndarray  # the reference voxels


@dataclass
class StrokeResult:
    """What :func:`analyse_stroke` found; ``to_dict()`` is the ``"stroke"`` object of perfusion.json."""

    core_method: str  # "adc" or "rcbf"
    core_ml: float
    tmax6_ml: float
    tmax10_ml: float
    mismatch_ml: float
    mismatch_ratio: float | None  # None without a core
    hir: float | None  # None without Tmax > 6 s
    core_outside_tmax6_ml: float
    defuse3: dict
    reference: dict
    removed_ml: dict
    voxel_ml: float  # of the DSC grid
    core_voxel_ml: float | None = None  # of the grid the core was counted on: the ADC's own, or the DSC's
    side: str | None = None  # "left", "right", "bilateral" (patient's), or None: no lesion or no geometry
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0  # the analysis and its DICOM objects, after the perfusion maps
    rules: StrokeRules = DEFAULT_RULES
    masks: StrokeMasks | None = field(default=None, repr=False)
    outputs: dict = field(default_factory=dict)  # "seg", "sr", "summary": {"series_uid", "files", ...}

    def to_dict(self) -> dict:
        return {"core_method": self.core_method, "core_ml": self.core_ml, "tmax6_ml": self.tmax6_ml,
                "tmax10_ml": self.tmax10_ml, "mismatch_ml": self.mismatch_ml, "mismatch_ratio": self.mismatch_ratio,
                "hir": self.hir, "core_outside_tmax6_ml": self.core_outside_tmax6_ml, "defuse3": dict(self.defuse3),
                "reference": dict(self.reference), "removed_ml": dict(self.removed_ml),
                "voxel_ml": self.voxel_ml, "core_voxel_ml": self.core_voxel_ml, "side": self.side,
                "warnings": list(self.warnings), "seconds": self.seconds,
                "rules": self.rules.to_dict(),
                "outputs": {k: dict(v) for k, v in self.outputs.items()}}


def voxel_volume_ml(affine_lps: np.ndarray) -> float:
    """Volume of one voxel in ml from a (column, row, slice) -> LPS affine: column x row spacing x slice spacing."""
    spacing = np.linalg.norm(np.asarray(affine_lps, dtype=np.float64)[:3, :3], axis=0)
    if not np.all(spacing > 0):
        raise StrokeError(f"voxel spacing {spacing.tolist()} mm is not positive; volumes need PixelSpacing and "
                          "distinct slice positions")
    return float(np.prod(spacing)) / 1000.0


def remove_small_components(mask: np.ndarray, min_voxels: float) -> tuple[np.ndarray, int]:
    """``mask`` without its 6-connected components of fewer than ``min_voxels`` voxels; and how many voxels went."""
    mask = np.asarray(mask, dtype=bool)
    if min_voxels <= 1 or not mask.any():
        return mask.copy(), 0
    labels, n = ndimage.label(mask, structure=_SIX_CONNECTED)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_voxels
    keep[0] = False
    out = keep[labels]
    return out, int(mask.sum() - out.sum())


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Holes filled in 3D and in each slice (a hole open between slices is still closed within one)."""
    filled = ndimage.binary_fill_holes(mask)
    for z in range(mask.shape[0]):
        filled[z] |= ndimage.binary_fill_holes(mask[z])
    return filled


def _reference(cbf, cbv, tmax, brain, rules: StrokeRules, baseline, adc_csf) -> tuple[np.ndarray, np.ndarray, float,
                                                                                       float]:
    """(normal-tissue mask, CSF-and-background mask, reference CBF, reference CBV)."""
    unaffected = brain & (tmax < rules.tmax_normal) & ~adc_csf
    dark = np.zeros_like(brain)
    if baseline is not None and unaffected.any():
        dark = baseline < rules.dark_signal * float(np.median(baseline[unaffected]))
        unaffected &= ~dark
    if unaffected.sum() < 10:
        raise StrokeError(f"fewer than 10 brain voxels with Tmax < {rules.tmax_normal:g} s: no normal tissue to "
                          "compare with (whole-brain hypoperfusion, or a failed AIF); check the Tmax map")
    ref_cbv = float(np.median(cbv[unaffected]))
    for _ in range(2):  # bloodless voxels out of the reference, then the reference again
        normal = unaffected & (cbv >= rules.rcbv_csf * ref_cbv)
        if normal.sum() < 10:
            raise StrokeError("fewer than 10 normal-tissue voxels once CSF is removed; check the CBV map")
        ref_cbv = float(np.median(cbv[normal]))
    normal = unaffected & (cbv >= rules.rcbv_csf * ref_cbv)
    ref_cbf = float(np.median(cbf[normal]))
    if not ref_cbf > 0 or not ref_cbv > 0:
        raise StrokeError(f"normal-tissue CBF {ref_cbf:g} / CBV {ref_cbv:g} is not positive; check the maps")
    csf = cbv < rules.rcbv_csf * ref_cbv
    if baseline is not None:
        csf &= baseline >= rules.csf_signal * float(np.median(baseline[normal]))
    return normal, brain & (csf | dark | adc_csf), ref_cbf, ref_cbv


def lesion_side(lesion: np.ndarray, brain: np.ndarray, affine_lps: np.ndarray) -> str | None:
    """The patient's side of ``lesion`` relative to the brain's centre, along patient left (LPS +x): "left" or
    "right" when at least 80 % of its voxels lie on one side, else "bilateral"; None without a lesion."""
    if not lesion.any():
        return None
    a = np.asarray(affine_lps, dtype=np.float64)

    def x_of(mask):  # LPS x of voxel centres; mask is (Z, Y, X) = (slice k, row j, column i)
        k, j, i = np.nonzero(mask)
        return a[0, 0] * i + a[0, 1] * j + a[0, 2] * k + a[0, 3]

    left = float(np.mean(x_of(lesion) > x_of(brain).mean()))
    return "left" if left >= 0.8 else "right" if left <= 0.2 else "bilateral"


def _quality(tmax, tissue, tmax6, rules: StrokeRules) -> list[str]:
    """Warnings a reader must see: the signs of an AIF or bolus failure, which make every volume meaningless."""
    out = []
    if tissue.any():
        if float(np.mean(tmax[tissue] < 0)) > 0.5:
            out.append("Tmax is negative in most of the brain: the AIF arrives after the tissue (venous voxels "
                       "chosen?); the volumes are not reliable; check the AIF and analyse again with one chosen by hand")
        if float(tmax6.sum()) > 0.5 * float(tissue.sum()):
            out.append(f"Tmax > {rules.tmax_hypoperfusion:g} s in more than half of the brain: a global delay (poor "
                       "bolus, cardiac output, AIF) rather than a territory; the volumes are not reliable")
    return out


def defuse3(core_ml: float, tmax6_ml: float, rules: StrokeRules = DEFAULT_RULES) -> dict:
    """Which DEFUSE-3 imaging criteria hold, and a plain statement of them."""
    mismatch = tmax6_ml - core_ml
    ratio = tmax6_ml / core_ml if core_ml > 0 else None
    core_ok = core_ml < rules.defuse3_core_ml
    ratio_ok = (ratio >= rules.defuse3_ratio) if ratio is not None else tmax6_ml > 0
    mismatch_ok = mismatch >= rules.defuse3_mismatch_ml

    def said(ok: bool, text: str) -> str:
        return f"{text} ({'met' if ok else 'not met'})"

    ratio_text = f"mismatch ratio {ratio:.1f}" if ratio is not None else "mismatch ratio undefined (no core)"
    parts = [said(core_ok, f"core {core_ml:.1f} ml < {rules.defuse3_core_ml:g} ml"),
             said(ratio_ok, f"{ratio_text} >= {rules.defuse3_ratio:g}"),
             said(mismatch_ok, f"mismatch volume {mismatch:.1f} ml >= {rules.defuse3_mismatch_ml:g} ml")]
    met = core_ok and ratio_ok and mismatch_ok
    head = "DEFUSE-3 imaging criteria met" if met else "DEFUSE-3 imaging criteria not met"
    statement = f"{head}: {'; '.join(parts)}. Clinical criteria (age, NIHSS, time from onset, occlusion site) " \
                "are not assessed."
    return {"core_lt_70ml": bool(core_ok), "mismatch_ratio_ge_1_8": bool(ratio_ok),
            "mismatch_ge_15ml": bool(mismatch_ok), "all_met": bool(met), "statement": statement}


def analyse_stroke(cbf: np.ndarray, cbv: np.ndarray, tmax: np.ndarray, brain: np.ndarray, voxel_ml: float, *,
                   baseline: np.ndarray | None = None, adc: np.ndarray | ADCMap | None = None,
                   affine_lps: np.ndarray | None = None, rules: StrokeRules = DEFAULT_RULES) -> StrokeResult:
    """Core, Tmax > 6 s, Tmax > 10 s and mismatch from (Z, Y, X) maps on one grid (module docstring: the rules).

    ``cbf``/``cbv`` in any consistent units (only ratios to normal tissue are used), ``tmax`` in s, ``brain`` the
    voxels the maps were computed in, ``baseline`` the mean pre-bolus signal (or None: CSF by CBV alone), ``adc``
    an :class:`~.adc.ADCMap` (core on the ADC's own grid; needs ``affine_lps``) or an array in x10^-6 mm^2/s on the
    same grid as the maps (or None: core by rCBF), ``affine_lps`` the grid's (column, row, slice) -> LPS affine (or
    None: no side is given).
    """
    brain = np.asarray(brain, dtype=bool)
    shape = brain.shape
    adc_map = adc if isinstance(adc, ADCMap) else None
    if adc_map is not None:
        if affine_lps is None:
            raise StrokeError("an ADC map on its own grid needs the DSC grid's affine_lps to be placed against it")
        adc = adc_map.values
    for name, a in (("cbf", cbf), ("cbv", cbv), ("tmax", tmax), ("baseline", baseline), ("adc", adc)):
        if a is not None and np.shape(a) != shape:
            raise StrokeError(f"the {name} map has shape {np.shape(a)}, the brain mask {shape}; resample it onto "
                              "the DSC grid first")
    if not voxel_ml > 0:
        raise StrokeError(f"voxel volume {voxel_ml!r} ml is not positive")
    cbf, cbv, tmax = (np.nan_to_num(np.asarray(a, dtype=np.float32)) for a in (cbf, cbv, tmax))
    adc_csf = np.zeros(shape, bool) if adc is None else brain & (np.nan_to_num(adc) > rules.adc_csf)
    if baseline is not None:
        baseline = np.nan_to_num(np.asarray(baseline, dtype=np.float32))
    normal, csf, ref_cbf, ref_cbv = _reference(cbf, cbv, tmax, brain, rules, baseline, adc_csf)
    tissue = brain & ~csf
    min_tmax = rules.min_tmax_ml / voxel_ml
    tmax6, gone6 = remove_small_components(tissue & (tmax > rules.tmax_hypoperfusion), min_tmax)
    tmax10, gone10 = remove_small_components(tissue & (tmax > rules.tmax_severe), min_tmax)
    if adc_map is not None:  # the ADC's own grid: its voxels as acquired, its voxel volume (module docstring, 4.)
        core_voxel_ml = adc_map.voxel_ml
        a = np.nan_to_num(adc_map.native)
        candidates = adc_map.from_dsc(brain, affine_lps) & (a > 0) & (a < rules.adc_core)
        core_counted, gone_core = remove_small_components(candidates, rules.min_core_ml / core_voxel_ml)
        core = adc_map.to_dsc(core_counted, affine_lps, shape)
        core_outside_tmax6 = core_counted & ~adc_map.from_dsc(tmax6, affine_lps)
        method = "adc"
    else:
        core_voxel_ml = voxel_ml
        if adc is not None:
            a = np.nan_to_num(np.asarray(adc, dtype=np.float32))
            candidates = brain & (a > 0) & (a < rules.adc_core)
            method = "adc"
        else:
            candidates = tissue & (cbf < rules.rcbf_core * ref_cbf) & _fill_holes(tmax6)
            method = "rcbf"
        core, gone_core = remove_small_components(candidates, rules.min_core_ml / voxel_ml)
        if method == "rcbf":
            tmax6 = tmax6 | core
        core_counted, core_outside_tmax6 = core, core & ~tmax6
    mismatch = tmax6 & ~core

    def ml(mask, per_voxel: float = voxel_ml) -> float:
        return round(float(mask.sum()) * per_voxel, 1)

    core_ml, tmax6_ml, tmax10_ml = ml(core_counted, core_voxel_ml), ml(tmax6), ml(tmax10)
    result = StrokeResult(
        core_method=method, core_ml=core_ml, tmax6_ml=tmax6_ml, tmax10_ml=tmax10_ml,
        mismatch_ml=round(tmax6_ml - core_ml, 1),
        mismatch_ratio=round(tmax6_ml / core_ml, 2) if core_ml > 0 else None,
        hir=round(tmax10_ml / tmax6_ml, 2) if tmax6_ml > 0 else None,
        core_outside_tmax6_ml=ml(core_outside_tmax6, core_voxel_ml), defuse3=defuse3(core_ml, tmax6_ml, rules),
        reference={"rule": f"medians over brain voxels with Tmax < {rules.tmax_normal:g} s and CBV >= "
                           f"{rules.rcbv_csf:g} x the reference CBV",
                   "cbf": round(ref_cbf, 4), "cbv": round(ref_cbv, 4), "voxels": int(normal.sum()),
                   "csf_background_ml": ml(csf)},
        removed_ml={"core_small_components": round(gone_core * core_voxel_ml, 1),
                    "tmax6_small_components": round(gone6 * voxel_ml, 1),
                    "tmax10_small_components": round(gone10 * voxel_ml, 1)},
        voxel_ml=round(voxel_ml, 6), core_voxel_ml=round(core_voxel_ml, 6), rules=rules,
        warnings=_quality(tmax, tissue, tmax6, rules),
        side=lesion_side(tmax6 | core, brain, affine_lps) if affine_lps is not None else None,
        masks=StrokeMasks(core, tmax6, tmax10, mismatch, csf, normal))
    if adc_map is not None:  # where the core was counted, and its volume as the SEG shows it
        result.reference["core_grid"] = {"series_uid": adc_map.series_uid, "shape": list(adc_map.native.shape),
                                         "voxel_ml": round(core_voxel_ml, 6), "core_on_dsc_grid_ml": ml(core)}
    log.info("stroke (%s core): core %.1f ml, Tmax>6 %.1f ml, Tmax>10 %.1f ml, mismatch %.1f ml", method, core_ml,
             tmax6_ml, tmax10_ml, result.mismatch_ml)
    return result
