'use strict';
// One message = one ZeroMQ frame (docs/protocol.md, *Messages: one frame*): topic, space, a fixed little-endian
// envelope, meta JSON, the optional element index and the DICOM body.
const crypto = require('crypto');
const { MalformedMessage, VersionError } = require('./errors');

const MAGIC = Buffer.from('MDCM');
const MAJOR = 1;
const MINOR = 1;
const FLAG_REPLAYED = 1;
const FLAG_WORK = 2;
const FIXED = 80; // bytes after "topic " up to the meta
const MASK = (1n << 64n) - 1n;
const ZERO16 = Buffer.alloc(16);

// message ids: 8 random bytes per process, then a counter (as meshdcm's)
const idPrefix = crypto.randomBytes(8);
let idCounter = 0n;
function newMessageId() {
  const b = Buffer.alloc(16);
  idPrefix.copy(b, 0);
  b.writeBigUInt64LE(idCounter++ & MASK, 8);
  return b;
}

function checkTopic(topic) {
  const t = Buffer.from(topic, 'utf8');
  if (t.length < 1 || t.length > 255) throw new MalformedMessage(`a topic is 1..255 bytes, not ${t.length}`);
  for (const c of t) if (c <= 0x20) throw new MalformedMessage(`topic ${JSON.stringify(topic)} has a byte <= 0x20`);
  if (t[0] === 0x00 || t[0] === 0xff) throw new MalformedMessage('a topic never starts with 0x00 or 0xFF');
  if (topic.includes('..') || topic.startsWith('.') || topic.endsWith('.')) throw new MalformedMessage(`topic ${JSON.stringify(topic)} is not dotted words`);
  return t;
}

/**
 * Encode a message: {topic, seq (BigInt), flags, timestampNs (BigInt), messageId, sender, correlationId (16-byte
 * Buffers), meta (object or raw Buffer), index, body (Buffers)}.
 */
function encode(m) {
  const topic = checkTopic(m.topic);
  let meta = m.meta;
  if (!Buffer.isBuffer(meta)) meta = meta && Object.keys(meta).length ? Buffer.from(JSON.stringify(meta), 'utf8') : Buffer.alloc(0);
  const index = m.index || Buffer.alloc(0);
  const body = m.body || Buffer.alloc(0);
  const head = Buffer.alloc(topic.length + 1 + FIXED);
  topic.copy(head, 0);
  let o = topic.length;
  head[o++] = 0x20;
  MAGIC.copy(head, o); o += 4;
  head[o++] = MAJOR; head[o++] = m.minor ?? MINOR;
  head.writeUInt16LE(m.flags || 0, o); o += 2;
  head.writeBigUInt64LE(BigInt(m.seq || 0n) & MASK, o); o += 8;
  head.writeBigInt64LE(BigInt(m.timestampNs ?? (BigInt(Date.now()) * 1000000n)), o); o += 8;
  (m.messageId || newMessageId()).copy(head, o); o += 16;
  (m.sender || ZERO16).copy(head, o); o += 16;
  (m.correlationId || ZERO16).copy(head, o); o += 16;
  head.writeUInt32LE(meta.length, o); o += 4;
  head.writeUInt32LE(index.length, o); o += 4;
  return Buffer.concat([head, meta, index, body]);
}

/** Decode a frame; throws MalformedMessage or VersionError as docs/protocol.md says a receiver must refuse. */
function decode(frame) {
  const sp = frame.indexOf(0x20);
  if (sp < 1 || sp > 255) throw new MalformedMessage('no space after a topic of 1..255 bytes');
  const topicBytes = frame.subarray(0, sp);
  const topic = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let topicText;
  try { topicText = topic.decode(topicBytes); } catch { throw new MalformedMessage('the topic is not UTF-8'); }
  let o = sp + 1;
  if (frame.length < o + 6 || !frame.subarray(o, o + 4).equals(MAGIC)) {
    if (frame.length >= o + 4 && !frame.subarray(o, o + 4).equals(MAGIC)) throw new MalformedMessage('the magic is not MDCM');
    throw new MalformedMessage('shorter than the fixed envelope');
  }
  const major = frame[o + 4];
  const minor = frame[o + 5];
  if (major !== MAJOR) throw new VersionError(`protocol ${major}.${minor} is not spoken here (major ${MAJOR})`);
  if (frame.length < o + FIXED) throw new MalformedMessage('shorter than the fixed envelope');
  o += 6;
  const flags = frame.readUInt16LE(o); o += 2;
  const seq = frame.readBigUInt64LE(o); o += 8;
  const timestampNs = frame.readBigInt64LE(o); o += 8;
  const messageId = frame.subarray(o, o + 16); o += 16;
  const sender = frame.subarray(o, o + 16); o += 16;
  const corr = frame.subarray(o, o + 16); o += 16;
  const metaLen = frame.readUInt32LE(o); o += 4;
  const indexLen = frame.readUInt32LE(o); o += 4;
  if (o + metaLen + indexLen > frame.length) throw new MalformedMessage('meta or index length past the end of the frame');
  const metaRaw = frame.subarray(o, o + metaLen); o += metaLen;
  const index = frame.subarray(o, o + indexLen); o += indexLen;
  let meta = {};
  if (metaLen) {
    try { meta = JSON.parse(metaRaw.toString('utf8')); } catch { throw new MalformedMessage('meta is not JSON'); }
    if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) throw new MalformedMessage('meta is not a JSON object');
  }
  if (indexLen % 8) throw new MalformedMessage('the element index is not a whole number of (tag, offset) pairs');
  return {
    topic: topicText, version: [major, minor], flags, seq, timestampNs, messageId: Buffer.from(messageId),
    sender: Buffer.from(sender), correlationId: corr.equals(ZERO16) ? null : Buffer.from(corr), meta,
    metaRaw: Buffer.from(metaRaw), index: Buffer.from(index), body: Buffer.from(frame.subarray(o)),
    isReplay: (flags & FLAG_REPLAYED) !== 0, isWork: (flags & FLAG_WORK) !== 0,
  };
}

/** The frame with a new sequence number and extra flags (replayed, work), everything else unchanged. */
function stamp(frame, seq, extraFlags = 0) {
  const out = Buffer.from(frame);
  const at = out.indexOf(0x20) + 1;
  out.writeUInt16LE(out.readUInt16LE(at + 6) | extraFlags, at + 6);
  if (seq !== undefined && seq !== null) out.writeBigUInt64LE(BigInt(seq) & MASK, at + 8);
  return out;
}

/** Does a subscription prefix match a topic at a dot boundary? (`stored` matches `stored.series`, not `storedx`) */
function topicMatches(prefix, topic) {
  if (prefix === '') return true;
  if (!topic.startsWith(prefix)) return false;
  return topic.length === prefix.length || topic[prefix.length] === '.';
}

module.exports = { encode, decode, stamp, topicMatches, newMessageId, FLAG_REPLAYED, FLAG_WORK, MAJOR, MINOR, MASK };
