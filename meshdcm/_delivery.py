"""The engine's delivery duties (docs/delivery.md): replaying what a peer missed, settling what it says it missed
for good, the worker-group reports (held and done items), gaps whose sender is gone, and the delivery tick that asks
for replays, expires leases, prunes departed state and says when the node falls behind.

A mixin of :class:`meshdcm._engine.Engine`: its methods run on the engine thread and use the engine's state.
"""

from __future__ import annotations

import json
import logging
import time

from .journal import SEQ_MOD, after, seq_add
from .message import FLAG_REPLAY, stamp

log = logging.getLogger("meshdcm.node")

_HOLD_EVERY = 1.0  # seconds between a member's reports of the work items it holds
_PRUNE_EVERY = 60.0  # seconds between prunes of what departed peers left


class DeliveryDuties:
    """Engine methods for replay, work reports and the delivery tick (mixed into the Engine)."""

    def _replay(self, identity: bytes, payload: bytes) -> None:
        """A peer missed frames of one of our streams: send them again (flagged replayed), then REPLAYED."""
        try:
            req = json.loads(payload)
            sid, first, last = bytes.fromhex(req["stream"]), int(req["first"]), int(req["last"])
        except (ValueError, KeyError, TypeError):
            self.node._count("malformed")
            return
        frames, oldest = self.outbox.replay(sid, first, last, 256)
        for seq, frame in frames:
            self.control.send_multipart([identity, b"FRAME", stamp(frame, seq, FLAG_REPLAY)])
        self.node._count("replayed", len(frames))
        self.control.send_multipart([identity, b"REPLAYED", json.dumps(
            {"stream": req["stream"], "first": first, "last": last, "oldest": oldest,
             "journal": self.outbox.enabled}).encode()])

    def _replayed(self, payload: bytes) -> None:
        try:
            info = json.loads(payload)
            sid, first = bytes.fromhex(info["stream"]), int(info["first"])
            oldest = info.get("oldest")
        except (ValueError, KeyError, TypeError):
            return
        stream = self.receipts.streams.get(sid)
        if stream is None:
            return
        if oldest is not None and after(int(oldest), first):
            count = (int(oldest) - first) % SEQ_MOD
            self.receipts.give_up(stream, first, count)
            self.node._report_lost(stream.name or sid.hex()[:12], first, seq_add(first, count - 1), count,
                                   journal=bool(info.get("journal", True)))
        self.receipts.answered(stream)

    def _on_work_report(self, payload: bytes) -> None:
        try:
            report = json.loads(payload)
            member, sid = str(report["node"]), bytes.fromhex(report["stream"])
            done = [int(s) for s in report.get("done", ())]
            held = [int(s) for s in report.get("held", ())]
        except (ValueError, KeyError, TypeError):
            self.node._count("malformed")
            return
        peer = self.peers.get(member)
        if peer is None or not peer.manifest.group:
            return
        self.peers.heard(member)
        group = peer.manifest.group
        for item in self.leases.report(group, member, sid, done, held, time.monotonic()):
            self.outbox.acknowledge(item.stream, item.seq, item.group)
        self._pump(group)

    def _work_reports_due(self) -> bool:
        return any(done or held for done, held in self._work_reports.values())

    def _send_work_reports(self, force: bool = False) -> None:
        """As a group member: tell each sender which of its items we finished, and (every second) which we hold."""
        now = time.monotonic()
        refresh = force or now - self._last_hold >= _HOLD_EVERY
        if refresh:
            self._last_hold = now
        acks = self.node._dispatcher.take_work_acks()
        for sid, seq in acks:
            self._work_report(sid)[0].append(seq)
        if refresh:
            for sid, seq in self.receipts.held_work():
                self._work_report(sid)[1].append(seq)
        for sid, (done, held) in list(self._work_reports.items()):
            if not done and not held:
                continue
            home = self.peers.get(self._homes.get(sid, sid.hex()))
            if home is None:
                continue  # its sender is not here (now): it re-sends after its restart, and we acknowledge then
            body = json.dumps({"node": self.node.id, "stream": sid.hex(), "done": done, "held": held}).encode()
            if self._say(home.manifest.control, [b"WORK", body]):
                self._work_reports[sid] = [[], []]

    def _orphaned(self, stream, now: float) -> None:
        """Messages of ``stream`` are missing here and no peer in the mesh answers replays for it: wait
        ``rediscover_for`` seconds for its sender to come back (said once), then settle them as lost (said once)."""
        since = self._orphans.setdefault(stream.id, now)
        wait = self.node.config.rediscover_for
        if since == now:
            log.warning("%d messages of stream %s (%s) are missing here and its sender is gone: waiting up to %.0f s "
                        "for it to come back and replay them", sum(c for _, c in stream.missing),
                        stream.id.hex()[:12], stream.name or "unknown sender", wait)
        elif now - since >= wait:
            del self._orphans[stream.id]
            for first, count in list(stream.missing):
                self.receipts.give_up(stream, first, count)
                self.node._report_lost(stream.name or stream.id.hex()[:12], first, seq_add(first, count - 1), count,
                                       why=f"its sender left the mesh and did not come back within {wait:.0f} s")

    def _delivery_tick(self, now: float) -> None:
        inbox = self.receipts
        node = self.node
        # replays are asked for only while the handlers keep up: the receiver's own credit
        for stream, first, last in inbox.wanted(now) if node._pending() < node.config.max_pending else ():
            home = self.peers.get(self._homes.get(stream.id, stream.id.hex()))
            if home is None:
                self._orphaned(stream, now)
                continue
            if self._orphans.pop(stream.id, None) is not None:
                log.info("the sender of stream %s is back: asking it for what was missed", stream.id.hex()[:12])
            log.info("asking %s to replay %d..%d of stream %s (missed here)", home.manifest.name, first, last,
                     stream.id.hex()[:12])
            self._say(home.manifest.control, [b"REPLAY", json.dumps(
                {"stream": stream.id.hex(), "first": first, "last": last}).encode()])
        for sid in [sid for sid in self._orphans if not getattr(inbox.streams.get(sid), "missing", None)]:
            del self._orphans[sid]  # what was missing arrived after all
        alive = {p.id for p in self.peers}
        for item, why in self.leases.expire(now, alive):
            log.info("work item %d for group %r goes out again: %s", item.seq, item.group, why)
        for group in list(self.leases.groups):
            self._pump(group)
        self._send_work_reports()
        inbox.flush()
        self.outbox.maybe_prune(time.time())
        if now - self._last_prune >= min(_PRUNE_EVERY, max(1.0, node.config.journal_max_age / 4)):
            self._last_prune = now
            self._prune_departed()
        # a consumer that falls behind says so (docs/delivery.md): the engine has stopped reading, or what it missed
        # is still being replayed (a consumer that catches up in replayed chunks is behind all the while, even when
        # its handler queue drains between chunks)
        pending, missing = node._pending(), inbox.missing_count()
        if pending >= node.config.max_pending or missing:
            if self._behind_since is None:
                self._behind_since = now
            elif not self._behind_reported and now - self._behind_since >= node.config.lag_alarm:
                self._behind_reported = True
                node._report_lag(pending, now - self._behind_since, missing)
        elif pending < node.config.max_pending // 2:
            if self._behind_reported:
                log.warning("node %s caught up: %d messages wait for handlers", node.name, node._pending())
            self._behind_since, self._behind_reported = None, False
