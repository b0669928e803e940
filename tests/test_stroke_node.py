"""The stroke objects in a mesh: the perfusion node announces SEG, SR and summary as derived series (core by the
study's ADC series when one was announced first; again, superseding the rCBF ones, when it comes after the DSC
series) and the pacs node archives them in its PACS."""

from __future__ import annotations

import threading

import pydicom
from pydicom.dataset import Dataset

from conftest import wait_until
from meshdcm import Message, Node
from meshdcm.perfusion import analyse_series
from meshdcm.stroke import StrokePhantomSpec, make_stroke_phantom, write_stroke_phantom
from meshdcm.stroke.phantom import write_adc_series


def test_stroke_seg_sr_summary_are_announced_and_archived(mesh, tmp_path):
    sp = make_stroke_phantom(StrokePhantomSpec(lesion="medium", shape=(10, 64, 64), slice_thickness=10.0, n_time=60))
    files = write_stroke_phantom(sp, tmp_path / "dsc")
    dsc = pydicom.dcmread(files[0], stop_before_pixels=True)
    adc_files = write_adc_series(sp, tmp_path / "adc", dsc)
    work = tmp_path / "perfusion-work"
    pacs = mesh.start("node", "pacs", "--config", mesh.config("pacs", embedded=True, storage=str(tmp_path / "store"),
                                                              quiet_seconds=2))
    perfusion = mesh.start("node", "perfusion", "--config", mesh.config("perfusion", work=str(work)))
    pacs.wait_for_output("embedded PACS", 60)
    perfusion.wait_for_output("started on", 30)
    got: list[Message] = []
    lock = threading.Lock()
    with Node("client", mesh=mesh.name) as client:
        for topic in ("stored.series", "uploaded.series", "found", "error"):
            @client.on(topic)
            def keep(msg, _t=topic):
                with lock:
                    got.append(msg)

        def replies(request, topic=None):
            with lock:
                return [m for m in got if m.correlation_id == request.message_id and (topic is None or m.topic == topic)]

        assert client.wait_for_peers(2, 20) and client.wait_for_subscribers("stored.series", 20)
        client.publish("stored.series", pydicom.dcmread(adc_files[0], stop_before_pixels=True),
                       uris=[(tmp_path / "adc").as_uri()])
        wait_until(lambda: (work / "adc" / dsc.StudyInstanceUID / "adc.json").exists(), 30, what="the ADC remembered")
        request = client.publish("stored.series", dsc, uris=[(tmp_path / "dsc").as_uri()])
        stroke = wait_until(lambda: len([m for m in replies(request) if m.meta.get("stroke")]) == 3 and
                            {m.meta["stroke"]: m for m in replies(request) if m.meta.get("stroke")}, 180,
                            what="the stroke SEG, SR and summary")
        assert not [m for m in got if m.topic.startswith("error.")], [m.meta for m in got if m.topic.startswith("e")]
        modalities = {k: m.dataset.Modality for k, m in stroke.items()}
        assert modalities == {"seg": "SEG", "sr": "SR", "summary": "OT"}
        for m in stroke.values():
            assert m.meta["derived_from"] == dsc.SeriesInstanceUID and m.dataset.StudyInstanceUID == dsc.StudyInstanceUID
            assert m.meta["volumes"]["core_method"] == "adc" and m.uris[0].startswith("meshdcm://")
            assert "ContentSequence" not in m.dataset and "PerFrameFunctionalGroupsSequence" not in m.dataset
            assert "SOPInstanceUID" not in m.dataset  # a series announcement: the index files no empty "report"
        volumes = stroke["sr"].meta["volumes"]
        assert abs(volumes["core_ml"] - sp.truth_ml["core_ml"]) <= max(5, 0.1 * sp.truth_ml["core_ml"])
        fetched = client.fetch(stroke["sr"].uris[0], tmp_path / "sr")
        assert len(fetched) == 1 and pydicom.dcmread(fetched[0]).SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"

        # the pacs node archives each of them (and the maps) in its PACS
        wait_until(lambda: all(replies(m, "uploaded.series") for m in stroke.values()), 120, what="the archive")
        query = Dataset()
        query.StudyInstanceUID, query.SeriesInstanceUID, query.Modality = dsc.StudyInstanceUID, "", ""
        find = client.publish("find.series", query)
        wait_until(lambda: replies(find, "found.end"), 30, what="found.end")
        archived = {m.dataset.SeriesInstanceUID: m.dataset.Modality for m in replies(find, "found.series")}
        for m in stroke.values():
            assert archived.get(m.dataset.SeriesInstanceUID) == m.dataset.Modality
        # the ADC came first: one set only, nothing kept to run again
        assert len([m for m in got if m.meta.get("stroke")]) == 3
        assert not list((work / "stroke").glob("*/*"))


VOLUME_KEYS = ("core_method", "core_ml", "tmax6_ml", "tmax10_ml", "mismatch_ml", "mismatch_ratio", "hir", "side")


def test_an_adc_after_the_dsc_gives_a_second_superseding_set(mesh, tmp_path):
    """A study fetched from a PACS comes in any order: the DSC series first (rCBF core), then its ADC series. The
    stroke part runs again with the ADC core: new SEG, SR and summary, new UIDs, the SR superseding the first."""
    sp = make_stroke_phantom(StrokePhantomSpec(lesion="medium", shape=(10, 64, 64), slice_thickness=10.0, n_time=60))
    dsc = pydicom.dcmread(write_stroke_phantom(sp, tmp_path / "dsc")[0], stop_before_pixels=True)
    adc_files = write_adc_series(sp, tmp_path / "adc", dsc)
    work = tmp_path / "perfusion-work"
    perfusion = mesh.start("node", "perfusion", "--config", mesh.config("perfusion", work=str(work)))
    perfusion.wait_for_output("started on", 30)
    got: list[Message] = []
    lock = threading.Lock()
    with Node("client", mesh=mesh.name) as client:
        for topic in ("stored.series", "error"):
            @client.on(topic)
            def keep(msg):
                with lock:
                    got.append(msg)

        def stroke_sets():
            with lock:
                return [m for m in got if m.meta.get("stroke")]

        assert client.wait_for_peers(1, 20) and client.wait_for_subscribers("stored.series", 20)
        request = client.publish("stored.series", dsc, uris=[(tmp_path / "dsc").as_uri()])
        first = wait_until(lambda: len(s := [m for m in stroke_sets() if m.correlation_id == request.message_id]) == 3
                           and {m.meta["stroke"]: m for m in s}, 180, what="the rCBF stroke objects")
        assert {m.meta["volumes"]["core_method"] for m in first.values()} == {"rcbf"}
        client.publish("stored.series", pydicom.dcmread(adc_files[0], stop_before_pixels=True),
                       uris=[(tmp_path / "adc").as_uri()])
        second = wait_until(lambda: len(s := [m for m in stroke_sets() if m.meta["volumes"]["core_method"] == "adc"])
                            == 3 and {m.meta["stroke"]: m for m in s}, 120, what="the ADC-core stroke objects")
        assert not [m for m in got if m.topic.startswith("error.")], [m.meta for m in got if m.topic.startswith("e")]
        for kind, m in second.items():
            assert m.meta["derived_from"] == dsc.SeriesInstanceUID and m.meta["volumes"]["core_method"] == "adc"
            assert m.dataset.SeriesInstanceUID != first[kind].dataset.SeriesInstanceUID
            assert m.dataset.Modality == first[kind].dataset.Modality
        volumes = second["sr"].meta["volumes"]
        assert abs(volumes["core_ml"] - sp.truth_ml["core_ml"]) <= max(5, 0.1 * sp.truth_ml["core_ml"])
        direct = analyse_series(tmp_path / "dsc", tmp_path / "direct", adc=tmp_path / "adc").stroke  # ADC first
        assert {k: volumes[k] for k in VOLUME_KEYS} == {k: direct[k] for k in VOLUME_KEYS}  # kept maps: the same
        old = pydicom.dcmread(client.fetch(first["sr"].uris[0], tmp_path / "sr-rcbf")[0])
        new = pydicom.dcmread(client.fetch(second["sr"].uris[0], tmp_path / "sr-adc")[0])
        assert new.SOPInstanceUID != old.SOPInstanceUID
        (predecessor,) = [sop for study in new.PredecessorDocumentsSequence for series in study.ReferencedSeriesSequence
                          for sop in series.ReferencedSOPSequence]
        assert predecessor.ReferencedSOPInstanceUID == old.SOPInstanceUID
        assert (new.ContentDate + new.ContentTime) >= (old.ContentDate + old.ContentTime)
        assert not list((work / "stroke").glob("*/*"))  # done: the ADC announced again runs nothing
