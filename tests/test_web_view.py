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
