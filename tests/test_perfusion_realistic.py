"""The perfusion pipeline on the realistic studies (docs/studies.md): automatic AIF, VOF correction, maps and the
stroke volumes against the studies' ground truth.

Tissue medians are taken, fairly, in voxels the truth says are (nearly) pure normal grey or white matter: in the
truth's ``gm``/``wm`` mask, not in the ``vessel`` mask, true Tmax 0 (normal zone) and true CBF *and* CBV within 10 %
of the tissue's normal value (the truth maps carry each voxel's partial volume: a grey-matter voxel mixed with CSF
or white matter reads lower, so this keeps voxels at least ~85-90 % of the tissue).  The truth compared with is the
median of the truth maps over the same voxels.

Measured (full set, oSVD; before this fix the automatic AIF took the sinus' partial-volume edge, Tmax -3.8 s,
Tmax > 6 s = 0 ml):

=========  =====================  =====================  ====================
patient    GM CBF / CBV / MTT     WM CBF / CBV / MTT     Tmax normal GM / WM
=========  =====================  =====================  ====================
stroke     40.3/55.5  4.02/4.17   18.9/25.3  1.96/2.03   2.5 / 2.3 s
           5.98/4.51              6.24/4.79
control    38.1/55.5  3.94/4.17   18.0/25.3  1.92/2.02   2.5 / 2.3 s
           6.21/4.51              6.43/4.79
=========  =====================  =====================  ====================

Goals met and asserted: the AIF is arterial (contralateral MCA on the stroke study), CBV within 20 % in GM and WM.
Goals NOT met (asserted as strict xfail so that a fix shows up):

- CBF is 0.69-0.75 of the truth and MTT 1.29-1.38 of it, in GM and WM of both patients.  This is the deconvolution,
  not the AIF: with the *true* arterial curve given by hand, oSVD gives GM CBF 37.6/55.5 and MTT 6.6/4.5 on the stroke
  study (cSVD 35.6, sSVD 33.0).  The studies' tissue residue is exponential (docs/studies.md), whose corner at t = 0
  truncated SVD cannot follow (docs/perfusion.md: oSVD 0.75 of the truth with an exponential residue, noise-free).
- Stroke volumes: the ADC core is now within the goal (asserted): 27.4 ml against the truth's core 31.8 ml (tissue;
  33.0 ml as the DWI-grid mask).  It was 24.8 ml when the ADC was resampled to the coarser DSC grid before the
  threshold (a voxel then counted only when its core fraction was above ~0.64 in grey matter, ~0.40 in white matter);
  it is counted on the ADC's own grid now (docs/stroke.md).  The 4.4 ml still missing are cortical grey-matter core
  voxels mixed with a little CSF: the template's grey matter holds ~6 % CSF (normal grey matter reads 898, not 800,
  on the ADC), and 6 % CSF (bright at b0, dark at b1000) lifts a grey-matter core voxel from 520 to 620; 92 % of the
  missed core voxels are grey matter, median ADC 759.  No ADC threshold sees that tissue.  Tmax > 6 s 177.5 ml against core + penumbra 138.1 ml: the oligaemia (true Tmax 4.1 s,
  216 ml) is partly above 6 s because the SVD residue's peak lies ~2.3 s late at zero delay (docs/perfusion.md,
  "Tmax offset"; normal tissue reads 2.3-2.5 s).  What is comparable is asserted: Tmax > 6 s holds at least 90 % of
  core + penumbra and less than core + penumbra + oligaemia; the ADC core is between 80 % and 110 % of the truth's.
- Control: Tmax > 6 s 8.8 ml (goal < 5 ml; the same offset, noisy white-matter voxels); core 0.0 ml (met).
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
          + f"; stroke core {result.stroke['core_ml']} ml, Tmax>6 {result.stroke['tmax6_ml']} ml")
    return patient, result, truth, maps, medians


def test_the_automatic_aif_is_arterial_and_precedes_the_tissue(analysed):
    patient, result, _, maps, medians = analysed
    voxels = np.asarray(result.aif_voxels)
    artery = maps["artery_left_fraction"] + maps["artery_right_fraction"]
    assert len(voxels) >= 5
    assert all(artery[tuple(v)] >= 0.1 and maps["vein_fraction"][tuple(v)] == 0 for v in voxels)
    if patient == "stroke":  # a left M1 occlusion: the right (contralateral, on time) MCA
        assert all(maps["artery_right_fraction"][tuple(v)] > 0 for v in voxels)
    for tissue in TISSUES:  # the AIF before the tissue: Tmax at zero delay is the SVD's ~2 s offset, not negative
        assert 0.5 < medians[tissue]["Tmax"][0] < 3.0, (tissue, medians[tissue]["Tmax"])
    pvc = result.partial_volume_correction
    assert pvc["applied"] and pvc["vof_saturated"] and pvc["area_method"] == "tail"
    assert all(maps["vein_fraction"][tuple(v)] >= 0.9 for v in result.vof_voxels)  # the sinus, not its edge


@pytest.mark.parametrize("tissue", TISSUES)
def test_cbv_within_20_percent_of_the_truth(analysed, tissue):
    est, true = analysed[4][tissue]["CBV"]
    assert est == pytest.approx(true, rel=0.2), (analysed[0], tissue, est, true)


@pytest.mark.xfail(strict=True, reason="truncated SVD under-estimates CBF with the studies' exponential residue "
                                       "(0.69-0.75 of the truth, also with the true AIF); see the module docstring")
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
        assert st["tmax6_ml"] < 15  # goal < 5 ml: 8.8 measured (module docstring)
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


@pytest.mark.xfail(strict=True, reason="ADC core under-counts partial-volume voxels and Tmax > 6 s takes in part of "
                                       "the oligaemia (SVD Tmax offset); control Tmax > 6 s 8.8 ml; module docstring")
def test_stroke_volumes_within_10_percent_or_5_ml(analysed):
    patient, result, truth, _, _ = analysed
    st = result.stroke
    if patient == "control":
        assert st["core_ml"] < 5 and st["tmax6_ml"] < 5
        return
    vol = truth["lesion"]["volumes_ml"]
    assert _within(st["core_ml"], vol["core"]), (st["core_ml"], vol["core"])
    assert _within(st["tmax6_ml"], vol["core"] + vol["penumbra"]), (st["tmax6_ml"], vol)
