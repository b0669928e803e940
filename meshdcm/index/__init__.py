"""The index: the mesh's memory (issue 9; docs/index.md).

::

    Index                  record(message), find(level, query), reports(query), timeline(study)   (.store)
    open_index(...)        an Index over the embedded SQLite file or a MongoDB server
    SqliteBackend          zero-setup default, one file                                           (.sqlite)
    MongoBackend           pymongo, for sites with MongoDB (extra ``index``)                       (.mongo)
    report_text(ds)        an SR document as plain text                                            (.reports)
"""

from __future__ import annotations

from pathlib import Path

from .reports import is_report, report_text
from .sqlite import SqliteBackend
from .store import Backend, Index

__all__ = ["Backend", "Index", "SqliteBackend", "is_report", "open_index", "report_text"]


def open_index(path: str | Path | None = None, *, mongo: str | None = None, synchronous: str = "normal") -> Index:
    """An :class:`Index` on MongoDB when ``mongo`` is a ``mongodb://`` URI, else on the SQLite file ``path``."""
    if mongo:
        from .mongo import MongoBackend

        return Index(MongoBackend(mongo))
    if path is None:
        raise ValueError("open_index needs a path for the embedded index, or mongo=URI")
    return Index(SqliteBackend(path, synchronous=synchronous))
