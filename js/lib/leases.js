'use strict';
// Worker groups (docs/delivery.md, *Worker groups: leases and acknowledgements*), sender side, in memory: each
// work item is kept until a member says it is done (WORK report); it goes out again when its holder expired or
// left, did not renew it for `leaseMs`, or nobody claimed it within `unclaimedMs`.
class Leases {
  constructor({ leaseMs = 10000, unclaimedMs = 5000 } = {}) { this.leaseMs = leaseMs; this.unclaimedMs = unclaimedMs; this.groups = new Map(); }

  add(group, seq, frame, now) {
    if (!this.groups.has(group)) this.groups.set(group, new Map());
    const item = { seq, frame, holder: null, sentAt: 0, renewedAt: 0 };
    this.groups.get(group).set(seq, item);
    return item;
  }

  /** A member's WORK report: forget `done`, renew `held`. */
  report(member, done, held, now) {
    for (const items of this.groups.values()) {
      for (const s of done) items.delete(BigInt(s));
      for (const s of held) { const it = items.get(BigInt(s)); if (it) { it.holder = member; it.renewedAt = now; } }
    }
  }

  /** Items to send (again): [group, item]. `alive(member)` says whether a holder is still a peer. */
  due(now, alive) {
    const out = [];
    for (const [group, items] of this.groups) {
      for (const it of items.values()) {
        const lapsed = it.holder ? (!alive(it.holder) || now - it.renewedAt > this.leaseMs) : (it.sentAt === 0 || now - it.sentAt > this.unclaimedMs);
        if (lapsed) out.push([group, it]);
      }
    }
    return out;
  }

  waiting() { let n = 0; for (const items of this.groups.values()) n += items.size; return n; }
}

module.exports = { Leases };
