"""The perfusion node in a mesh: a DSC series is stored, maps come back as derived series, once."""

from __future__ import annotations

import threading

from conftest import wait_until
from meshdcm import Message, Node
from meshdcm.perfusion import PhantomSpec, make_phantom, write_phantom_dicom


def test_dsc_series_in_maps_out_idempotently(mesh, tmp_path):
    files = write_phantom_dicom(make_phantom(PhantomSpec(shape=(2, 24, 24), n_time=40)), tmp_path / "dsc")
    proc = mesh.start("node", "perfusion", "--config", mesh.config("perfusion", work=str(tmp_path / "work")))
    proc.wait_for_output("started on")
    got: list[Message] = []
    lock = threading.Lock()
    with Node("client", mesh=mesh.name) as client:
        @client.on("stored.series")
        def keep(msg):
            with lock:
                got.append(msg)

        @client.on("error")
        def errors(msg):
            with lock:
                got.append(msg)
        assert client.wait_for_peers(1, 10) and client.wait_for_subscribers("stored.series", 10)
        from pydicom import dcmread

        header = dcmread(files[0], stop_before_pixels=True)
        request = client.publish("stored.series", header, uris=[(tmp_path / "dsc").as_uri()])
        expected = ["CBF", "CBV", "MTT", "TTP", "Tmax", "rCBF", "rCBV", "rMTT"]  # relative maps are made by default

        def replies(req):  # 8 maps and 3 stroke objects (SEG, SR, summary image: tests/test_stroke_node.py)
            with lock:
                return [m for m in got if m.correlation_id == req.message_id]

        maps = wait_until(lambda: len(replies(request)) >= 11 and [m for m in replies(request) if "map" in m.meta],
                          120, what="the maps")
        assert not [m for m in got if m.topic.startswith("error.")], [m.meta for m in got]
        names = sorted(m.meta["map"] for m in maps)
        assert names == expected
        for m in maps:
            assert m.meta["derived_from"] == header.SeriesInstanceUID
            assert "DERIVED" in m.dataset.ImageType and m.dataset.StudyInstanceUID == header.StudyInstanceUID
            assert m.meta["summary"]["tissues"]["WM"]["voxels"] > 0 and m.uris[0].startswith("meshdcm://")
        cbf = [m for m in maps if m.meta["map"] == "CBF"][0]
        fetched = client.fetch(cbf.uris[0], tmp_path / "cbf")
        assert len(fetched) == cbf.meta["instances"] == 2
        # the same message again: the same derived series UIDs (no second series)
        again = client.publish("stored.series", header, uris=[(tmp_path / "dsc").as_uri()])
        maps2 = wait_until(lambda: len(replies(again)) >= 11 and [m for m in replies(again) if "map" in m.meta], 120,
                           what="the maps again")
        assert sorted(m.dataset.SeriesInstanceUID for m in maps2) == sorted(m.dataset.SeriesInstanceUID for m in maps)
        # its own outputs are never inputs: nothing came back for the maps it published
        assert len([m for m in got if m.topic == "stored.series" and m.meta.get("derived_from")]) == (len(maps) + 3) * 2
