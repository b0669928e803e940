"""The index contract: every available backend answers the same way (embedded SQLite always; MongoDB when
MESHDCM_TEST_MONGO_URI names a server, else skipped saying so)."""

from __future__ import annotations

import uuid

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from index_fixtures import MONGO_SKIP, header, message, mongo_uri, query, sr_report
from meshdcm.index import Index, SqliteBackend, report_text


@pytest.fixture(params=["sqlite", "mongodb"])
def index(request, tmp_path):
    if request.param == "sqlite":
        idx = Index(SqliteBackend(tmp_path / "index.sqlite3"))
        yield idx
        idx.close()
        return
    uri = mongo_uri()
    if not uri:
        pytest.skip(MONGO_SKIP)
    from meshdcm.index.mongo import MongoBackend

    db = f"meshdcm_test_{uuid.uuid4().hex[:10]}"
    backend = MongoBackend(uri, database=db)
    yield Index(backend)
    backend.client.drop_database(db)
    backend.close()


def patient_with_studies(index, n=3, name="DOE^JANE", pid="P1"):
    studies = []
    for i in range(n):
        ds = header(patient=name, pid=pid, date=f"2024{1 + i // 28:02d}{1 + i % 28:02d}")
        index.record(message("stored.series", ds, {"uris": [f"meshdcm://n/store/{i}"], "instances": 3}), "pacs")
        studies.append(ds)
    return studies


def test_find_studies_matches_like_cfind(index):
    studies = patient_with_studies(index)
    patient_with_studies(index, 2, name="ROE^RICHARD", pid="P2")
    q = query(PatientName="doe*", StudyInstanceUID="", StudyDate="", StudyDescription="", PatientID="")
    found = index.find("STUDY", q)
    assert [f.StudyInstanceUID for f in found] == [s.StudyInstanceUID for s in studies]  # oldest study first
    assert all(f.PatientID == "P1" and f.StudyDescription == "MR brain" and f.QueryRetrieveLevel == "STUDY"
               for f in found)
    assert "SeriesDescription" not in found[0]  # only the keys asked for
    assert len(index.find("STUDY", query(PatientID="P2", StudyInstanceUID=""))) == 2
    ranged = index.find("STUDY", query(PatientID="P1", StudyDate="20240102-20240103", StudyInstanceUID=""))
    assert [f.StudyDate for f in ranged] == ["20240102", "20240103"]
    assert len(index.find("STUDY", query(StudyDate="-20240101", StudyInstanceUID=""))) == 2
    assert index.find("STUDY", query(PatientName="D?E^JANE", StudyInstanceUID=""))
    assert index.find("STUDY", query(PatientName="NOBODY*", StudyInstanceUID="")) == []
    one = index.find("STUDY", query(StudyInstanceUID=studies[1].StudyInstanceUID, AccessionNumber=""))
    assert len(one) == 1 and one[0].AccessionNumber == studies[1].AccessionNumber


def test_find_series_and_modalities_in_study(index):
    study = header(modality="MR").StudyInstanceUID
    for modality, description in (("MR", "T1"), ("MR", "DSC perf"), ("CT", "head")):
        index.record(message("stored.series", header(study=study, modality=modality, description=description)), "p")
    found = index.find("SERIES", query(StudyInstanceUID=study, SeriesInstanceUID="", Modality="MR",
                                       SeriesDescription=""))
    assert sorted(f.SeriesDescription for f in found) == ["DSC perf", "T1"]
    assert all(f.StudyInstanceUID == study for f in found)
    perf = index.find("SERIES", query(StudyInstanceUID=study, SeriesDescription="*perf*", SeriesInstanceUID=""))
    assert [f.SeriesDescription for f in perf] == ["DSC perf"]
    studies = index.find("STUDY", query(StudyInstanceUID=study, ModalitiesInStudy="", NumberOfStudyRelatedSeries=""))
    assert list(studies[0].ModalitiesInStudy) == ["CT", "MR"] and studies[0].NumberOfStudyRelatedSeries == 3
    assert index.find("STUDY", query(PatientID="P1", ModalitiesInStudy="CT", StudyInstanceUID=""))
    assert index.find("STUDY", query(PatientID="P1", ModalitiesInStudy="US", StudyInstanceUID="")) == []


def test_a_found_study_is_known_and_an_empty_answer_never_erases(index):
    ds = header()
    index.record(message("stored.series", ds), "pacs")
    answer = Dataset()
    answer.StudyInstanceUID = ds.StudyInstanceUID
    answer.PatientName = ds.PatientName
    answer.StudyDescription = ""  # a PACS that does not know it
    index.record(message("found.study", answer, {"pacs": "main"}), "pacs")
    (doc,) = index.documents("study")
    assert doc["dicom"]["00081030"]["Value"] == ["MR brain"] and doc["meta"]["pacs"] == "main"


def test_the_same_message_twice_changes_nothing(index):
    ds = header()
    msg = message("stored.series", ds, {"uris": ["meshdcm://a/b"], "instances": 3})
    assert index.record(msg, "pacs") is True
    before = {kind: index.documents(kind) for kind in ("study", "series")}, index.counts(), \
        index.timeline(ds.StudyInstanceUID)
    assert index.record(msg, "pacs") is False  # same message id: a replay
    assert index.record(message("stored.series", ds, {"uris": ["meshdcm://a/b"], "instances": 3}), "pacs") is True
    after = {kind: index.documents(kind) for kind in ("study", "series")}, index.counts(), \
        index.timeline(ds.StudyInstanceUID)
    assert after[0] == before[0]  # same UIDs, same content: the documents are equal
    assert after[1] == {**before[1], "events": before[1]["events"] + 1}  # a second event in the study's life
    assert before[1] == {"study": 1, "series": 1, "events": 1}


def test_bulk_data_is_never_stored(index):
    ds = header()
    ds.add_new(0x00091010, "OB", b"\x01" * 10_000)  # a large private binary element
    icon = Dataset()
    icon.Rows, icon.Columns = 64, 64
    icon.add_new(0x7FE00010, "OW", b"\x00" * 8192)
    ds.IconImageSequence = Sequence([icon])
    ds.add_new(0x00091011, "OB", b"\x02" * 16)  # small binary values are kept
    index.record(message("stored.instance", ds, {"uris": ["meshdcm://n/store/x.dcm"]}), "pacs")
    (doc,) = index.documents("instance")
    assert "00091010" not in doc["dicom"] and "00091011" in doc["dicom"]
    assert "7FE00010" not in str(doc["dicom"]["00880200"]) and doc["meta"]["uris"] == ["meshdcm://n/store/x.dcm"]


def test_reports_are_found_by_patient_with_their_text(index):
    old = sr_report("Old lacune left thalamus.", date="20230101")
    new = sr_report("No acute infarct.", date="20240101")
    other = sr_report("Someone else.", patient="ROE^RICHARD", pid="P2")
    index.record(message("stored.series", old), "pacs")
    index.record(message("store.instance", new), "web")  # report signing: the body is the SR dataset
    index.record(message("stored.instance", other), "pacs")
    found = index.reports(query(PatientID="P1"))
    assert [ds.SOPInstanceUID for ds, _ in found] == [new.SOPInstanceUID, old.SOPInstanceUID]  # newest first
    ds, text = found[0]
    assert "Finding: No acute infarct." in text and "Impression: Normal" in text and "Length: 12.5 mm" in text
    assert ds.ContentSequence[0].ContentSequence[0].TextValue == "No acute infarct."
    assert [d.SOPInstanceUID for d, _ in index.reports(query(PatientName="doe^*"), exclude_study=new.StudyInstanceUID)
            ] == [old.SOPInstanceUID]
    assert index.reports(query(StudyDate="20240101")) == []  # never every patient's reports
    bare = Dataset()  # a C-FIND answer for the same report: no content; the text stays
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Modality", "PatientID"):
        setattr(bare, keyword, getattr(new, keyword))
    index.record(message("found.instance", bare, {"pacs": "main"}), "pacs")
    assert "No acute infarct." in dict((d.SOPInstanceUID, t) for d, t in index.reports(query(PatientID="P1")))[
        new.SOPInstanceUID]


def test_an_analysis_measurement_report_is_no_prior_report_until_a_person_verifies_it(index):
    """The stroke node's TID 1500 SR (Imaging Measurement Report, UNVERIFIED) is an AI result: the prior reports
    offered beside a study are the radiologists' (it was listed among them, as any SR was)."""
    signed = sr_report("No acute infarct.", date="20240101")
    ai = sr_report("core 12 ml", date="20240101")
    ai.ConceptNameCodeSequence[0].CodeValue, ai.ConceptNameCodeSequence[0].CodingSchemeDesignator = "126000", "DCM"
    ai.ConceptNameCodeSequence[0].CodeMeaning = "Imaging Measurement Report"
    ai.VerificationFlag = "UNVERIFIED"
    for ds in (signed, ai):
        index.record(message("stored.instance", ds), "pacs")
    assert [d.SOPInstanceUID for d, _ in index.reports(query(PatientID="P1"))] == [signed.SOPInstanceUID]
    assert len(index.documents("report")) == 2  # remembered all the same (its series, its text)
    ai.VerificationFlag = "VERIFIED"  # a person verified the measurements: now a report of theirs
    index.record(message("stored.instance", ai), "pacs")
    assert {d.SOPInstanceUID for d, _ in index.reports(query(PatientID="P1"))} == {signed.SOPInstanceUID,
                                                                                   ai.SOPInstanceUID}


def test_report_text_renders_the_content_tree():
    text = report_text(sr_report("Small meningioma."))
    assert text.splitlines() == ["Diagnostic Imaging Report", "  Findings", "    Finding: Small meningioma.",
                                 "    Impression: Normal", "    Length: 12.5 mm"]


def test_derived_series_keep_their_provenance_and_renditions(index):
    source = header(description="DSC perf")
    index.record(message("stored.series", source), "pacs")
    derived = header(study=source.StudyInstanceUID, description="CBF", number=901)
    derived.ImageType = ["DERIVED", "SECONDARY", "PERFUSION"]
    meta = {"derived_from": source.SeriesInstanceUID, "map": "CBF", "unit": "ml/100g/min", "method": "osvd",
            "summary": {"CBF": 50.1}, "uris": ["meshdcm://perf/out/cbf"]}
    index.record(message("stored.series", derived, meta), "perfusion")
    index.record(message("stored.series.nii", source, {"derived_from": source.SeriesInstanceUID,
                                                       "uris": ["meshdcm://convert/out/x.nii.gz"]}), "convert")
    docs = {d["uid"]: d for d in index.documents("series")}
    d = docs[derived.SeriesInstanceUID]
    assert d["derived_from"] == source.SeriesInstanceUID and d["meta"]["map"] == "CBF"
    assert d["meta"]["summary"] == {"CBF": 50.1}
    s = docs[source.SeriesInstanceUID]
    assert "derived_from" not in s and s["meta"]["rendition:nii"]["uris"] == ["meshdcm://convert/out/x.nii.gz"]


def test_timeline_of_a_study(index):
    ds = header()
    study, series = ds.StudyInstanceUID, ds.SeriesInstanceUID
    t0 = 1_764_000_000_000_000_000
    req = Dataset()
    req.StudyInstanceUID = study
    err = Dataset()
    err.StudyInstanceUID, err.SeriesInstanceUID = study, series
    index.record(message("stored.series", ds, ts=t0 + 2_000_000), "pacs")
    index.record(message("get.study", req, ts=t0), "web")
    index.record(message("error.perfusion", err, {"error": {"reason": "too few time points", "node": "perfusion"}},
                         ts=t0 + 5_000_000), "perfusion")
    index.record(message("progress.study", header(patient="X", study="1.2.3"), ts=t0), "pacs")  # another study
    events = index.timeline(study)
    assert [(e["topic"], e["node"], e["series"], e["error"]) for e in events] == [
        ("get.study", "web", None, None), ("stored.series", "pacs", series, None),
        ("error.perfusion", "perfusion", series, "too few time points")]
    assert events[0]["time"] == "2025-11-24T16:00:00.000Z" and len(events[0]["message_id"]) == 32


def test_answers_of_an_index_are_not_news(index):
    ds = header()
    assert index.record(message("found.study", ds, {"source": "index", "node": "index"}), "index") is False
    assert index.record(message("got.report", sr_report(), {"node": "index"}), "index") is False
    assert index.counts() == {"events": 0}


def test_the_embedded_index_survives_a_reopen(tmp_path):
    path = tmp_path / "i.sqlite3"
    idx = Index(SqliteBackend(path))
    patient_with_studies(idx, 2)
    idx.close()
    again = Index(SqliteBackend(path))
    assert again.counts() == {"study": 2, "series": 2, "events": 2}
    again.close()


def test_the_embedded_index_checkpoints_on_its_own_thread_and_leaves_no_wal_at_close(tmp_path):
    """Commits never checkpoint (wal_autocheckpoint=0); the checkpoint thread copies the WAL into the database
    file within seconds: a copy of that file alone, without its WAL, holds what was committed."""
    import shutil
    import sqlite3

    from conftest import wait_until

    path = tmp_path / "i.sqlite3"
    idx = Index(SqliteBackend(path))
    assert idx.backend._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    patient_with_studies(idx, 20)

    def in_database_file():
        copy = tmp_path / "copy" / "alone.sqlite3"
        copy.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, copy)  # the database file without its -wal
        con = sqlite3.connect(copy)
        try:
            return con.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 20
        except sqlite3.DatabaseError:  # copied mid-checkpoint: try again
            return False
        finally:
            con.close()
    wait_until(in_database_file, 15, what="the checkpoint thread copying the WAL into the database file")
    idx.close()
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
