"""The realistic studies (meshdcm.studies, docs/studies.md): a real brain, a stroke of known size and perfusion,
headers a PACS and the DSC reader accept, and a cache that makes them once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom import config as pydicom_config

from meshdcm.perfusion.series import is_dsc_series, load_dsc_series
from meshdcm.studies import INSTALL_HINT, StudiesError, StudySet, cache, studies_folder
from meshdcm.studies.template import template_files


def _nifti(folder: Path, entry: dict) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(folder / entry["file"]))
    return np.asarray(img.dataobj), np.asarray(img.header.get_zooms()[:3])


def _truth_maps(studies: StudySet, patient: str = "stroke") -> dict[str, np.ndarray]:
    folder, grid = studies.truth_folder(patient, "mr"), studies.truth(patient, "mr")["grids"]["dsc"]
    out = {k: _nifti(folder, e)[0].transpose(2, 1, 0) for k, e in grid["maps"].items()}
    out.update({k: _nifti(folder, e)[0].transpose(2, 1, 0).astype(bool) for k, e in grid["masks"].items()})
    return out


# --- the brain and the stroke -----------------------------------------------------------------------------------

def test_the_brain_is_an_adult_brain(small_studies):
    stroke, control = (small_studies.truth(p, "mr")["anatomy_ml"] for p in ("stroke", "control"))
    for a in (stroke, control):
        assert 1100 <= a["brain"] <= 1500 and 100 <= a["csf"] <= 400
        assert 0.5 <= a["gm"] / a["brain"] <= 0.65  # grey matter 55-60 % of an adult brain
    assert control["brain"] < stroke["brain"]  # a smaller head (scale 0.90 against 0.92)


def test_lesion_volumes_are_the_saved_masks(realistic_studies):
    truth = realistic_studies.truth("stroke", "mr")
    volumes = truth["lesion"]["volumes_ml"]
    assert 20 <= volumes["core"] <= 45 and 80 <= volumes["penumbra"] <= 160  # a thrombectomy candidate
    assert truth["lesion"]["mismatch_ratio"] == pytest.approx((volumes["core"] + volumes["penumbra"]) / volumes["core"],
                                                              rel=1e-3)
    folder = realistic_studies.truth_folder("stroke", "mr")
    for grid in ("dsc", "dwi", "t1"):
        for zone in ("core", "penumbra"):
            entry = truth["grids"][grid]["masks"][zone]
            mask, zooms = _nifti(folder, entry)
            assert mask.sum() * zooms.prod() / 1000 == pytest.approx(entry["volume_ml"], abs=1e-3)
            assert entry["volume_ml"] == pytest.approx(volumes[zone], rel=0.15)  # masks count partial voxels whole
    ct = realistic_studies.truth("stroke", "ct")
    assert ct["lesion"]["volumes_ml"] == volumes  # one patient, one stroke, seen by both scanners
    assert ct["grids"]["ct"]["masks"]["core"]["volume_ml"] == pytest.approx(volumes["core"], rel=0.15)
    control = realistic_studies.truth("control", "mr")
    assert control["lesion"] is None and control["grids"]["dsc"]["masks"]["core"]["voxels"] == 0


def test_true_tissue_values(small_studies):
    tissues = {(t["tissue"], t["zone"]): t for t in small_studies.truth("stroke", "mr")["tissues"]}
    gm, wm = tissues[("gm", "normal")], tissues[("wm", "normal")]
    assert gm["cbf"] == pytest.approx(60, abs=5) and 4 <= gm["cbv"] <= 5 and gm["mtt"] == pytest.approx(60 * gm["cbv"] / gm["cbf"])
    assert wm["cbf"] == pytest.approx(25, abs=3) and wm["cbv"] == pytest.approx(2, abs=0.3)
    for t in ("gm", "wm"):
        core, penumbra, normal = (tissues[(t, z)] for z in ("core", "penumbra", "normal"))
        assert core["cbf"] < 0.3 * normal["cbf"] and 450 <= core["adc"] <= 550
        assert penumbra["tmax"] > 6 and penumbra["cbf"] < normal["cbf"] and penumbra["adc"] == normal["adc"]
        assert tissues[(t, "oligaemia")]["tmax"] < 6 and normal["tmax"] == 0
    constants = small_studies.truth("stroke", "mr")["constants"]
    from meshdcm.perfusion.constants import KH, RHO
    assert constants == {"kH": KH, "rho": RHO}


def test_true_maps_on_the_dsc_grid(realistic_studies):
    m = _truth_maps(realistic_studies)
    normal = m["brain"] & ~m["core"] & ~m["penumbra"]
    assert np.median(m["CBF"][m["core"]]) < 0.3 * np.median(m["CBF"][normal])
    assert np.median(m["Tmax"][m["penumbra"]]) > 6 and np.median(m["Tmax"][normal]) < 2
    assert np.allclose(m["MTT"][normal], 60 * m["CBV"][normal] / m["CBF"][normal], rtol=1e-4)
    control = _truth_maps(realistic_studies, "control")
    assert not control["core"].any() and np.percentile(control["Tmax"][control["brain"]], 99) < 1


# --- the series ---------------------------------------------------------------------------------------------------

def test_clinical_matrices_and_headers(realistic_studies):
    def first(key, study="mr"):
        return pydicom.dcmread(next(iter(sorted(realistic_studies.series("stroke", study, key).glob("*.dcm")))),
                               stop_before_pixels=True)

    t1, dwi, adc, dsc, ct = first("t1"), first("dwi"), first("adc"), first("dsc"), first("ct_thin", "ct")
    assert (t1.Rows, t1.Columns, float(t1.SliceThickness), t1.MRAcquisitionType) == (256, 256, 1.0, "3D")
    assert float(t1.MagneticFieldStrength) == 3 and float(t1.RepetitionTime) > float(t1.EchoTime) > 0 and t1.FlipAngle
    assert (dsc.Rows, int(dsc.NumberOfTemporalPositions), float(dsc.EchoTime), float(dsc.RepetitionTime)) == (
        128, 60, 30.0, 1500.0)
    assert dwi.DiffusionBValue == 0 and "ADC" in adc.ImageType and adc.ImageType[0] == "DERIVED"
    assert (ct.Rows, ct.Columns, ct.RescaleIntercept, ct.KVP, ct.ConvolutionKernel) == (512, 512, -1024, 120, "H30s")
    assert (ct.WindowCenter[0], ct.WindowWidth[0]) == (40, 80)
    counts = {s["key"]: s["instances"] for s in realistic_studies.study("stroke", "mr")["series"]}
    assert counts == {"t1": 176, "t2": 25, "flair": 25, "dwi": 50, "adc": 25, "dsc": 1200}
    b_values = {pydicom.dcmread(p, stop_before_pixels=True).DiffusionBValue
                for p in sorted(realistic_studies.series("stroke", "mr", "dwi").glob("*.dcm"))[24:26]}
    assert b_values == {0.0, 1000.0}


def test_the_layout_a_pacs_holds(small_studies):
    studies = small_studies.manifest["studies"]
    assert [(s["patient"], s["Modality"]) for s in studies] == [("stroke", "CT"), ("stroke", "MR"), ("control", "MR")]
    assert len({s["AccessionNumber"] for s in studies}) == 3 and len({s["StudyInstanceUID"] for s in studies}) == 3
    headers = [pydicom.dcmread(next(iter(sorted((small_studies.root / s["folder"]).glob("*.dcm")))),
                               stop_before_pixels=True) for e in studies for s in e["series"]]
    by_patient = {}
    for h in headers:
        by_patient.setdefault(h.PatientID, set()).add((str(h.PatientName), h.PatientBirthDate, h.PatientSex))
    assert all(len(v) == 1 for v in by_patient.values()) and len(by_patient) == 2
    numbers = [(h.StudyInstanceUID, int(h.SeriesNumber)) for h in headers]
    assert len(numbers) == len(set(numbers))  # series numbers unique within each study
    assert all(h.StudyDate and h.AccessionNumber and h.StudyDescription and h.SeriesDescription for h in headers)
    assert len({h.FrameOfReferenceUID for h in headers}) == 3  # each scanner session its own


def test_dicom_is_valid_when_read_strictly(small_studies, monkeypatch):
    monkeypatch.setattr(pydicom_config.settings, "reading_validation_mode", pydicom_config.RAISE)
    files = [sorted(folder.glob("*.dcm"))[i] for entry in small_studies.manifest["studies"] for s in entry["series"]
             for folder in [small_studies.root / s["folder"]] for i in (0, -1)]
    for path in files:
        ds = pydicom.dcmread(path)
        for elem in ds.iterall():
            elem.value  # noqa: B018 - every value decoded, validated as it is
        assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
    dcmdump = Path("/usr/bin/dcmdump")
    if not dcmdump.exists():
        pytest.skip("dcmdump (DCMTK) is not installed")
    for path in files[::3]:
        r = subprocess.run([str(dcmdump), "-q", str(path)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "E:" not in r.stderr and "W:" not in r.stderr, (path, r.stderr)


def test_the_dsc_reader_accepts_the_dsc_series(small_studies, realistic_studies):
    series = load_dsc_series(small_studies.series("stroke", "mr", "dsc"))
    assert series.signal.shape == (40, 8, 32, 32) and series.te == pytest.approx(0.030) and series.dt == pytest.approx(1.5)
    truth = small_studies.truth("stroke", "mr")
    assert np.allclose(series.affine_lps, np.array(truth["grids"]["dsc"]["affine_lps"]), atol=1e-3)
    assert truth["dsc"]["curves"]["times_s"] == pytest.approx(list(series.times), abs=1e-3)
    first_slices = [pydicom.dcmread(p, stop_before_pixels=True)  # slice 1 of each of the 60 time points
                    for p in sorted(realistic_studies.series("stroke", "mr", "dsc").glob("*.dcm"))[::20]]
    assert is_dsc_series(first_slices)
    assert [int(h.TemporalPositionIdentifier) for h in first_slices] == list(range(1, 61))
    times = [int(t[:2]) * 3600 + int(t[2:4]) * 60 + float(t[4:]) for t in (str(h.AcquisitionTime) for h in first_slices)]
    assert np.allclose(np.diff(times), 1.5, atol=1e-3)  # one per TR


def test_the_bolus_drops_the_signal_as_in_clinical_series(realistic_studies):
    series = load_dsc_series(realistic_studies.series("stroke", "mr", "dsc"))
    m = _truth_maps(realistic_studies)
    facts = realistic_studies.truth("stroke", "mr")["dsc"]
    base = series.signal[1:facts["baseline_frames"] - 1].mean(axis=0)
    drop = 1 - series.signal.min(axis=0) / np.maximum(base, 1)
    assert 0.30 <= facts["signal_drop"]["gm"] <= 0.40
    assert 0.28 <= np.median(drop[m["CBF"] >= 50]) <= 0.40  # voxels of mostly normal grey matter
    assert 0.12 <= np.median(drop[m["wm"] & (m["CBF"] > 20)]) <= 0.25
    sigma = facts["noise_sigma"]
    assert np.median(base[m["brain"]] / sigma) >= 50  # SNR 50-100 at baseline
    assert m["artery"].any() and np.all(series.signal.min(axis=0)[m["artery"]] < 6 * sigma)  # at the noise floor
    assert 0.3 <= facts["vessel_fraction_max"]["artery_right"] <= 0.5 and facts["vessel_fraction_max"]["vein"] > 0.95
    areas = facts["area_in_series_mmol_s_l"]
    assert areas["vof"] == pytest.approx(areas["aif"], rel=0.06)  # the sinus carries what the artery brought


# --- template and cache -------------------------------------------------------------------------------------------

def test_a_missing_template_names_the_install_command(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(StudiesError, match="pip install --no-deps nilearn==0.14.1"):
        template_files()
    assert INSTALL_HINT == "pip install --no-deps nilearn==0.14.1"


def test_the_cache_makes_a_set_once(tmp_path, monkeypatch):
    made = []

    def fake_make(out, variant):
        made.append(variant)
        Path(out).mkdir(parents=True)
        (Path(out) / "manifest.json").write_text(json.dumps({"variant": variant, "studies": []}))

    monkeypatch.setattr(cache, "make_studies", fake_make)
    first = studies_folder("small", root=tmp_path)
    second = studies_folder("small", root=tmp_path)
    assert first == second and made == ["small"] and first.parent.name == cache.version_key()
    assert sorted(p.name for p in first.parent.iterdir()) == [".small.lock", "small"]  # no partial set left


def test_a_failed_make_leaves_no_set(tmp_path, monkeypatch):
    def failing(out, variant):
        Path(out).mkdir(parents=True)
        raise StudiesError("the template is missing")

    monkeypatch.setattr(cache, "make_studies", failing)
    with pytest.raises(StudiesError):
        studies_folder("small", root=tmp_path)
    assert [p.name for p in (tmp_path / cache.version_key()).iterdir()] == [".small.lock"]


def test_the_command_line_prints_the_cached_set(small_studies):
    r = subprocess.run([sys.executable, "-m", "meshdcm.cli.main", "studies", "path", "--variant", "small"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and Path(r.stdout.strip()) == small_studies.root
