'use strict';
// Reading a body's top-level elements from its bytes, as meshdcm's dataview does (docs/filters.md, *How it is
// evaluated*): Explicit VR Little Endian, lazily walked or found through the element index. get(tag) returns
// null for an absent or empty element, a string or number for one value, an array for several, and `true` for
// a present sequence or binary element (only exists/missing can test it).
const { MalformedMessage } = require('./errors');

const VALID = new Set('AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV'.split(' '));
const LONG = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
const TEXT = new Set(['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'LO', 'LT', 'PN', 'SH', 'ST', 'TM', 'UC', 'UI', 'UR', 'UT']);
const SINGLE_TEXT = new Set(['LT', 'ST', 'UT', 'UR']);
const CHARSET_VRS = new Set(['LO', 'LT', 'PN', 'SH', 'ST', 'UC', 'UT']);
const NUMBERS = { US: [2, 'readUInt16LE'], SS: [2, 'readInt16LE'], UL: [4, 'readUInt32LE'], SL: [4, 'readInt32LE'],
  FL: [4, 'readFloatLE'], FD: [8, 'readDoubleLE'], SV: [8, 'readBigInt64LE'], UV: [8, 'readBigUInt64LE'] };
const UNDEFINED = 0xffffffff;
const MAX_DEPTH = 16;

function header(buf, pos) {
  if (pos + 8 > buf.length) throw new MalformedMessage(`the DICOM body is truncated at byte ${pos}`);
  const tag = ((buf.readUInt16LE(pos) << 16) | buf.readUInt16LE(pos + 2)) >>> 0;
  const vr = buf.toString('latin1', pos + 4, pos + 6);
  let length; let start;
  if (LONG.has(vr)) {
    if (pos + 12 > buf.length) throw new MalformedMessage(`the DICOM body is truncated at byte ${pos}`);
    length = buf.readUInt32LE(pos + 8); start = pos + 12;
  } else if (VALID.has(vr)) { length = buf.readUInt16LE(pos + 6); start = pos + 8; } else {
    throw new MalformedMessage(`element ${tagText(tag)} has an invalid VR ${JSON.stringify(vr)}`);
  }
  return { tag, vr, start, length };
}

function skipSequence(buf, pos, depth) {
  if (depth > MAX_DEPTH) throw new MalformedMessage(`the DICOM body nests sequences deeper than ${MAX_DEPTH} levels`);
  for (;;) {
    if (pos + 8 > buf.length) throw new MalformedMessage('an undefined-length sequence has no delimiter before the end of the body');
    const group = buf.readUInt16LE(pos); const elem = buf.readUInt16LE(pos + 2); const len = buf.readUInt32LE(pos + 4);
    pos += 8;
    if (group === 0xfffe && elem === 0xe0dd) return pos;
    if (group !== 0xfffe || elem !== 0xe000) throw new MalformedMessage(`expected a sequence item at byte ${pos - 8}`);
    if (len === UNDEFINED) pos = skipItem(buf, pos, depth + 1);
    else { pos += len; if (pos > buf.length) throw new MalformedMessage('a sequence item runs past the end of the body'); }
  }
}

function skipItem(buf, pos, depth) {
  if (depth > MAX_DEPTH) throw new MalformedMessage(`the DICOM body nests sequences deeper than ${MAX_DEPTH} levels`);
  for (;;) {
    if (pos + 8 > buf.length) throw new MalformedMessage('an undefined-length item has no delimiter before the end of the body');
    if (buf.readUInt16LE(pos) === 0xfffe && buf.readUInt16LE(pos + 2) === 0xe00d) return pos + 8;
    const h = header(buf, pos);
    if (h.length === UNDEFINED) pos = skipSequence(buf, h.start, depth + 1);
    else { pos = h.start + h.length; if (pos > buf.length) throw new MalformedMessage('an element runs past the end of an item'); }
  }
}

function tagText(tag) {
  const h = (n) => n.toString(16).toUpperCase().padStart(4, '0');
  return `(${h(tag >>> 16)},${h(tag & 0xffff)})`;
}

function charsetOf(value) {
  const terms = value === null ? [] : Array.isArray(value) ? value : [value];
  if (terms.length === 1 && terms[0] === 'ISO_IR 192') return 'utf-8';
  if (terms.length === 1 && terms[0] === 'ISO_IR 100') return 'latin1';
  return 'latin1'; // ASCII (the default) and, as a stand-in, repertoires this library does not decode
}

class DataView {
  /** body: Buffer; index: the element index (Buffer, may be empty) */
  constructor(body, index) {
    this.buf = body;
    this.elements = new Map(); // tag -> {vr, start, length (-1: undefined-length sequence)}
    this.pos = 0; this.last = -1; this.charset = null;
    if (index && index.length) {
      if (index.length % 8) throw new MalformedMessage('the element index is not a whole number of (tag, offset) pairs');
      this.index = index; this.n = index.length / 8;
    }
  }

  find(tag) {
    if (this.elements.has(tag)) return this.elements.get(tag);
    if (this.index) {
      const found = this.locate(tag);
      this.elements.set(tag, found);
      return found;
    }
    if (tag > this.last) this.walkTo(tag);
    return this.elements.get(tag) || null;
  }

  walkTo(tag) {
    const buf = this.buf;
    while (this.last < tag && this.pos < buf.length) {
      const h = header(buf, this.pos);
      if (h.tag <= this.last) throw new MalformedMessage(`element ${tagText(h.tag)} is out of ascending order`);
      if (h.length === UNDEFINED) {
        if (h.vr !== 'SQ' && h.vr !== 'UN') throw new MalformedMessage(`element ${tagText(h.tag)} VR ${h.vr} has an undefined length`);
        this.elements.set(h.tag, { vr: h.vr, start: h.start, length: -1, header: this.pos });
        this.pos = skipSequence(buf, h.start, 1);
      } else {
        this.elements.set(h.tag, { vr: h.vr, start: h.start, length: h.length, header: this.pos });
        this.pos = h.start + h.length;
        if (this.pos > buf.length) throw new MalformedMessage(`element ${tagText(h.tag)} runs past the end of the body`);
      }
      this.last = h.tag;
    }
  }

  locate(tag) {
    let lo = 0; let hi = this.n;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (this.index.readUInt32LE(mid * 4) < tag) lo = mid + 1; else hi = mid; }
    if (lo === this.n || this.index.readUInt32LE(lo * 4) !== tag) return null;
    const pos = this.index.readUInt32LE((this.n + lo) * 4);
    if (pos + 8 > this.buf.length) throw new MalformedMessage('the element index points past the end of the body');
    const h = header(this.buf, pos);
    if (h.tag !== tag) throw new MalformedMessage('the element index points at the wrong element');
    if (h.length === UNDEFINED) return { vr: h.vr, start: h.start, length: -1, header: pos };
    if (h.start + h.length > this.buf.length) throw new MalformedMessage(`element ${tagText(tag)} runs past the end of the body`);
    return { vr: h.vr, start: h.start, length: h.length, header: pos };
  }

  has(tag) { return this.find(tag) !== null; }

  get(tag) {
    const e = this.find(tag);
    if (!e || e.length === 0) return null;
    if (e.length === -1) return this.buf.readUInt32LE(e.start) === 0xe0ddfffe ? null : true;
    const raw = this.buf.subarray(e.start, e.start + e.length);
    if (TEXT.has(e.vr)) {
      let text;
      if (raw.every((c) => c < 0x80) || !CHARSET_VRS.has(e.vr)) text = raw.toString('latin1');
      else {
        if (this.charset === null) this.charset = tag === 0x00080005 ? 'latin1' : charsetOf(this.get(0x00080005));
        text = this.charset === 'utf-8' ? new TextDecoder('utf-8').decode(raw) : raw.toString('latin1');
      }
      if (SINGLE_TEXT.has(e.vr)) return text.replace(/[\x00 ]+$/, '') || null;
      if (!text.includes('\\')) return text.replace(/^[ \x00]+|[ \x00]+$/g, '') || null;
      const parts = text.replace(/\x00+$/, '').split('\\').map((p) => (e.vr === 'UI' ? p.replace(/[\x00 ]+$/, '').trim() : p.replace(/^ +| +$/g, '')));
      return parts.length === 1 ? (parts[0] || null) : parts;
    }
    const num = NUMBERS[e.vr];
    if (num) {
      const count = Math.floor(e.length / num[0]);
      if (!count) return null;
      const values = [];
      for (let i = 0; i < count; i++) { const v = raw[num[1]](i * num[0]); values.push(typeof v === 'bigint' ? Number(v) : v); }
      return count === 1 ? values[0] : values;
    }
    if (e.vr === 'AT') {
      const count = Math.floor(e.length / 4);
      const tags = [];
      for (let i = 0; i < count; i++) tags.push(((raw.readUInt16LE(i * 4) << 16) | raw.readUInt16LE(i * 4 + 2)) >>> 0);
      return count === 1 ? tags[0] : tags;
    }
    return true;
  }

  /** Every top-level element: [{tag, vr, header offset}], walking the whole body. */
  all() {
    this.walkTo(0xffffffff);
    return [...this.elements.entries()].map(([tag, e]) => ({ tag, ...e }));
  }
}

/** The element index of a body: n uint32 tags, then n uint32 header offsets (docs/protocol.md). */
function elementIndex(body) {
  const els = new DataView(body).all();
  const out = Buffer.alloc(els.length * 8);
  els.forEach((e, i) => { out.writeUInt32LE(e.tag, i * 4); out.writeUInt32LE(e.header, (els.length + i) * 4); });
  return out;
}

module.exports = { DataView, elementIndex, tagText };
