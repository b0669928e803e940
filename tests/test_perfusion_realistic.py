"""The perfusion pipeline on the realistic studies (docs/studies.md): automatic AIF, VOF correction, maps and the
stroke volumes against the studies' ground truth.

Tissue medians are taken, fairly, in voxels the truth says are (nearly) pure normal grey or white matter: in the
truth's ``gm``/``wm`` mask, not in the ``vessel`` mask, true Tmax 0 (normal zone) and true CBF *and* CBV within 10 %
of the tissue's normal value (the truth maps carry each voxel's partial volume: a grey-matter voxel mixed with CSF
or white matter reads lower, so this keeps voxels at least ~85-90 % of the tissue).  The truth compared with is the
median of the truth maps over the same voxels.

Measured (full set), model-based deconvolution (the default, docs/perfusion.md) and, before it, oSVD:

=========  ======  =====================  =====================  ============  ===========================
patient    method  GM CBF / CBV / MTT     WM CBF / CBV / MTT     Tmax normal   Tmax>6 / Tmax>10 ml (core)
                                                                 GM / WM
=========  ======  =====================  =====================  ============  ===========================
stroke     model   55.2/55.5  4.02/4.17   21.9/25.3  1.96/2.03   0.9 / 1.0 s   135.7 / 0.0   (27.4)
                   4.38/4.51              5.37/4.79
stroke     oSVD    40.3/55.5  4.02/4.17   18.9/25.3  1.96/2.03   2.5 / 2.3 s   177.5 / 29.6  (27.4)
                   5.98/4.51              6.24/4.79
control    model   51.8/55.5  3.94/4.17   20.6/25.3  1.92/2.02   0.9 / 0.9 s   0.0 / 0.0     (0.0)
                   4.58/4.51              5.62/4.79
control    oSVD    38.1/55.5  3.94/4.17   18.0/25.3  1.92/2.02   2.5 / 2.3 s   8.8 / 0.0     (0.0)
                   6.21/4.51              6.43/4.79
=========  ======  =====================  =====================  ============  ===========================

Truth: core + penumbra 138.1 ml (tissue volumes; goal for Tmax > 6 s: within 10 % or 5 ml), core 31.8 ml; the truth's
own Tmax map on the DSC grid holds 153.4 ml above 6 s and 25.7 ml above 10 s (whole partial voxels; the core's true
Tmax is 10.4-10.6 s, just above 10).

Goals met and asserted: the AIF is arterial (contralateral MCA on the stroke study); CBV, CBF and MTT within 20 % in
GM and WM of both patients (model: CBF 0.81-0.99, MTT 0.97-1.17 of the truth; oSVD read CBF 0.69-0.75 and MTT
1.29-1.38: truncated SVD cannot follow the corner of the studies' exponential residue at t = 0, also with the true
AIF); Tmax > 6 s within 10 % of core + penumbra (135.7 for 138.1 ml; oSVD 177.5: its residue's maximum lies ~2.3 s
late at zero delay, which put part of the oligaemia above 6 s) and under 5 ml on the control (0.0; oSVD 8.8).

The ADC core is within the goal too (asserted): 27.4 ml against the truth's core 31.8 ml (tissue; 33.0 ml as the
DWI-grid mask).  It was 24.8 ml when the ADC was resampled to the coarser DSC grid before the threshold (a voxel then
counted only when its core fraction was above ~0.64 in grey matter, ~0.40 in white matter); it is counted on the
ADC's own grid now (docs/stroke.md).  The 4.4 ml still missing are cortical grey-matter core voxels mixed with a
little CSF: the template's grey matter holds ~6 % CSF (normal grey matter reads 898, not 800, on the ADC), and 6 %
CSF (bright at b0, dark at b1000) lifts a grey-matter core voxel from 520 to 620; 92 % of the missed core voxels are
grey matter, median ADC 759.  No ADC threshold sees that tissue.

Seen, not asserted: Tmax > 10 s reads 0.0 ml with the model (truth 25.7 ml): in the core (low flow, bolus dispersed
over 3 s) the model's Tmax is 9.0 s against 10.4, because a dispersed residue and a later undispersed one fit its
noisy curves alike (docs/perfusion.md, "Limits"); the penumbra reads 7.4 s against 8.5, still above 6.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from meshdcm.perfusion import analyse_series

TISSUES = ("gm", "wm")


def _truth(studies, patient: str) -> dict[str, np.ndarray]:
    folder, grid = studies.truth_folder(patient, "mr"), studies.truth(patient, "mr")["grids"]["dsc"]
    load = lambda e: np.asarray(nib.load(str(folder / e["file"])).dataobj).transpose(2, 1, 0)  # noqa: E731
    out = {k: load(e) for k, e in grid["maps"].items()}
    out.update({k: load(e).astype(bool) for k, e in grid["masks"].items()})
    for name in ("artery_left_fraction", "artery_right_fraction", "vein_fraction"):
        out[name] = np.asarray(nib.load(str(folder / "dsc" / f"{name}.nii.gz")).dataobj).transpose(2, 1, 0)
    return out


@pytest.fixture(scope="module", params=["stroke", "control"])
def analysed(request, realistic_studies, tmp_path_factory):
    patient = request.param
    s = realistic_studies
    result = analyse_series(s.series(patient, "mr", "dsc"), tmp_path_factory.mktemp(f"realistic_{patient}"),
                            adc=s.series(patient, "mr", "adc"), write_dicom=False, write_png_files=False,
                            write_nifti_files=False)
    truth = s.truth(patient, "mr")
    maps = _truth(s, patient)
    normal = {(t["tissue"]): t for t in truth["tissues"] if t["zone"] == "normal"}
    medians = {}
    for tissue in TISSUES:
        n = normal[tissue]
        pure = (maps[tissue] & ~maps["vessel"] & (np.abs(maps["Tmax"]) < 0.1)
                & (np.abs(maps["CBF"] / n["cbf"] - 1) < 0.1) & (np.abs(maps["CBV"] / n["cbv"] - 1) < 0.1))
        assert pure.sum() > 1000
        medians[tissue] = {k: (float(np.nanmedian(result.maps.maps[k][pure])), float(np.median(maps[k][pure])))
                           for k in ("CBF", "CBV", "MTT", "Tmax")}
    print(f"\n{patient}: AIF x{result.aif_scale:.2f} ({result.partial_volume_correction['area_method']}); "
          + "; ".join(f"{t} " + " ".join(f"{k} {e:.2f}/{v:.2f}" for k, (e, v) in m.items()) for t, m in medians.items())
          + f"; stroke core {result.stroke['core_ml']} ml, Tmax>6 {result.stroke['tmax6_ml']} ml, "
            f"Tmax>10 {result.stroke['tmax10_ml']} ml")
    return patient, result, truth, maps, medians


def test_the_automatic_aif_is_arterial_and_precedes_the_tissue(analysed):
    patient, result, _, maps, medians = analysed
    voxels = np.asarray(result.aif_voxels)
    artery = maps["artery_left_fraction"] + maps["artery_right_fraction"]
    assert len(voxels) >= 5
    assert all(artery[tuple(v)] >= 0.1 and maps["vein_fraction"][tuple(v)] == 0 for v in voxels)
    if patient == "stroke":  # a left M1 occlusion: the right (contralateral, on time) MCA
        assert all(maps["artery_right_fraction"][tuple(v)] > 0 for v in voxels)
    for tissue in TISSUES:  # the AIF before the tissue: on time (model deconvolution: no SVD offset), not negative
        assert -0.5 < medians[tissue]["Tmax"][0] < 1.5, (tissue, medians[tissue]["Tmax"])
    pvc = result.partial_volume_correction
    assert pvc["applied"] and pvc["vof_saturated"] and pvc["area_method"] == "tail"
    assert all(maps["vein_fraction"][tuple(v)] >= 0.9 for v in result.vof_voxels)  # the sinus, not its edge


@pytest.mark.parametrize("tissue", TISSUES)
def test_cbv_within_20_percent_of_the_truth(analysed, tissue):
    est, true = analysed[4][tissue]["CBV"]
    assert est == pytest.approx(true, rel=0.2), (analysed[0], tissue, est, true)


@pytest.mark.parametrize("tissue", TISSUES)
def test_cbf_and_mtt_within_20_percent_of_the_truth(analysed, tissue):
    for k in ("CBF", "MTT"):
        est, true = analysed[4][tissue][k]
        assert est == pytest.approx(true, rel=0.2), (analysed[0], tissue, k, est, true)


def _within(measured: float, true: float) -> bool:
    return abs(measured - true) <= max(0.1 * true, 5.0)


def test_stroke_volumes_what_is_comparable(analysed):
    patient, result, truth, _, _ = analysed
    st = result.stroke
    assert st["core_method"] == "adc"
    if patient == "control":
        assert st["core_ml"] < 5
        assert st["tmax6_ml"] < 15
        return
    vol = truth["lesion"]["volumes_ml"]
    assert 0.9 * (vol["core"] + vol["penumbra"]) <= st["tmax6_ml"] < vol["core"] + vol["penumbra"] + vol["oligaemia"]
    assert 0.8 * vol["core"] <= st["core_ml"] <= 1.1 * vol["core"]


def test_the_adc_core_within_10_percent_or_5_ml(analysed):
    """The ADC core, measured on the ADC's own grid (docs/stroke.md), against the truth's core tissue volume; the
    control patient has none."""
    patient, result, truth, _, _ = analysed
    st = result.stroke
    assert st["core_method"] == "adc"
    if patient == "control":
        assert st["core_ml"] < 5
        return
    vol = truth["lesion"]["volumes_ml"]
    assert _within(st["core_ml"], vol["core"]), (st["core_ml"], vol["core"])


def test_tmax_volume_within_10_percent_or_5_ml(analysed):
    patient, result, truth, _, _ = analysed
    st = result.stroke
    if patient == "control":
        assert st["tmax6_ml"] < 5, st["tmax6_ml"]
        return
    vol = truth["lesion"]["volumes_ml"]
    assert _within(st["tmax6_ml"], vol["core"] + vol["penumbra"]), (st["tmax6_ml"], vol)


@pytest.fixture(scope="module", params=["stroke", "control"])
def without_adc(request, realistic_studies, tmp_path_factory):
    """The DSC series alone (a study without DWI, or a DSC series that came before its ADC): the core by rCBF."""
    patient = request.param
    result = analyse_series(realistic_studies.series(patient, "mr", "dsc"), tmp_path_factory.mktemp(f"rcbf_{patient}"),
                            write_dicom=False, write_png_files=False, write_nifti_files=False)
    return patient, result.stroke, realistic_studies.truth(patient, "mr")["lesion"]


def test_the_rcbf_core_without_adc_within_10_percent_or_5_ml(without_adc):
    """rCBF < 30 % is taken on oSVD's flow whatever the maps' method (docs/stroke.md, "rCBF core"): on the model's
    flow, which reads dispersed penumbra lower, the core came out 64.6 ml, twice the truth's 31.8 (33.0 ml now)."""
    patient, st, lesion = without_adc
    assert st["core_method"] == "rcbf"
    if patient == "control":
        assert st["core_ml"] < 5 and st["tmax6_ml"] < 5
        return
    vol = lesion["volumes_ml"]
    assert _within(st["core_ml"], vol["core"]), (st["core_ml"], vol["core"])
    assert _within(st["tmax6_ml"], vol["core"] + vol["penumbra"]), (st["tmax6_ml"], vol)
