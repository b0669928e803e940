"""The node's error events (``error.<node>``): a handler that failed on a message, and the node's own troubles (lag,
messages that cannot be replayed, a work backlog, a restart). Each is logged (UIDs only, never patient data) and
published, saying what failed and what to do next.

A mixin of :class:`meshdcm.node.Node`: its methods use the node's name, id, config, counters and ``publish``; the
engine and the dispatcher call them (``EngineHost``).
"""

from __future__ import annotations

import logging
from typing import Any

from pydicom.dataset import Dataset

from .dispatch import Bound
from .errors import HandlerError, MeshError
from .message import Message

log = logging.getLogger("meshdcm.node")


class ErrorEvents:
    """Node methods that report failures as ``error.<node>`` events (mixed into the Node)."""

    def _fail(self, handler: Bound, msg: Message, exc: BaseException, action: str | None = None, *,
              attempt: int = 1, next_step: str = "not retried", dead_letter: dict | None = None) -> None:
        """Log a handler failure (UIDs only, traceback at DEBUG) and publish ``error.<node>``."""
        self._count("failed")
        uids = msg.uids
        if action is None:
            action = exc.action if isinstance(exc, HandlerError) and exc.action else (
                "the message was not processed; fix the cause shown"
                + (", then re-drive it as the next step says" if dead_letter else
                   f" and publish it again (meshdcm publish {msg.topic} ...)"))
        reason = exc.reason if isinstance(exc, HandlerError) else f"{type(exc).__name__}: {exc}"
        log.error("handler %s failed on %s %s (study %s, series %s), attempt %d: %s; next: %s", handler.name,
                  msg.topic, msg.id[:12], uids.get("study", "-"), uids.get("series", "-"), attempt, reason, next_step)
        log.debug("traceback of the failure above", exc_info=exc)
        if msg.topic.startswith("error.") or self._stopped.is_set():
            return  # never answer an error event with another one
        body = Dataset()
        for key, keyword in (("study", "StudyInstanceUID"), ("series", "SeriesInstanceUID"),
                             ("instance", "SOPInstanceUID")):
            if key in uids:
                setattr(body, keyword, uids[key])
        error = {
            "node": self.name, "node_id": self.id, "kind": self.config.kind, "handler": handler.name,
            "topic": msg.topic, "message_id": msg.id, "sender": msg.sender.hex(), "reason": reason,
            "exception": type(exc).__name__, "attempt": attempt, "attempts": self.config.max_attempts,
            "action": action, "next": next_step,
        }
        meta: dict[str, Any] = {"error": error}
        if dead_letter is not None:
            meta["dead_letter"] = dead_letter
        try:
            self.publish(self.error_topic, body, reply_to=msg, meta=meta)
        except MeshError:
            pass

    def report_error(self, what: str, reason: str, action: str, *, study: str | None = None,
                     series: str | None = None, instance: str | None = None, **extra) -> None:
        """Say a failure that is no handler's (an instance a PACS pushed that cannot be read, a full disk): logged
        at ERROR with UIDs only, and published as ``error.<node>`` whose body names the study/series/instance, with
        ``reason`` (what happened) and ``action`` (what to do next). ``extra`` (JSON values) goes into the event."""
        log.error("%s: %s (study %s, series %s, instance %s); next: %s", what, reason, study or "-", series or "-",
                  instance or "-", action)
        body = Dataset()
        for keyword, value in (("StudyInstanceUID", study), ("SeriesInstanceUID", series),
                               ("SOPInstanceUID", instance)):
            if value:
                setattr(body, keyword, value)
        self._error_event(what, reason, action, body=body, **extra)

    def _error_event(self, what: str, reason: str, action: str, body: Dataset | None = None, **extra) -> None:
        """An ``error.<node>`` event about the node itself (no message failed): lag, loss, backlog."""
        if self._stopped.is_set() or self._mailbox is None:
            return
        error = {"node": self.name, "node_id": self.id, "kind": self.config.kind, "handler": what, "topic": "",
                 "reason": reason, "action": action, "next": action, **extra}
        try:
            self.publish(self.error_topic, body, meta={"error": error})
        except MeshError:
            pass

    def _report_backlog(self, group: str, size: int) -> None:
        reason = f"worker group {group!r} has {size} work items waiting and its members take no more"
        action = ("none is dropped (they are in the journal); start more members of the group or check why they "
                  "are stuck (meshdcm peers)")
        log.error("%s: %s", reason, action)
        self._error_event("work backlog", reason, action, group=group, waiting=size)

    def _report_lag(self, pending: int, seconds: float, missing: int = 0) -> None:
        reason = (f"node {self.name} is falling behind: for {seconds:.1f} s its handlers have had {pending} messages "
                  f"waiting and {missing} more are still to be replayed to it")
        action = ("nothing is dropped: senders are held back and what overflows their queues is replayed from their "
                  "journals; give this node more workers, or start another member of its group")
        log.error("%s; %s", reason, action)
        self._error_event("lag", reason, action, pending=pending, missing=missing)

    def _report_lost(self, sender: str, first: int, last: int, count: int, journal: bool = True,
                     why: str = "") -> None:
        self._count("lost", count)
        why = why or ("it keeps no journal" if not journal else "they are older than its journal keeps (retention)")
        reason = f"{count} messages from {sender} (seq {first}..{last}) cannot be replayed: {why}"
        action = "ask the sending node to publish them again, or re-run the study from the PACS"
        log.error("%s; %s", reason, action)
        self._error_event("replay", reason, action, sender=sender, first=first, last=last, lost=count)
