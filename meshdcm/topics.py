"""Every topic of the mesh in one place: its name, whether it is a request, an answer or an event, and what it says.

Nodes publish and subscribe with these names (``node.publish(topics.FOUND_END, ...)``); docs/protocol.md's topic
table is checked against :data:`ALL` by the tests, so the two cannot drift apart. A topic is dot-separated text
(docs/protocol.md, "Topics"); a subscription to a prefix (``stored``) gets every topic under it
(``stored.series``, ``stored.series.nii``).

Kinds: a *request* asks nodes to act and is answered with messages whose ``correlation_id`` is the request's id
(*answers*); an *event* says what happened, to whoever listens.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ALL", "Topic", "by_name", "ERROR_PREFIX", "error_topic"]


@dataclass(frozen=True)
class Topic:
    name: str
    kind: str  # "request", "answer" or "event"
    says: str  # one line: the body, and what the meta carries


def _t(name: str, kind: str, says: str) -> str:
    _REGISTRY[name] = Topic(name, kind, says)
    return name


_REGISTRY: dict[str, Topic] = {}

# --- search and retrieve (pacs node, index node) --------------------------------------------------------
FIND_STUDIES = _t("find.studies", "request", "a C-FIND identifier at study level; meta `to` may address one node")
FIND_SERIES = _t("find.series", "request", "a C-FIND identifier at series level")
FIND_INSTANCES = _t("find.instances", "request", "a C-FIND identifier at instance level")
FOUND_STUDY = _t("found.study", "answer", "one matching study; meta `pacs` (or the index's `node`)")
FOUND_SERIES = _t("found.series", "answer", "one matching series")
FOUND_INSTANCE = _t("found.instance", "answer", "one matching instance")
FOUND_END = _t("found.end", "answer", "the last answer of a find.*: meta `count`, `status` (ok/failed), `errors`")
GET_STUDY = _t("get.study", "request", "StudyInstanceUID: retrieve the study from a PACS; meta `pacs` may name one")
GET_SERIES = _t("get.series", "request", "Study/SeriesInstanceUID: retrieve one series")
PROGRESS_STUDY = _t("progress.study", "answer", "a retrieve's progress: meta `done`, `total`, `pacs`")

# --- what is stored where (pacs node, analysis nodes, web) ------------------------------------------------
STORED_INSTANCE = _t("stored.instance", "event", "an instance on disk: its header; meta `uris`")
STORED_SERIES = _t("stored.series", "event", "a series on disk: its header; meta `uris`, `instances`, `complete`; "
                                             "a derived one also `derived_from`, `map`, `unit`, `summary`")
STORED_SERIES_NII = _t("stored.series.nii", "event", "a NIfTI rendition of a series (convert node): meta `uris`, "
                                                     "`derived_from`")
WAITING_SERIES = _t("waiting.series", "event", "a node holds a series back until something arrives (the register node: "
                                              "its study's reference series): meta `reason`, `waiting_for`")
STORED_STUDY = _t("stored.study", "event", "a study retrieved or received: meta `instances`, `complete`, `pacs`")
STORE_INSTANCE = _t("store.instance", "request", "upload the instance its URIs name into a PACS")
STORE_SERIES = _t("store.series", "request", "upload the series its URIs name into a PACS (a signed report, too)")
STORE_STUDY = _t("store.study", "request", "upload the study its URIs name into a PACS")
UPLOADED_SERIES = _t("uploaded.series", "answer", "an upload (asked for, or a derived series archived) is in a "
                                                  "PACS: meta `pacs`, `count`, `derived_from`")

# --- the reading room (viewer node) -------------------------------------------------------------------------
OPEN_STUDY = _t("open.study", "request", "send the study to a desktop viewer: meta `viewer` may name one")
VIEWER_SENT = _t("viewer.sent", "event", "a series reached a desktop viewer: meta `viewer`, `study`, `series`, "
                                         "`count`")

# --- the mesh's memory (index node) --------------------------------------------------------------------------
GET_REPORTS = _t("get.reports", "request", "PatientID (and the study to leave out): the patient's signed reports")
GOT_REPORT = _t("got.report", "answer", "one SR report without bulk data: meta `node`, `text`")
GOT_END = _t("got.end", "answer", "the last answer of a get.reports: meta `count`, `node`")
GET_TIMELINE = _t("get.timeline", "request", "StudyInstanceUID: every message the index heard about the study")
GOT_TIMELINE = _t("got.timeline", "answer", "the study's timeline: meta `study`, `events`")

# --- dead letters (every node that is not a CLI tool answers them; docs/delivery.md) -----------------------
DEAD_LIST = _t("dead.list", "request", "meta `node` (or none: every node answers)")
DEAD_SHOW = _t("dead.show", "request", "meta `node`, `id`")
DEAD_RETRY = _t("dead.retry", "request", "meta `node`, `id`: hand the message to its handler again")
DEAD_DROP = _t("dead.drop", "request", "meta `node`, `id`: forget the letter")
DEAD_LETTER = _t("dead.letter", "answer", "the failed message's body: meta `node`, `id`, `topic`, `handler`, "
                                          "`error`, `attempts`, `first_failed`, `last_failed`")
DEAD_END = _t("dead.end", "answer", "the last answer of a dead.list/show: meta `node`, `count` or `error`")
DEAD_RETRIED = _t("dead.retried", "answer", "meta `node`, `id`")
DEAD_DROPPED = _t("dead.dropped", "answer", "meta `node`, `id`")

# --- errors ---------------------------------------------------------------------------------------------------
ERROR_PREFIX = "error"
_t("error.<node>", "event", "a failure, named by the node: meta `error` (its reason, the action to take, what happens next: see Meta below)")

#: Every topic, by name (``error.<node>`` stands for the error topic of each node).
ALL: dict[str, Topic] = dict(_REGISTRY)


def error_topic(node_name: str) -> str:
    """The topic a node's failures are published on."""
    return f"{ERROR_PREFIX}.{node_name}"


def by_name(name: str) -> Topic | None:
    """The registered topic ``name`` (any ``error.*`` is ``error.<node>``), or None."""
    if name.startswith(ERROR_PREFIX + "."):
        return ALL["error.<node>"]
    return ALL.get(name)
