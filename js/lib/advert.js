'use strict';
// The mDNS advert (docs/discovery.md, *The records*, *The TXT properties*, *Reading an advert*): its names, TXT
// properties in order, and how a TXT record reads.
const SERVICE = '_meshdcm._tcp.local';

function instanceLabel(name, nodeId) {
  const label = `${[...name].slice(0, 40).join('').replace(/\./g, '-')}-${nodeId.slice(0, 12)}`;
  if (Buffer.byteLength(label) > 63) throw new Error(`the instance name ${JSON.stringify(label)} is over 63 bytes: use a shorter node name`);
  return label;
}
function hostName(nodeId) { return `meshdcm-${nodeId.slice(0, 12)}.local`; }

/** The TXT strings, in order. */
function txtStrings(a) {
  const out = [`id=${a.id}`, `name=${a.name}`, `mesh=${a.mesh}`, `v=${a.v || '1.1'}`, `ctl=${a.ctl}`, `pub=${a.pub}`, `pull=${a.pull || ''}`, `digest=${a.digest}`];
  if (a.key) out.push(`key=${a.key}`);
  for (const s of out) if (Buffer.byteLength(s) > 255) throw new Error(`TXT string ${JSON.stringify(s.slice(0, 30))}... is over 255 bytes`);
  return out.map((s) => Buffer.from(s, 'utf8'));
}

function txtRdata(a) { return Buffer.concat(txtStrings(a).map((s) => Buffer.concat([Buffer.from([s.length]), s]))); }

/** Read TXT strings (Buffers) as an advert {node_id, name, mesh, protocol, control, events, work, digest, key}, or null. */
function readTxt(strings) {
  const props = new Map();
  const dec = new TextDecoder('utf-8');
  for (const s of strings) {
    const text = dec.decode(s);
    const at = text.indexOf('=');
    const key = at < 0 ? text : text.slice(0, at);
    if (!props.has(key)) props.set(key, at < 0 ? '' : text.slice(at + 1));
  }
  const get = (k) => props.get(k) || '';
  if (!get('id') || !get('ctl')) return null;
  return { node_id: get('id'), name: get('name'), mesh: get('mesh'), protocol: get('v'), control: get('ctl'), events: get('pub'), work: get('pull'), digest: get('digest'), key: get('key') };
}

function splitRdata(rdata) {
  const out = [];
  for (let i = 0; i < rdata.length;) { const n = rdata[i]; out.push(rdata.subarray(i + 1, i + 1 + n)); i += 1 + n; }
  return out;
}

module.exports = { SERVICE, instanceLabel, hostName, txtStrings, txtRdata, readTxt, splitRdata };

/** The DNS records of an advert (multicast-dns / dns-packet form), TTLs as docs/discovery.md says. */
function records(a, address, port, { goodbye = false } = {}) {
  const label = instanceLabel(a.name, a.id);
  const instance = `${label}.${SERVICE}`;
  const host = hostName(a.id);
  const ttl = (t) => (goodbye ? 0 : t);
  return [
    { name: SERVICE, type: 'PTR', ttl: ttl(4500), data: instance },
    { name: instance, type: 'SRV', ttl: ttl(120), flush: true, data: { priority: 0, weight: 0, port, target: host } },
    { name: instance, type: 'TXT', ttl: ttl(4500), flush: true, data: txtStrings(a) },
    { name: host, type: 'A', ttl: ttl(120), flush: true, data: address },
    { name: host, type: 'NSEC', ttl: ttl(120), flush: true, data: { nextDomain: host, rrtypes: ['A'] } },
  ];
}

module.exports.records = records;
