'use strict';
// A node's manifest (docs/protocol.md, *Manifest*) and its digest (docs/discovery.md, *The manifest digest*).
const crypto = require('crypto');
const { dumps, Float } = require('./pyjson');

const PROTOCOL = '1.1';

/** The manifest as the receiver reads it: exactly the known keys, group null when empty, started a float. */
function canonical(m) {
  const ep = m.endpoints || {};
  const started = m.started instanceof Float ? m.started : new Float(Number(m.started ?? 0));
  return {
    id: String(m.id), name: String(m.name ?? ''), mesh: String(m.mesh ?? ''), kind: String(m.kind ?? 'node'),
    role: String(m.role ?? 'node'), group: m.group || null, host: String(m.host ?? ''), pid: Math.trunc(Number(m.pid ?? 0)),
    software: String(m.software ?? ''), protocol: String(m.protocol ?? ''),
    endpoints: { control: String(ep.control ?? ''), events: String(ep.events ?? ''), work: String(ep.work ?? '') },
    key: String(m.key ?? ''),
    handlers: (m.handlers || []).map((h) => ({ topic: String(h.topic), where: String(h.where ?? ''), shared: Boolean(h.shared) })),
    capabilities: (m.capabilities || []).map(String), started, extra: m.extra || {},
  };
}

function canonicalJson(m) { return dumps(canonical(m), { sortKeys: true, compact: true }); }

function digest(m) { return crypto.createHash('sha256').update(canonicalJson(m), 'ascii').digest('hex').slice(0, 16); }

module.exports = { canonical, canonicalJson, digest, PROTOCOL };
