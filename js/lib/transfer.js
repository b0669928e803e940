'use strict';
// Files over the control sockets (docs/protocol.md, *Data URIs*): serving FETCH (DATA / LIST / NOFILE) and
// fetching meshdcm:// URIs with a few 256 KiB chunks in flight; file:// URIs and plain paths are read locally.
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { parseJson, dumps } = require('./control');
const { TransferError } = require('./errors');

const CHUNK = 256 * 1024;
const MAX_SIZE = 4 * CHUNK;

class Files {
  constructor() { this.roots = new Map(); }
  add(name, folder) { this.roots.set(name, fs.realpathSync(folder)); }

  resolve(rel) {
    if (typeof rel !== 'string' || rel.length > 4096 || rel.includes('\0')) throw new Error('a path is text without NUL, at most 4,096 characters');
    const [name, ...rest] = rel.split('/');
    const root = this.roots.get(name);
    if (!root) throw new Error(`nothing is served as ${JSON.stringify(name)}`);
    const target = fs.realpathSync(path.join(root, ...rest));
    if (target !== root && !target.startsWith(root + path.sep)) throw new Error('the path leaves the served folder');
    return target;
  }

  answer(payload) {
    let req = '';
    try {
      const r = parseJson(payload);
      req = String(r.req).slice(0, 64);
      const target = this.resolve(r.path);
      if (fs.statSync(target).isDirectory()) {
        const files = [];
        const walk = (dir) => { for (const e of fs.readdirSync(dir, { withFileTypes: true })) { const p = path.join(dir, e.name); if (e.isDirectory()) walk(p); else if (e.isFile()) files.push(path.relative(target, p).split(path.sep).join('/')); } };
        walk(target);
        return ['LIST', dumps({ req, files: files.sort() })];
      }
      const offset = Number(r.offset || 0); const size = Math.min(Number(r.size || CHUNK), MAX_SIZE);
      if (!(offset >= 0) || !(size >= 0)) throw new Error('offset and size are >= 0');
      const fd = fs.openSync(target, 'r');
      try {
        const total = fs.fstatSync(fd).size;
        const buf = Buffer.alloc(Math.max(0, Math.min(size, total - offset)));
        fs.readSync(fd, buf, 0, buf.length, offset);
        return ['DATA', dumps({ req, offset, total }), buf];
      } finally { fs.closeSync(fd); }
    } catch (e) {
      return ['NOFILE', dumps({ req, reason: e.message })];
    }
  }
}

class Fetcher {
  constructor(node) { this.node = node; this.waiting = new Map(); }

  deliver(kind, header, data) {
    let h; try { h = parseJson(header); } catch { return; }
    const w = this.waiting.get(String(h.req));
    if (w) { this.waiting.delete(String(h.req)); w({ kind, h, data }); }
  }

  ask(dealer, path, offset, timeoutMs) {
    const req = crypto.randomBytes(8).toString('hex');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.waiting.delete(req); reject(new TransferError(`no answer for ${path} within ${timeoutMs} ms`)); }, timeoutMs);
      this.waiting.set(req, (a) => { clearTimeout(timer); resolve(a); });
      this.node.send(dealer, ['FETCH', dumps({ req, path, offset, size: CHUNK })]);
    });
  }

  /** Bytes of a file (Buffer), or {files} for a folder. */
  async fetch(uri, { timeoutMs = 10000 } = {}) {
    if (uri.startsWith('file://')) return fs.readFileSync(decodeURIComponent(new URL(uri).pathname));
    if (!uri.startsWith('meshdcm://')) return fs.readFileSync(uri);
    const rest = uri.slice('meshdcm://'.length);
    const at = rest.indexOf('/');
    const nodeId = rest.slice(0, at); const rel = rest.slice(at + 1);
    if (nodeId === this.node.id) return fs.readFileSync(this.node.files.resolve(rel));
    const peer = this.node.peers.get(nodeId);
    if (!peer) throw new TransferError(`node ${nodeId.slice(0, 12)} that serves ${uri} is not in the mesh`);
    const first = await this.ask(peer.dealer, rel, 0, timeoutMs);
    if (first.kind === 'NOFILE') throw new TransferError(`${uri}: ${first.h.reason}`);
    if (first.kind === 'LIST') return { files: first.h.files };
    const total = Number(first.h.total);
    const out = Buffer.alloc(total);
    first.data.copy(out, 0);
    const offsets = [];
    for (let o = first.data.length; o < total; o += CHUNK) offsets.push(o);
    const worker = async () => {
      while (offsets.length) {
        const o = offsets.shift();
        const a = await this.ask(peer.dealer, rel, o, timeoutMs);
        if (a.kind !== 'DATA') throw new TransferError(`${uri}: ${a.h.reason || a.kind}`);
        a.data.copy(out, o);
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    return out;
  }
}

module.exports = { Files, Fetcher };
