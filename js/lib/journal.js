'use strict';
// The publisher's journal (docs/delivery.md, *The journal*): every frame sent, kept IN MEMORY by this library
// (a JavaScript node does not outlive its process: after a restart it is a new stream and cannot replay the
// former one), with retention by age and count; answers REPLAY as docs/protocol.md (*REPLAY and REPLAYED*) says.
const { stamp, FLAG_REPLAYED } = require('./frame');
const { dumps } = require('./control');

const MASK = (1n << 64n) - 1n;
const MAX_REPLAY = 256;

class Journal {
  constructor({ enabled = true, maxFrames = 100000, maxAgeMs = 24 * 3600 * 1000 } = {}) {
    this.enabled = enabled; this.maxFrames = maxFrames; this.maxAgeMs = maxAgeMs;
    this.streams = new Map(); // stream hex -> Map(seq BigInt -> {frame, at})
  }

  append(stream, seq, frame) {
    if (!this.enabled) return;
    const key = stream.toString('hex');
    let s = this.streams.get(key);
    if (!s) this.streams.set(key, (s = new Map()));
    s.set(BigInt(seq), { frame, at: Date.now() });
    if (s.size > this.maxFrames) s.delete(s.keys().next().value);
  }

  /** Retention: drop numbers before `seq` (tests), and frames older than maxAgeMs. */
  removeBefore(stream, seq) {
    const s = this.streams.get(stream.toString('hex'));
    if (s) for (const k of [...s.keys()]) if (k < seq) s.delete(k);
  }

  prune(now = Date.now()) {
    for (const s of this.streams.values()) for (const [k, v] of s) { if (now - v.at > this.maxAgeMs) s.delete(k); else break; }
  }

  /** The answers to a REPLAY request {stream, first, last}: [['FRAME', frame]..., ['REPLAYED', text]]. */
  answer(req) {
    const first = BigInt(req.first) & MASK; const last = BigInt(req.last) & MASK;
    const count = Number(((last - first) & MASK) + 1n);
    const s = this.enabled ? this.streams.get(String(req.stream)) : undefined;
    const out = [];
    let oldest = null; let holdsFirst = false;
    if (s) {
      holdsFirst = s.has(first);
      for (let i = 0; i < Math.min(count, MAX_REPLAY); i++) {
        const n = (first + BigInt(i)) & MASK;
        const e = s.get(n);
        if (e) out.push(['FRAME', stamp(e.frame, n, FLAG_REPLAYED)]);
      }
      if (!holdsFirst) {
        // the first number after `first` that the journal still holds, even beyond `last`
        let best = null;
        for (const k of s.keys()) { const d = (k - first) & MASK; if (d > 0n && d < (1n << 63n) && (best === null || d < best)) best = d; }
        oldest = best === null ? ((last + 1n) & MASK) : ((first + best) & MASK);
      }
    } else oldest = (last + 1n) & MASK;
    const payload = { stream: String(req.stream), first, last, oldest, journal: this.enabled };
    out.push(['REPLAYED', dumps(payload)]);
    return out;
  }
}

module.exports = { Journal };
