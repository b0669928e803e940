'use strict';
// The receiver side of delivery (docs/delivery.md, *Receipts, gaps and replay*), in memory: per stream, `upto`
// (every number up to it settled), numbers settled or in flight above it, the highest seen and the last number
// its owner announced (PING/PONG/BYE); what is missing, and duplicates. Numbers are BigInt, modulo 2^64.
const MASK = (1n << 64n) - 1n;
const HALF = 1n << 63n;
const SCAN = 4096; // missing numbers looked at per stream and tick

const ahead = (base, n) => { const d = (n - base) & MASK; return d !== 0n && d < HALF ? d : 0n; };

class Stream {
  constructor(id, upto) { this.id = id; this.upto = upto; this.settled = new Set(); this.inflight = new Set(); this.highest = upto; this.announced = null; this.announcedAt = 0; this.asked = new Map(); }

  /** true for a new number (now in flight), false for a duplicate */
  accept(seq) {
    if (!ahead(this.upto, seq) || this.settled.has(seq) || this.inflight.has(seq)) return false;
    this.inflight.add(seq);
    if (ahead(this.highest, seq)) this.highest = seq;
    return true;
  }

  settle(seq) {
    this.inflight.delete(seq);
    if (!ahead(this.upto, seq)) return;
    this.settled.add(seq);
    for (;;) { const next = (this.upto + 1n) & MASK; if (!this.settled.has(next)) break; this.settled.delete(next); this.upto = next; }
  }

  announce(last, now) {
    if (last === null || last === undefined) return;
    if (this.announced === null || ahead(this.announced, last)) { this.announced = last; this.announcedAt = now; }
  }

  /** Missing numbers as ranges [first, last] (at most 256 each), up to the highest seen and an announced last
   * that is a second old. */
  missing(now) {
    let end = this.highest;
    if (this.announced !== null && now - this.announcedAt >= 1000 && ahead(end, this.announced)) end = this.announced;
    const ranges = [];
    let n = (this.upto + 1n) & MASK;
    for (let i = 0; i < SCAN && ahead(this.upto, n) && !ahead(end, n); i++, n = (n + 1n) & MASK) {
      if (this.settled.has(n) || this.inflight.has(n)) continue;
      const r = ranges[ranges.length - 1];
      if (r && ((r[1] + 1n) & MASK) === n && ((n - r[0]) & MASK) < 256n) r[1] = n; else ranges.push([n, n]);
    }
    return ranges;
  }
}

module.exports = { Stream, ahead, MASK };
