"""The MongoDB backend (pymongo): the same documents, one collection per kind, for sites that run MongoDB.

Collections ``studies``, ``series``, ``instances``, ``reports`` (``_id`` = the UID) and ``events`` (``_id`` = the
message id), with indexes on the UIDs and on patient ID, upper-case patient name and study date (and modality for
series). Each document is written with one upsert whose ``$set`` names single fields (``dicom.<tag>``,
``meta.<key>``), so a repeated message writes the same values again: idempotent without transactions (which
need a replica set). The event is inserted last: a message whose event is there was applied completely, and a
message interrupted half-way is applied again in full when it is replayed.

Durability: writes use the write concern ``w=1, j=True`` (acknowledged once in the server's journal), so an
acknowledged message survives the index node's death and the server's.
"""

from __future__ import annotations

from typing import Iterable

from .documents import FIELDS, Event, Writes
from .store import Prefilter

__all__ = ["MongoBackend"]

COLLECTIONS = {"study": "studies", "series": "series", "instance": "instances", "report": "reports"}
INDEXED = ("study", "series", "patient_id", "patient_name", "study_date", "modality")
SERVER_TIMEOUT_MS = 5000


def _safe_key(key: str) -> bool:
    return bool(key) and "." not in key and not key.startswith("$") and "\x00" not in key


class MongoBackend:
    name = "mongodb"

    def __init__(self, uri: str, database: str | None = None):
        import pymongo
        from pymongo.write_concern import WriteConcern

        self._pymongo = pymongo
        self.client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=SERVER_TIMEOUT_MS, tz_aware=True)
        concern = WriteConcern(w=1, j=True)
        self.db = (self.client.get_database(database, write_concern=concern) if database
                   else self.client.get_default_database("meshdcm", write_concern=concern))
        self.client.admin.command("ping")  # fail now, with pymongo's reason, if the server is not there
        for kind, coll in COLLECTIONS.items():
            c = self.db[coll]
            for f in INDEXED:
                if f == "modality" and kind not in ("series", "instance"):
                    continue
                c.create_index(f)
        self.db.events.create_index([("study", 1), ("ts", 1), ("_id", 1)])

    def apply(self, writes: Writes, now: str) -> bool:
        from pymongo.errors import DuplicateKeyError

        event = writes.event
        if event is not None and self.db.events.find_one({"_id": event.id}, {"_id": 1}) is not None:
            return False
        for up in writes.upserts:
            setter = {k: v for k, v in up.fields.items()}
            setter.update({f"dicom.{tag}": elem for tag, elem in up.dicom.items()})
            setter.update({f"meta.{k}": v for k, v in up.meta.items() if _safe_key(k)})
            update = {"$setOnInsert": {"first_seen": now}}
            if setter:
                update["$set"] = setter
            self.db[COLLECTIONS[up.kind]].update_one({"_id": up.uid}, update, upsert=True)
        if event is not None:
            try:
                self.db.events.insert_one({"_id": event.id, "study": event.study, "series": event.series,
                                           "ts": event.ts, "node": event.node, "topic": event.topic,
                                           "error": event.error})
            except DuplicateKeyError:
                return False  # applied concurrently by another writer: the same writes, nothing lost
        return True

    def candidates(self, kind: str, where: Prefilter) -> Iterable[dict]:
        query: dict = {}
        for name, cond in where.items():
            if name not in ("uid",) + FIELDS:
                raise ValueError(f"no indexed field {name!r}")
            key = "_id" if name == "uid" else name
            op = cond[0]
            if op == "eq":
                query[key] = cond[1]
            elif op == "in":
                query[key] = {"$in": list(cond[1])}
            elif op == "prefix":
                query[key] = {"$gte": cond[1], "$lt": cond[1] + "\uffff"}
            elif op == "range":
                rng = {}
                if cond[1]:
                    rng["$gte"] = cond[1]
                if cond[2]:
                    rng["$lte"] = cond[2]
                if rng:
                    query[key] = rng
            else:
                raise ValueError(f"unknown condition {op!r}")
        out = []
        for doc in self.db[COLLECTIONS[kind]].find(query):
            doc["uid"] = doc.pop("_id")
            doc.setdefault("dicom", {})
            doc.setdefault("meta", {})
            out.append(doc)
        return out

    def events(self, study: str) -> list[Event]:
        rows = self.db.events.find({"study": study}).sort([("ts", 1), ("_id", 1)])
        return [Event(r["_id"], r["study"], r.get("series"), r["ts"], r.get("node"), r.get("topic"), r.get("error"))
                for r in rows]

    def counts(self) -> dict[str, int]:
        out = {kind: self.db[coll].count_documents({}) for kind, coll in COLLECTIONS.items()}
        out = {k: v for k, v in out.items() if v}
        out["events"] = self.db.events.count_documents({})
        return out

    def close(self) -> None:
        self.client.close()
