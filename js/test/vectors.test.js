'use strict';
// The shared test vectors of docs/vectors/ (every file): the JavaScript library reads and writes them as the
// Python code that generated them does.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const pyjson = require('../lib/pyjson');
const frame = require('../lib/frame');
const { DataView, elementIndex } = require('../lib/dataview');
const { parseFilter } = require('../lib/filter');
const control = require('../lib/control');
const z85 = require('../lib/z85');
const { parseCertificate, Keyring } = require('../lib/keyring');
const { zapReply } = require('../lib/zap');
const manifest = require('../lib/manifest');
const advert = require('../lib/advert');
const { Journal } = require('../lib/journal');
const codec = require('../lib/codec');

const VECTORS = path.join(__dirname, '..', '..', 'docs', 'vectors');
const load = (name, opts) => pyjson.parse(fs.readFileSync(path.join(VECTORS, name), 'utf8'), opts);
const hex = (h) => Buffer.from(h, 'hex');

test('frames.json: every frame decodes to its fields and encodes back to the same bytes', () => {
  for (const v of load('frames.json').frames) {
    const m = frame.decode(hex(v.frame));
    assert.equal(m.topic, v.topic, v.name);
    assert.equal(m.seq, BigInt(v.seq));
    assert.equal(m.timestampNs, BigInt(v.timestamp_ns));
    assert.equal(m.flags, v.flags);
    assert.deepEqual(m.version, v.version);
    assert.equal(m.messageId.toString('hex'), v.message_id);
    assert.equal(m.sender.toString('hex'), v.sender);
    assert.equal(m.correlationId ? m.correlationId.toString('hex') : null, v.correlation_id);
    assert.deepEqual(m.meta, v.meta);
    assert.equal(m.index.toString('hex'), v.index);
    assert.equal(m.body.toString('hex'), v.body);
    if (v.body) assert.equal(elementIndex(m.body).toString('hex'), v.index, 'the index is what the body gives');
    assert.equal(frame.encode({ ...m, meta: m.metaRaw, minor: v.version[1] }).toString('hex'), v.frame);
    assert.deepEqual(JSON.parse(JSON.stringify(codec.toJson(m.body))), v.body_json, 'the body in the DICOM JSON model');
  }
});

test('frames.json: refused frames raise the error kind the vector names', () => {
  for (const v of load('frames.json').refused) {
    if (v.error === null) { frame.decode(hex(v.frame)); continue; }
    assert.throws(() => frame.decode(hex(v.frame)), (e) => e.name === v.error, v.name);
  }
});

test('filters.json: every filter gives its verdicts on both bodies, with and without the element index', () => {
  const v = load('filters.json');
  for (const c of v.cases) {
    const f = parseFilter(c.filter);
    for (const [name, body] of Object.entries(v.bodies)) {
      assert.equal(f.matches(new DataView(hex(body))), c.matches[name], `${c.filter} on ${name}`);
      assert.equal(f.matches(new DataView(hex(body), elementIndex(hex(body)))), c.matches[name], `${c.filter} on ${name} (indexed)`);
    }
    if (c.canonical !== undefined) assert.equal(String(f), c.canonical);
    assert.equal(String(parseFilter(String(f))), String(f), 'the canonical text reads back as itself');
  }
});

test('filters.json: the bodies encode from the DICOM JSON model and decode to it', () => {
  const v = load('filters.json');
  for (const [name, body] of Object.entries(v.bodies)) {
    assert.deepEqual(JSON.parse(JSON.stringify(codec.toJson(hex(body)))), v.bodies_json[name]);
    const again = codec.fromJson(v.bodies_json[name]);
    assert.deepEqual(JSON.parse(JSON.stringify(codec.toJson(again))), v.bodies_json[name], `${name} round trip`);
  }
});

test('filters: a pathological regular expression stays fast (linear-time fallback)', () => {
  const f = parseFilter('SeriesDescription ~ "(a+)+$"');
  const body = codec.fromJson({ '0008103E': { vr: 'LO', Value: [`${'a'.repeat(40)}b`] } });
  const t = Date.now();
  assert.equal(f.matches(new DataView(body)), false);
  assert.ok(Date.now() - t < 2000, `took ${Date.now() - t} ms`);
  assert.throws(() => parseFilter('SeriesDescription ~ "(a)\\1"'), /no backreferences or lookaround/);
  assert.throws(() => parseFilter('SeriesDescription ~ "(?=a)"'), /no backreferences or lookaround/);
  assert.throws(() => parseFilter('Modality = "MR"'), /column 10: expected '==' or '!='/);
});

test('control.json: HELLO reads with 64-bit sequence numbers and writes back as the same text', () => {
  const c = load('control.json', { keepFloats: true });
  const hello = control.parseJson(c.hello.payload_text, { keepFloats: true });
  for (const [stream, s] of Object.entries(c.hello.streams)) {
    assert.equal(hello.streams[stream][0], BigInt(s.last));
    assert.equal(Number(hello.streams[stream][1]), Number(s.started));
  }
  assert.equal(pyjson.dumps(hello), c.hello.payload_text);
  const plain = control.parseHello(c.hello.payload_text);
  assert.equal(plain.streams['0123456789abcdef0123456789abcdef'][0], 9007199254740993n);
  assert.equal(plain.streams['0123456789abcdef0123456789abcd00'][0], 18446744073709551615n);
});

test('control.json: PING, BYE, REPLAY, REPLAYED, WORK, FETCH and WHO payloads', () => {
  for (const m of load('control.json').messages) {
    if (m.kind === 'PING') {
      const p = control.parsePing(m.payload);
      assert.equal(p.id, '0123456789abcdef0123456789abcdef');
      if (m.payload.includes(' ')) { assert.equal(p.last, 42n); assert.equal(control.ping(p.id, 42n, 0, false), m.payload); }
    } else if (m.kind === 'BYE') {
      const b = control.parseBye(m.payload);
      assert.equal(b.id, '0123456789abcdef0123456789abcdef');
      assert.equal(b.last, m.payload.includes(' ') ? 42n : null);
      if (b.last !== null) assert.equal(control.bye(b.id, 42n), m.payload);
    } else if (m.kind === 'WHO') {
      assert.equal(m.payload, '');
    } else {
      const text = pyjson.dumps(m.payload, { sortKeys: true });
      assert.deepEqual(control.parseJson(text), control.parseJson(pyjson.dumps(m.payload, { sortKeys: true })));
      if (m.kind === 'REPLAY') assert.equal(control.parseJson(text).first, 40);
    }
  }
});

test('control.json: REPLAY answers from a journal holding 6..10 are the exact FRAMEs and REPLAYED', () => {
  const c = load('control.json');
  const { holds, stream } = c.replays.journal;
  const make = (keep) => {
    const j = new Journal({ enabled: keep });
    for (let s = 1; s <= holds[1]; s++) j.append(hex(stream), BigInt(s), frame.encode({ topic: 'stored.series', seq: BigInt(s), sender: hex(stream) }));
    j.removeBefore(hex(stream), BigInt(holds[0]));
    return j;
  };
  for (const cs of c.replays.cases) {
    const j = make(!cs.name.includes('no journal'));
    const answers = j.answer(control.parseJson(cs.request_text));
    assert.equal(answers.length, cs.answers.length, cs.name);
    cs.answers.forEach((a, i) => {
      assert.equal(answers[i][0], a.kind);
      if (a.kind === 'FRAME') {
        const m = frame.decode(answers[i][1]);
        assert.equal(m.seq, BigInt(a.seq)); assert.equal(m.flags, a.flags);
      } else assert.equal(answers[i][1], a.payload_text, cs.name);
    });
  }
});

test('control.json: the ready marker', () => {
  const r = load('control.json').ready_marker;
  assert.equal(control.readyMarker(r.node_id).toString('hex'), r.subscription);
  assert.equal(Buffer.concat([Buffer.from([1]), control.readyMarker(r.node_id)]).toString('hex'), r.subscribed);
});

test('discovery.json: manifests, canonical JSON and digests', () => {
  const d = load('discovery.json', { keepFloats: true });
  for (const x of d.digests) {
    assert.equal(manifest.canonicalJson(x.manifest), x.canonical);
    assert.equal(manifest.digest(x.manifest), x.digest);
  }
});

test('discovery.json: adverts (names, TXT data, records), TXT parsing and limits', () => {
  const d = load('discovery.json');
  assert.equal(`${advert.SERVICE}.`, d.service_type);
  for (const a of d.adverts) {
    assert.equal(advert.txtRdata(a.advert).toString('hex'), a.txt_rdata);
    assert.deepEqual(advert.txtStrings(a.advert).map(String), a.txt);
    assert.equal(`${advert.instanceLabel(a.advert.name, a.advert.id)}.${advert.SERVICE}.`, a.instance);
    assert.equal(`${advert.hostName(a.advert.id)}.`, a.host);
    const records = advert.records(a.advert, a.address, a.port);
    for (const want of a.records) {
      const got = records.find((r) => r.type === want.type);
      assert.equal(`${got.name}.`, want.name); assert.equal(got.ttl, want.ttl); assert.equal(Boolean(got.flush), want.cache_flush);
    }
  }
  for (const t of d.txt_parsing) {
    const got = advert.readTxt(advert.splitRdata(hex(t.txt_rdata)));
    assert.deepEqual(got && { ...got }, t.advert === null ? null : { ...t.advert }, t.name);
  }
  for (const l of d.limits) {
    const attempt = () => {
      advert.txtStrings({ id: '0'.repeat(32), name: l.node_name, mesh: 'm', ctl: 'c', pub: 'p', digest: 'd' });
      advert.instanceLabel(l.node_name, '0'.repeat(32));
    };
    if (l.error === null) attempt(); else assert.throws(attempt, l.name);
  }
});

test('keyring.json: Z85, key pairs, certificates, the keyring folder, trust and ZAP', () => {
  const k = load('keyring.json');
  for (const p of k.z85) { assert.equal(z85.encode(hex(p.raw)), p.z85); assert.equal(z85.decode(p.z85).toString('hex'), p.raw); }
  for (const p of k.key_pairs) {
    assert.equal(z85.publicOf(p.secret), p.public);
    assert.equal(z85.decode(p.public).toString('hex'), p.public_raw);
  }
  for (const c of k.certificates) {
    if (c.error) { assert.throws(() => parseCertificate(c.text)); continue; }
    const got = parseCertificate(c.text);
    assert.equal(got.public, c.public, c.name); assert.equal(got.secret, c.secret, c.name);
  }
  const dir = fs.mkdtempSync(path.join(require('os').tmpdir(), 'meshdcm-keyring-'));
  for (const [rel, text] of Object.entries(k.keyring.files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  }
  const ring = new Keyring(dir);
  assert.deepEqual([...ring.readAuthorized()].sort(), [...k.keyring.authorized].sort());
  const own = ring.ownPair();
  assert.deepEqual({ name: own.name, public: own.publicKey, secret: own.secretKey }, k.keyring.own_key);
  for (const t of k.trust) assert.equal(ring.trusts(t.key), t.trusted, JSON.stringify(t.key));
  for (const z of k.zap) {
    const reply = zapReply(z.request.map(hex), (key) => ring.trusts(key));
    assert.deepEqual(reply.map((f) => Buffer.from(f).toString('hex')), z.reply, z.name);
  }
  fs.rmSync(dir, { recursive: true });
});
