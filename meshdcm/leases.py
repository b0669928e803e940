"""Work items a node sent to worker groups, until a member acknowledges them.

Per group, items wait in a queue and at most ``window`` are out at a time (so members never sit on a long
unclaimed backlog). A member reports the items it holds (``WORK`` control message, ``held``) every second and
those it finished (``done``). An item goes back to the front of its queue, to be pushed again to the group, when

* the member holding it expired (dead, or cut off) or did not renew it within ``lease`` seconds, or
* nobody claimed it within ``claim_timeout`` seconds (it was queued to a member that died before reading it).

Members remember what they finished (:mod:`meshdcm.receipts`), so an item sent twice is acknowledged, not handled
twice. The engine journals every item (:mod:`meshdcm.journal`); a restarted sender re-queues the unacknowledged.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Leases", "WorkItem"]


class WorkItem:
    __slots__ = ("stream", "seq", "group", "frame", "sent_at", "holder", "renewed", "sends")

    def __init__(self, stream: bytes, seq: int, group: str, frame):
        self.stream, self.seq, self.group, self.frame = stream, seq, group, frame
        self.sent_at = 0.0
        self.holder: str | None = None
        self.renewed = 0.0
        self.sends = 0


class _Group:
    __slots__ = ("queue", "out")

    def __init__(self):
        self.queue: deque[WorkItem] = deque()
        self.out: dict[tuple[bytes, int], WorkItem] = {}


class Leases:
    def __init__(self, lease: float, claim_timeout: float, window: int = 256):
        self.lease, self.claim_timeout, self.window = lease, claim_timeout, window
        self.groups: dict[str, _Group] = {}

    def add(self, group: str, stream: bytes, seq: int, frame) -> None:
        self.groups.setdefault(group, _Group()).queue.append(WorkItem(stream, seq, group, frame))

    def waiting(self, group: str) -> int:
        g = self.groups.get(group)
        return len(g.queue) if g else 0

    def next_to_send(self, group: str) -> WorkItem | None:
        g = self.groups.get(group)
        if g is None or not g.queue or len(g.out) >= self.window:
            return None
        return g.queue[0]

    def sent(self, item: WorkItem, now: float) -> None:
        g = self.groups[item.group]
        g.queue.popleft()
        item.sent_at, item.holder, item.sends = now, None, item.sends + 1
        g.out[(item.stream, item.seq)] = item

    def report(self, group: str, member: str, stream: bytes, done, held, now: float) -> list[WorkItem]:
        """A member's ``WORK`` report; returns the items it finished (to acknowledge in the journal)."""
        g = self.groups.get(group)
        if g is None:
            return []
        finished = []
        for seq in done:
            item = g.out.pop((stream, seq), None)
            if item is None:  # acknowledged while waiting to be re-sent
                for queued in g.queue:
                    if queued.stream == stream and queued.seq == seq:
                        item = queued
                        g.queue.remove(queued)
                        break
            if item is not None:
                finished.append(item)
        for seq in held:
            item = g.out.get((stream, seq))
            if item is not None:
                item.holder, item.renewed = member, now
        return finished

    def expire(self, now: float, alive: set[str]) -> list[tuple[WorkItem, str]]:
        """Items whose holder is gone or silent, or that nobody claimed: back to the front of their queue."""
        again = []
        for g in self.groups.values():
            for key, item in list(g.out.items()):
                if item.holder is not None:
                    if item.holder not in alive:
                        why = f"member {item.holder[:12]} that held it is gone"
                    elif now - item.renewed > self.lease:
                        why = f"member {item.holder[:12]} did not renew its lease for {self.lease:.0f} s"
                    else:
                        continue
                elif now - item.sent_at > self.claim_timeout:
                    why = f"no member claimed it within {self.claim_timeout:.0f} s"
                else:
                    continue
                del g.out[key]
                again.append((item, why))
        for item, _ in reversed(again):
            self.groups[item.group].queue.appendleft(item)
        return again

    def outstanding(self) -> int:
        return sum(len(g.queue) + len(g.out) for g in self.groups.values())

    def unclaimed(self) -> dict[str, int]:
        """Per group, the items no member holds or finished yet (safe to call from another thread: it reads
        copies, and an item's holder is one reference)."""
        out = {}
        for name, g in list(self.groups.items()):
            n = len(g.queue) + sum(1 for item in list(g.out.values()) if item.holder is None)
            if n:
                out[name] = n
        return out
