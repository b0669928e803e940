'use strict';
// Control payloads (docs/protocol.md, *Control messages*): ASCII text for PING/PONG/BYE, JSON for the others,
// sequence numbers as BigInt.
const pyjson = require('./pyjson');

const MASK = (1n << 64n) - 1n;

function parseJson(payload, opts) {
  const v = pyjson.parse(Buffer.isBuffer(payload) ? payload.toString('utf8') : payload, opts);
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new SyntaxError('not a JSON object');
  return v;
}
function dumps(v) { return pyjson.dumps(v); }

const ID = /^[0-9a-f]{32}$/;
function seqOf(text) {
  if (!/^\d{1,20}$/.test(text)) throw new SyntaxError(`not a sequence number: ${text}`);
  const n = BigInt(text);
  if (n > MASK) throw new SyntaxError('sequence number beyond 2^64-1');
  return n;
}

function ping(id, last, pending, behind) { return `${id} ${last} ${pending} ${behind ? 1 : 0}`; }
function parsePing(text) {
  const parts = String(text).split(' ');
  if (!ID.test(parts[0])) throw new SyntaxError('not a node id');
  if (parts.length === 1) return { id: parts[0], last: null, pending: 0, behind: false };
  return { id: parts[0], last: seqOf(parts[1]), pending: Number(parts[2] || 0), behind: parts[3] === '1' };
}
function bye(id, last) { return `${id} ${last}`; }
function parseBye(text) {
  const parts = String(text).split(' ');
  if (!ID.test(parts[0])) throw new SyntaxError('not a node id');
  return { id: parts[0], last: parts.length > 1 ? seqOf(parts[1]) : null };
}

/** HELLO/WELCOME payload {manifest, peers, streams}: stream values [BigInt last, started]. */
function parseHello(text) {
  const h = parseJson(text);
  if (!h.manifest || typeof h.manifest !== 'object') throw new SyntaxError('HELLO without a manifest');
  const streams = {};
  let n = 0;
  for (const [id, v] of Object.entries(h.streams || {})) {
    if (n++ > 256) break;
    if (ID.test(id) && Array.isArray(v)) streams[id] = [BigInt(v[0]), Number(v[1])];
  }
  return { manifest: h.manifest, peers: (Array.isArray(h.peers) ? h.peers : []).slice(0, 64), streams };
}

/** The ready marker subscription: 0xFF "ready." <node id hex>. */
function readyMarker(nodeId) { return Buffer.concat([Buffer.from([0xff]), Buffer.from(`ready.${nodeId}`, 'ascii')]); }

module.exports = { parseJson, dumps, ping, parsePing, bye, parseBye, parseHello, readyMarker, MASK };
