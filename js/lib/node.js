'use strict';
// A meshdcm node in Node.js (docs/protocol.md): three bound sockets (control ROUTER, events PUB, work PULL), a
// DEALER per peer, one SUB for every peer's events, a PUSH per worker group; HELLO/WELCOME/PING/PONG/WHO/BYE,
// receipts and replay, leases, dead letters and dead.* answers, FETCH, CURVE with a keyring.
const os = require('os');
const crypto = require('crypto');
const zmq = require('zeromq');
const frame = require('./frame');
const control = require('./control');
const { Float, dumps } = require('./pyjson');
const manifestLib = require('./manifest');
const { DataView } = require('./dataview');
const { parseFilter } = require('./filter');
const { Journal } = require('./journal');
const { Stream, MASK } = require('./receipts');
const { Leases } = require('./leases');
const { DeadLetters } = require('./deadletters');
const { Files, Fetcher } = require('./transfer');
const { Keyring } = require('./keyring');
const { ZapHandler } = require('./zap');
const codec = require('./codec');
const { HandlerError, MeshError } = require('./errors');

const TIMING = { seedRetry: 200, ping: 500, expire: 2500, rediscoverFor: 60000, tick: 100 };
const chains = new WeakMap(); // socket -> the promise of its last send
const endpointOf = new WeakMap(); // DEALER -> the control endpoint it connects to

class Message {
  constructor(m) { Object.assign(this, m); this._view = null; }
  get view() { return this._view || (this._view = new DataView(this.body, this.index)); }
  get id() { return this.messageId.toString('hex'); }
  /** the value of a keyword or tag, as a filter reads it */
  get(keyword) { const { tagForKeyword } = require('./filter'); return this.view.get(typeof keyword === 'number' ? keyword : tagForKeyword(keyword)); }
  get dataset() { return codec.toNatural(this.body); }
  get uris() { return Array.isArray(this.meta.uris) ? this.meta.uris : []; }
}

class Node {
  /**
   * options: name, mesh (default $MESHDCM_MESH or "default"), kind, group, address (127.0.0.1), peers
   * (["tcp://HOST:PORT" or "KEYNAME@tcp://..."]), discovery (mDNS on the address; default false), keyring
   * (folder), key (name), maxAttempts (3), retryBackoff (seconds, 0.5), journal (true), log (function).
   */
  constructor(options = {}) {
    this.name = options.name || `js-${process.pid}`;
    this.mesh = options.mesh || process.env.MESHDCM_MESH || 'default';
    this.kind = options.kind || 'js';
    this.group = options.group || null;
    this.address = options.address || '127.0.0.1';
    this.staticPeers = options.peers || (process.env.MESHDCM_PEERS ? process.env.MESHDCM_PEERS.split(',') : []);
    if (options.discovery) throw new MeshError('mDNS discovery is not in the JavaScript library yet (lib/advert.js has the advert); give static peers: peers: ["tcp://HOST:PORT"] or MESHDCM_PEERS');
    this.maxAttempts = options.maxAttempts || 3;
    this.retryBackoff = options.retryBackoff ?? 0.5;
    this.log = options.log || ((line) => process.stderr.write(`${new Date().toISOString()} ${this.name}: ${line}\n`));
    this.idBytes = crypto.randomBytes(16);
    this.id = this.idBytes.toString('hex');
    this.started = Date.now() / 1000;
    this.seq = 0n;
    this.handlers = [];
    this.internal = [{ topic: 'dead', filter: parseFilter(''), shared: false, fn: (m) => this.dead.answer(m), name: 'dead' }];
    this.journal = new Journal({ enabled: options.journal !== false });
    this.leases = new Leases();
    this.dead = new DeadLetters(this);
    this.files = new Files();
    this.counters = { malformed: 0, refused: 0, unknown_sender: 0, duplicates: 0, lost: 0, handled: 0, failed: 0 };
    this.peers = new Map(); // node id -> {manifest, dealer, heard, key}
    this.seeds = new Map(); // control endpoint -> {key, static, until, dealer, nextAt}
    this.streams = new Map(); // stream hex -> Stream
    this.homes = new Map(); // stream hex -> node id that answers for it
    this.knownNames = new Map(); // node name -> first time heard (ms)
    this.workDone = new Map(); // message id hex -> time (member side)
    this.workHeld = new Map(); // message id hex -> {stream, seq}
    this.queue = []; this.running = 0; this.concurrency = options.concurrency || 1;
    this.keyringFolder = options.keyring || null; this.keyName = options.key || null;
    this.stopped = false;
  }

  /** Register a handler: node.on(topic, fn) or node.on(topic, where, fn, {shared}). */
  on(topic, where, fn, { shared } = {}) {
    if (typeof where === 'function') { fn = where; where = ''; }
    const isShared = shared === undefined ? Boolean(this.group) : shared;
    if (isShared && !this.group) throw new MeshError(`handler for ${topic} is shared but node ${this.name} has no group`);
    if (this.context) throw new MeshError('add handlers before start()');
    this.handlers.push({ topic, filter: parseFilter(where), shared: isShared, fn, name: fn.name || topic });
    return this;
  }

  get errorTopic() { return `error.${this.name.replace(/[^A-Za-z0-9_.-]/g, '-')}`; }

  manifest() {
    return {
      id: this.id, name: this.name, mesh: this.mesh, kind: this.kind, role: 'node', group: this.group, host: os.hostname(),
      pid: process.pid, software: '0.1.0-js', protocol: manifestLib.PROTOCOL, endpoints: this.endpoints, key: this.pair ? this.pair.publicKey : '',
      handlers: [...this.handlers, ...this.internal].map((h) => ({ topic: h.topic, where: String(h.filter), shared: h.shared })),
      capabilities: ['javascript'], started: new Float(this.started), extra: {},
    };
  }

  hello() {
    const peers = [...this.peers.values()].map((p) => ({ control: p.manifest.endpoints.control, key: p.key || '' })).slice(0, 64);
    return dumps({ manifest: this.manifest(), peers, streams: { [this.id]: [this.seq, new Float(this.started)] } });
  }

  // --- sockets -------------------------------------------------------------------------------------------
  curveServer(sock) {
    if (!this.pair) return;
    sock.curveServer = true; sock.curvePublicKey = this.pair.publicKey; sock.curveSecretKey = this.pair.secretKey;
  }

  curveClient(sock, serverKey) {
    if (!this.pair) return;
    sock.curvePublicKey = this.pair.publicKey; sock.curveSecretKey = this.pair.secretKey; sock.curveServerKey = serverKey;
  }

  send(sock, frames) { // zeromq.js allows one send in progress per socket: chain them
    if (!sock || sock.closed) return Promise.resolve(false);
    const chain = (chains.get(sock) || Promise.resolve()).then(() => (sock.closed ? false : sock.send(frames).then(() => true))).catch(() => false);
    chains.set(sock, chain);
    return chain;
  }

  async bind(sock) {
    await sock.bind(`tcp://${this.address}:0`);
    return sock.lastEndpoint;
  }

  async start() {
    this.context = new zmq.Context();
    if (this.keyringFolder) {
      this.keyring = new Keyring(this.keyringFolder, { log: this.log });
      this.pair = this.keyring.ownPair(this.keyName);
      this.zap = new ZapHandler(this.context, (k) => this.keyring.trusts(k));
      await this.zap.start();
    }
    const ctx = this.context;
    this.control = new zmq.Router({ context: ctx, linger: 0, maxMessageSize: 1 << 20 });
    this.events = new zmq.Publisher({ context: ctx, linger: 0 });
    this.sub = new zmq.Subscriber({ context: ctx, linger: 0, maxMessageSize: 16 << 20, reconnectMaxInterval: 5000 });
    for (const s of [this.control, this.events]) this.curveServer(s);
    this.endpoints = { control: await this.bind(this.control), events: await this.bind(this.events), work: '' };
    if (this.handlers.some((h) => h.shared)) {
      this.work = new zmq.Pull({ context: ctx, linger: 0, maxMessageSize: 16 << 20 });
      this.curveServer(this.work);
      this.endpoints.work = await this.bind(this.work);
      this.loop(this.work, (msg) => this.onFrame(msg[0], true));
    }
    this.sub.subscribe('');
    this.sub.subscribe(control.readyMarker(this.id));
    this.pushes = new Map(); // group -> Push socket
    this.fetcher = new Fetcher(this);
    this.loop(this.control, (msg) => this.onControl(msg));
    this.loop(this.sub, (msg) => this.onFrame(msg[0], false));
    for (const p of this.staticPeers) this.seed(p, { isStatic: true });
    this.timer = setInterval(() => this.tick(), TIMING.tick);
    this.log(`node ${this.name} (${this.id.slice(0, 12)}, kind ${this.kind}, group ${this.group || '-'}) started on ${this.address}: control ${this.endpoints.control}, events ${this.endpoints.events}${this.endpoints.work ? `, work ${this.endpoints.work}` : ''}`);
    return this;
  }

  loop(sock, fn) {
    (async () => {
      for await (const msg of sock) {
        try { fn(msg); } catch (e) { this.log(`error handling a message: ${e.stack || e}`); }
      }
    })().catch((e) => { if (!this.stopped) this.log(`socket loop ended: ${e.message}`); });
  }

  async stop() {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    const byes = [...this.peers.values()].map((p) => this.send(p.dealer, ['BYE', control.bye(this.id, this.seq)]));
    await Promise.race([Promise.all(byes), new Promise((r) => setTimeout(r, 500))]);
    await new Promise((r) => setTimeout(r, 100));
    const socks = [this.control, this.events, this.sub, this.work, ...this.pushes.values(), ...[...this.peers.values()].map((p) => p.dealer), ...[...this.seeds.values()].map((s) => s.dealer)];
    for (const s of socks) if (s && !s.closed) s.close();
    if (this.zap) this.zap.close();
    this.log(`node ${this.name} stopped`);
  }

  // --- peers ---------------------------------------------------------------------------------------------
  dealerTo(endpoint, key) {
    const d = new zmq.Dealer({ context: this.context, linger: 0, immediate: true, sendTimeout: 0, reconnectMaxInterval: 2000, maxMessageSize: 16 << 20 });
    this.curveClient(d, key);
    d.connect(endpoint);
    endpointOf.set(d, endpoint);
    this.loop(d, (msg) => this.onAnswer(d, msg));
    return d;
  }

  seed(spec, { isStatic = false, key = '' } = {}) {
    let endpoint = spec;
    const at = spec.indexOf('@');
    if (at > 0) { key = this.keyring ? this.keyring.keyOf(spec.slice(0, at)) : ''; endpoint = spec.slice(at + 1); }
    if (endpoint === this.endpoints.control) return;
    const known = this.seeds.get(endpoint);
    if (known) { known.until = isStatic ? Infinity : Date.now() + TIMING.rediscoverFor; if (isStatic) known.static = true; return; }
    this.seeds.set(endpoint, { key, static: isStatic, until: isStatic ? Infinity : Date.now() + TIMING.rediscoverFor, dealer: null, nextAt: 0 });
  }

  peerAt(endpoint) { for (const p of this.peers.values()) if (p.manifest.endpoints.control === endpoint) return p; return null; }

  /** A HELLO or WELCOME: add or refresh the peer. Returns false when it is ignored. */
  meet(payload, dealer) {
    let h;
    try { h = control.parseHello(payload); } catch { this.counters.malformed++; return false; }
    const m = h.manifest;
    if (!/^[0-9a-f]{32}$/.test(String(m.id)) || m.id === this.id || m.mesh !== this.mesh || !String(m.protocol || '').startsWith('1.')) return false;
    if (this.keyring && !this.keyring.trusts(m.key)) { this.log(`ignored HELLO of ${m.name}: its key is not in the keyring`); return false; }
    const endpoint = m.endpoints && m.endpoints.control;
    const old = this.peerAt(endpoint);
    if (old && old.manifest.id !== m.id) this.drop(old.manifest.id, 'replaced by a restart on the same endpoint');
    let peer = this.peers.get(m.id);
    if (!peer) {
      if (this.peers.size >= 1024) return false;
      const seed = this.seeds.get(endpoint);
      const d = dealer && endpointOf.get(dealer) === endpoint ? dealer : this.dealerTo(endpoint, m.key);
      if (seed && seed.dealer && seed.dealer !== d) { seed.dealer.close(); }
      if (seed) seed.dealer = null;
      peer = { manifest: m, dealer: d, heard: Date.now(), key: m.key || '' };
      this.peers.set(m.id, peer);
      this.curveClient(this.sub, m.key);
      this.sub.connect(m.endpoints.events);
      this.connectWork(peer);
      this.log(`peer ${m.name} (${m.id.slice(0, 12)}, ${m.kind}) joined`);
    }
    peer.manifest = m; peer.heard = Date.now();
    if (!this.knownNames.has(m.name)) this.knownNames.set(m.name, Date.now());
    const knewName = this.knownNames.get(m.name);
    for (const [sid, [last, started]] of Object.entries(h.streams)) {
      this.homes.set(sid, m.id);
      let s = this.streams.get(sid);
      if (!s && sid === m.id) {
        // first contact: from the announced last, unless this node knew the sender's name before the stream began
        s = new Stream(sid, knewName < started * 1000 ? 0n : last);
        this.streams.set(sid, s);
      }
      if (s) s.announce(last, Date.now());
    }
    for (const g of h.peers) {
      if (typeof g.control === 'string' && g.control.startsWith('tcp://') && g.control !== this.endpoints.control && !this.peerAt(g.control)) {
        if (!this.keyring || this.keyring.trusts(g.key)) this.seed(g.control, { key: g.key || '' });
      }
    }
    return true;
  }

  connectWork(peer) {
    const m = peer.manifest;
    if (!m.group || !m.endpoints.work) return;
    let push = this.pushes.get(m.group);
    if (!push) {
      push = new zmq.Push({ context: this.context, linger: 0, sendTimeout: 0, immediate: true });
      this.pushes.set(m.group, push);
    }
    this.curveClient(push, m.key);
    push.connect(m.endpoints.work);
  }

  drop(id, why) {
    const peer = this.peers.get(id);
    if (!peer) return;
    this.peers.delete(id);
    if (peer.dealer && !peer.dealer.closed) peer.dealer.close();
    const m = peer.manifest;
    const push = m.group && this.pushes.get(m.group);
    if (push && m.endpoints.work) { try { push.disconnect(m.endpoints.work); } catch { /* gone */ } }
    this.log(`peer ${m.name} (${id.slice(0, 12)}) left: ${why}`);
  }

  // --- control socket (ROUTER) ---------------------------------------------------------------------------
  onControl(msg) {
    if (msg.length < 3 || msg.length > 3) { this.counters.malformed++; return; }
    const [rid, kindB, payload] = msg;
    const kind = kindB.toString('ascii');
    const reply = (...frames) => this.send(this.control, [rid, ...frames]);
    if (kind === 'HELLO') {
      if (this.meet(payload, null)) reply('WELCOME', this.hello());
    } else if (kind === 'PING') {
      let p; try { p = control.parsePing(payload.toString('ascii')); } catch { this.counters.malformed++; return; }
      reply('PONG', control.ping(this.id, this.seq, this.queue.length, false));
      const peer = this.peers.get(p.id);
      if (!peer) reply('WHO', ''); else { peer.heard = Date.now(); this.announced(p.id, p.last); }
    } else if (kind === 'REPLAY') {
      let req; try { req = control.parseJson(payload); } catch { this.counters.malformed++; return; }
      for (const [k, body] of this.journal.answer(req)) reply(k, body);
    } else if (kind === 'WORK') {
      let r; try { r = control.parseJson(payload); } catch { this.counters.malformed++; return; }
      const peer = this.peers.get(String(r.node)); if (peer) peer.heard = Date.now();
      this.leases.report(String(r.node), r.done || [], r.held || [], Date.now());
    } else if (kind === 'BYE') {
      let b; try { b = control.parseBye(payload.toString('ascii')); } catch { this.counters.malformed++; return; }
      this.announced(b.id, b.last, true);
      const peer = this.peers.get(b.id);
      if (peer) {
        const seed = this.seeds.get(peer.manifest.endpoints.control);
        this.drop(b.id, 'BYE');
        if (seed && !seed.static) this.seeds.delete(peer.manifest.endpoints.control);
      }
    } else if (kind === 'FETCH') {
      const frames = this.files.answer(payload);
      reply(...frames);
    } else this.counters.malformed++;
  }

  announced(id, last, bye = false) {
    if (last === null || last === undefined) return;
    const s = this.streams.get(id);
    if (s) s.announce(last, bye ? Date.now() : Date.now());
  }

  // --- answers on a DEALER -------------------------------------------------------------------------------
  onAnswer(dealer, msg) {
    const kind = msg[0].toString('ascii');
    const peer = [...this.peers.values()].find((p) => p.dealer === dealer);
    if (peer) peer.heard = Date.now();
    if (kind === 'WELCOME') this.meet(msg[1], dealer);
    else if (kind === 'PONG') { try { const p = control.parsePing(msg[1].toString('ascii')); this.announced(p.id, p.last); } catch { this.counters.malformed++; } }
    else if (kind === 'WHO') { if (peer) this.send(dealer, ['HELLO', this.hello()]); }
    else if (kind === 'FRAME') this.onFrame(msg[1], false);
    else if (kind === 'REPLAYED') this.onReplayed(msg[1]);
    else if (kind === 'DATA' || kind === 'LIST' || kind === 'NOFILE') this.fetcher.deliver(kind, msg[1], msg[2]);
  }

  onReplayed(payload) {
    let r; try { r = control.parseJson(payload); } catch { this.counters.malformed++; return; }
    const s = this.streams.get(String(r.stream));
    if (!s) return;
    s.asked.delete(BigInt(r.first));
    if (r.oldest === null || r.oldest === undefined) return;
    const first = BigInt(r.first) & MASK; const oldest = BigInt(r.oldest) & MASK;
    const lost = [];
    for (let n = first; n !== oldest && lost.length < 1 << 20; n = (n + 1n) & MASK) {
      if (!s.inflight.has(n) && !s.settled.has(n)) { s.settle(n); lost.push(n); }
    }
    if (lost.length) {
      this.counters.lost += lost.length;
      const peer = this.peers.get(this.homes.get(s.id));
      const reason = `lost messages ${lost[0]}..${lost[lost.length - 1]} of node ${peer ? peer.manifest.name : s.id.slice(0, 12)}: ${r.journal === false ? 'it keeps no journal' : "they are beyond its journal's retention"}`;
      this.log(reason);
      this.publishError({ topic: '', handler: 'delivery', reason, action: 'ask the sender to publish them again if they matter', next: 'nothing: they are gone' });
    }
  }

  // --- events and work items -----------------------------------------------------------------------------
  onFrame(raw, work) {
    let m;
    try { m = new Message(frame.decode(raw)); } catch (e) {
      if (e.name === 'VersionError') this.counters.refused++; else this.counters.malformed++;
      return;
    }
    const sender = m.sender.toString('hex');
    if (!this.homes.has(sender)) { this.counters.unknown_sender++; return; }
    let stream = null;
    if (work) {
      const id = m.id;
      if (this.workDone.has(id)) { this.counters.duplicates++; this.workReport(sender, [m.seq], []); return; }
      if (this.workHeld.has(id)) { this.counters.duplicates++; return; }
      this.workHeld.set(id, { stream: sender, seq: m.seq });
      this.workReport(sender, [], [m.seq]);
    } else {
      stream = this.streams.get(sender);
      if (!stream) { stream = new Stream(sender, (m.seq - 1n) & MASK); this.streams.set(sender, stream); }
      if (!stream.accept(m.seq)) { this.counters.duplicates++; return; }
    }
    const candidates = work ? this.handlers.filter((h) => h.shared) : [...this.handlers.filter((h) => !h.shared), ...this.internal];
    const matched = [];
    for (const h of candidates) {
      if (!frame.topicMatches(h.topic, m.topic)) continue;
      try { if (h.filter.matches(m.view)) matched.push(h); } catch (e) { this.counters.malformed++; break; }
    }
    const receipt = { left: matched.length, done: () => this.settle(m, stream, work) };
    if (!matched.length) { receipt.done(); return; }
    for (const h of matched) this.enqueue({ handler: h, msg: m, attempt: 1, receipt });
  }

  settle(m, stream, work) {
    if (work) {
      this.workHeld.delete(m.id);
      this.workDone.set(m.id, Date.now());
      this.workReport(m.sender.toString('hex'), [m.seq], []);
    } else if (stream) stream.settle(m.seq);
  }

  workReport(streamHex, done, held) {
    const home = this.peers.get(this.homes.get(streamHex));
    if (!home) return;
    this.send(home.dealer, ['WORK', dumps({ node: this.id, stream: streamHex, done, held })]);
  }

  enqueue(job) { this.queue.push(job); this.pump(); }

  pump() {
    while (this.running < this.concurrency && this.queue.length) {
      const job = this.queue.shift();
      this.running++;
      this.runJob(job).finally(() => { this.running--; this.pump(); });
    }
  }

  async runJob(job) {
    const { handler, msg } = job;
    try {
      await handler.fn(msg, this);
      this.counters.handled++;
      if (--job.receipt.left === 0) job.receipt.done();
    } catch (e) {
      this.counters.failed++;
      const retry = !(e instanceof HandlerError) || e.retry;
      if (retry && job.attempt < this.maxAttempts) {
        const wait = this.retryBackoff * 2 ** (job.attempt - 1);
        this.reportFailure(job, e, `retrying in ${wait} s (attempt ${job.attempt + 1} of ${this.maxAttempts})`);
        setTimeout(() => this.enqueue({ ...job, attempt: job.attempt + 1 }), wait * 1000);
        return;
      }
      const letter = this.dead.add(job, e);
      this.reportFailure(job, e, `kept as dead letter ${letter.id}: meshdcm dead retry ${this.name} ${letter.id}`, { node: this.name, id: letter.id });
      if (--job.receipt.left === 0) job.receipt.done();
    }
  }

  reportFailure(job, exc, next, deadLetter) {
    const { handler, msg } = job;
    this.log(`handler ${handler.name} failed on ${msg.topic} (message ${msg.id.slice(0, 12)}, attempt ${job.attempt} of ${this.maxAttempts}): ${exc.message}`);
    this.publishError({
      handler: handler.name, topic: msg.topic, message_id: msg.id, sender: msg.sender.toString('hex'), reason: exc.message,
      exception: exc.name || 'Error', attempt: job.attempt, attempts: this.maxAttempts,
      action: exc.action || 'look at the node\'s log; fix the cause, then retry the dead letter', next,
    }, msg, deadLetter);
  }

  /** Publish an error.<node> event (docs/protocol.md, *Meta keys*: `error`); its body holds only the UIDs. */
  publishError(fields, about = null, deadLetter = null) {
    const error = { node: this.name, node_id: this.id, kind: this.kind, handler: '', topic: '', message_id: '', sender: '', reason: '', exception: '', attempt: 0, attempts: this.maxAttempts, action: '', next: '', ...fields };
    const meta = { error };
    if (deadLetter) meta.dead_letter = deadLetter;
    let body = Buffer.alloc(0);
    if (about) {
      const uids = {};
      for (const k of ['StudyInstanceUID', 'SeriesInstanceUID', 'SOPInstanceUID']) { const v = about.get(k); if (typeof v === 'string') uids[k] = v; }
      body = codec.fromNatural(uids);
    }
    return this.publish(this.errorTopic, body, { meta, correlationId: about ? about.messageId : null });
  }

  // --- publishing ----------------------------------------------------------------------------------------
  /**
   * Publish a message. body: a Buffer (a body already encoded), a naturalized data set ({Modality: "MR"}), or
   * nothing; options: meta, uris, replyTo (a Message), correlationId.
   */
  publish(topic, body, { meta = {}, uris, replyTo, correlationId } = {}) {
    if (!this.context || this.stopped) throw new MeshError(`node ${this.name} is not started: call start()`);
    if (body && !Buffer.isBuffer(body)) body = codec.fromNatural(body);
    body = body || Buffer.alloc(0);
    if (uris) meta = { ...meta, uris: [...uris] };
    const { elementIndex } = require('./dataview');
    this.seq = (this.seq + 1n) & MASK;
    const m = { topic, seq: this.seq, sender: this.idBytes, correlationId: replyTo ? replyTo.messageId : correlationId, meta, index: body.length ? elementIndex(body) : null, body };
    const raw = frame.encode(m);
    this.journal.append(this.idBytes, this.seq, raw);
    this.send(this.events, [raw]);
    for (const group of this.groupsFor(topic)) {
      const item = this.leases.add(group, this.seq, frame.stamp(raw, this.seq, frame.FLAG_WORK), Date.now());
      this.pushItem(group, item);
    }
    return frame.decode(raw);
  }

  groupsFor(topic) {
    const groups = new Set();
    for (const p of this.peers.values()) {
      const m = p.manifest;
      if (m.group && (m.handlers || []).some((h) => h.shared && frame.topicMatches(h.topic, topic))) groups.add(m.group);
    }
    return groups;
  }

  pushItem(group, item) {
    const push = this.pushes.get(group);
    item.sentAt = Date.now();
    if (!push) { item.sentAt = 0; return; }
    this.send(push, [item.frame]).then((ok) => { if (!ok) item.sentAt = 0; });
  }

  // --- timer ---------------------------------------------------------------------------------------------
  tick() {
    const now = Date.now();
    for (const [endpoint, s] of this.seeds) {
      if (this.peerAt(endpoint)) continue;
      if (now > s.until) { if (s.dealer) s.dealer.close(); this.seeds.delete(endpoint); continue; }
      if (now < s.nextAt) continue;
      s.nextAt = now + TIMING.seedRetry;
      if (!s.dealer) s.dealer = this.dealerTo(endpoint, s.key);
      this.send(s.dealer, ['HELLO', this.hello()]);
    }
    for (const [id, p] of [...this.peers]) {
      if (now - p.heard > TIMING.expire) {
        const ep = p.manifest.endpoints.control;
        this.drop(id, 'expired');
        this.seed(ep, { key: p.key, isStatic: Boolean(this.seeds.get(ep) && this.seeds.get(ep).static) });
      } else if (now - (p.pinged || 0) >= TIMING.ping) {
        p.pinged = now;
        this.send(p.dealer, ['PING', control.ping(this.id, this.seq, this.queue.length, false)]);
      }
    }
    if (this.queue.length < 2000) {
      for (const s of this.streams.values()) {
        const home = this.peers.get(this.homes.get(s.id));
        if (!home) continue;
        for (const [first, last] of s.missing(now).slice(0, 4)) {
          const askedAt = s.asked.get(first);
          if (askedAt && now - askedAt < 1000) continue;
          s.asked.set(first, now);
          this.send(home.dealer, ['REPLAY', dumps({ stream: s.id, first, last })]);
        }
      }
    }
    for (const [group, item] of this.leases.due(now, (member) => this.peers.has(member))) {
      if (item.holder && !this.peers.has(item.holder)) item.holder = null;
      this.pushItem(group, item);
    }
    if (now - (this.renewedAt || 0) >= 1000) {
      this.renewedAt = now;
      const byStream = new Map();
      for (const { stream, seq } of this.workHeld.values()) { if (!byStream.has(stream)) byStream.set(stream, []); byStream.get(stream).push(seq); }
      for (const [stream, held] of byStream) this.workReport(stream, [], held);
      if (now - (this.prunedAt || 0) > 60000) { this.prunedAt = now; this.journal.prune(now); }
    }
  }

  // --- files ---------------------------------------------------------------------------------------------
  /** Serve a folder as meshdcm://<node id>/<name>/... */
  serve(name, folder) { this.files.add(name, folder); }
  uri(name, rel) { return `meshdcm://${this.id}/${name}/${rel}`; }
  /** The bytes of a meshdcm:// or file:// URI (or a plain path); a folder's URI gives its file list. */
  fetch(uri, opts) { return this.fetcher.fetch(uri, opts); }
}

module.exports = { Node, Message, TIMING };
