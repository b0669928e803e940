"""The web node's view of a fetch, fed the answers in the orders its worker threads can see them."""

from __future__ import annotations

import itertools
import random

from pydicom.dataset import Dataset

from meshdcm import Message, Node
from meshdcm.web.hub import Hub
from meshdcm.web.view import MeshView

STUDY = "1.2.826.0.1.3680043.8.498.1"
SERIES = ("1.2.826.0.1.3680043.8.498.2", "1.2.826.0.1.3680043.8.498.3")


def fetch_answers(per_series: int = 5) -> list[Message]:
    """What a pacs node sends for one get.study: progress per instance, then stored.study."""
    total = per_series * len(SERIES)
    answers, done = [], itertools.count(1)
    for series in SERIES:
        for _ in range(per_series):
            ds = Dataset()
            ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, series
            answers.append(Message("progress.study", ds, meta={"done": next(done), "total": total}))
    ds = Dataset()
    ds.StudyInstanceUID = STUDY
    answers.append(Message("stored.study", ds, meta={"instances": total, "complete": True}))
    return answers


def test_a_fetch_ends_counted_whole_whatever_order_the_workers_saw_its_answers():
    view = MeshView(Node("web-view-test", mesh="test-web-view"), Hub())
    for seed in range(20):
        view.studies.clear()
        view.study(STUDY).state = "fetching"
        answers = fetch_answers()
        random.Random(seed).shuffle(answers)
        for msg in answers:
            view.on_message(msg)
        study = view.study(STUDY)
        assert (study.state, study.done, study.total) == ("complete", 10, 10), seed


def test_perfusion_measurements_are_offered_per_tissue_with_units():
    """The report offers a map's median per tissue (and the hypoperfused volume) rather than a brain-mask mean."""
    view = MeshView(Node("web-view-test", mesh="test-web-view"), Hub())
    tissues = {"GM": {"CBF": 55.2, "CBV": 4.4, "MTT": 4.8, "Tmax": 2.0, "voxels": 2600, "volume_ml": 42.7},
               "WM": {"CBF": 22.1, "CBV": 1.9, "MTT": 5.2, "Tmax": 2.2, "voxels": 3400, "volume_ml": 55.6},
               "hypoperfused": {"CBF": 24.4, "CBV": 2.4, "MTT": 5.1, "Tmax": 10.1, "voxels": 1374, "volume_ml": 22.3}}
    summary = {"region": "parenchyma", "mean_CBF": 40.0, "median_CBF": 38.0, "mean_Tmax": 3.5, "median_Tmax": 2.1,
               "tissues": tissues}
    for number, (name, unit) in enumerate((("CBF", "ml/100g/min"), ("Tmax", "s"))):
        ds = Dataset()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, f"1.2.826.0.1.3680043.8.498.{10 + number}"
        ds.SeriesDescription, ds.ImageType = f"{name} (OSVD)", ["DERIVED", "SECONDARY", name.upper()]
        view.on_message(Message("stored.series", ds, meta={"derived_from": SERIES[0], "map": name, "unit": unit,
                                                           "method": "osvd", "summary": summary, "instances": 4}))
    got = {m["label"]: (m["value"], m["unit"]) for m in view.measurements(STUDY)}
    assert got["CBF GM median"] == (55.2, "ml/100g/min") and got["CBF WM median"] == (22.1, "ml/100g/min")
    assert got["CBF hypoperfused median"] == (24.4, "ml/100g/min") and got["Tmax GM median"] == (2.0, "s")
    assert got["hypoperfused volume (Tmax > 6 s)"] == (22.3, "ml")
    assert got["CBF mean (parenchyma)"] == (40.0, "ml/100g/min")
    assert not any("brain mask" in label for label in got)
    # once the stroke analysis reported on the DSC series its cleaned Tmax > 6 s volume is the one figure offered
    # (in the AI findings); the map summary's region volume, a few ml apart, is no longer offered beside it
    sr = Dataset()
    sr.StudyInstanceUID, sr.SeriesInstanceUID = STUDY, "1.2.826.0.1.3680043.8.498.20"
    sr.SeriesDescription, sr.Modality = "Stroke perfusion measurements", "SR"
    view.on_message(Message("stored.series", sr, meta={"derived_from": SERIES[0], "stroke": "sr", "instances": 1}))
    got = {m["label"]: (m["value"], m["unit"]) for m in view.measurements(STUDY)}
    assert "hypoperfused volume (Tmax > 6 s)" not in got and got["Tmax GM median"] == (2.0, "s")


def _series(topic: str, uid: str, description: str, **meta) -> Message:
    ds = Dataset()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SeriesDescription, ds.Modality = STUDY, uid, description, "MR"
    return Message(topic, ds, meta=meta)


def test_derived_series_say_what_they_are_and_held_back_series_why():
    """Renditions, registrations (with the reference named, or only in the derivation text of an older register
    node) and reformats in words; the register node's reason while a series waits, gone once it is registered."""
    view = MeshView(Node("web-view-test", mesh="test-web-view"), Hub())
    t1, t2, reg, cor = (f"1.2.826.0.1.3680043.8.498.{n}" for n in (11, 12, 13, 14))
    reason = "waiting for a reference series: none of the series is a 3D volume with <= 1.5 mm slices"
    for msg in (_series("stored.series", t1, "T1 3D", instances=3), _series("stored.series", t2, "T2 axial"),
                _series("waiting.series", t2, "", reason=reason, waiting_for="reference"),
                _series("stored.series.nii", t2, "T2 axial", derived_from=t2, files=["2_T2_axial.nii.gz"])):
        view.on_message(msg)
    study = view.study(STUDY).summary()
    assert [(n["reason"], n["series"]) for n in study["notes"]] == [(reason, ["T2 axial"])]
    assert [(r["provenance"], r["files"]) for r in study["renditions"]] == [("NIfTI rendition of T2 axial",
                                                                             ["2_T2_axial.nii.gz"])]
    view.on_message(_series("stored.series", reg, "T2 axial [reg]", derived_from=t2,
                            derivation=f"registered onto {t1} (SimpleITK, 2.0 s)"))  # no `reference`: older node
    view.on_message(_series("stored.series", cor, "T1 3D COR 3mm", derived_from=t1, derivation="coronal reformat 3 mm"))
    study = view.study(STUDY).summary()
    provenance = {s["uid"]: s["provenance"] for s in study["series"]}
    assert provenance == {t1: "", t2: "", reg: "registered to T1 3D, from T2 axial",
                          cor: "coronal reformat 3 mm of T1 3D"}
    assert study["notes"] == []


def test_a_study_reached_by_a_link_names_its_modalities_from_its_series():
    """Never found by a search (no ModalitiesInStudy), the study page still says "CT" or "MR, SR", never nothing."""
    view = MeshView(Node("web-view-test", mesh="test-web-view"), Hub())
    for series, modality in zip(SERIES, ("MR", "SR"), strict=True):
        ds = Dataset()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = STUDY, series, modality
        view.on_message(Message("stored.series", ds, meta={"instances": 1}))
    assert view.study(STUDY).summary()["info"]["ModalitiesInStudy"] == "MR\\SR"
    view.study(STUDY).info["ModalitiesInStudy"] = "MR"  # what a search found is kept
    assert view.study(STUDY).summary()["info"]["ModalitiesInStudy"] == "MR"
