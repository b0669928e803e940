'use strict';
// The keyring on disk (docs/security.md): authorized/NAME.key, secret/NAME.key_secret, revoked/; certificates in
// ZeroMQ's text format. Keys are compared as their Z85 text, byte for byte.
const fs = require('fs');
const path = require('path');

/** {public, secret} of a certificate's text; throws when it has no 40-character public-key. */
function parseCertificate(text) {
  const out = { public: null, secret: null };
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#')) continue;
    for (const [field, key] of [['public-key', 'public'], ['secret-key', 'secret']]) {
      if (line.startsWith(field)) {
        const at = line.indexOf('=');
        if (at >= 0) out[key] = line.slice(at + 1).replace(/^[ \t"']+|[ \t"']+$/g, '');
      }
    }
  }
  if (!out.public || out.public.length !== 40) throw new Error('the certificate has no 40-character public-key');
  return out;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

class Keyring {
  constructor(folder, { log = () => {} } = {}) { this.folder = folder; this.log = log; this.warned = new Set(); this.authorized = new Set(); this.names = new Map(); this.mtime = null; }

  /** Read authorized/ again when it changed (its modification time); returns the set of Z85 public keys. */
  readAuthorized() {
    const dir = path.join(this.folder, 'authorized');
    let mtime;
    try { mtime = fs.statSync(dir).mtimeMs; } catch { mtime = -1; }
    if (mtime === this.mtime) return this.authorized;
    this.mtime = mtime;
    const keys = new Set(); const names = new Map();
    for (const file of mtime < 0 ? [] : fs.readdirSync(dir).sort()) {
      if (file.startsWith('.') || !file.endsWith('.key')) continue;
      try {
        const cert = parseCertificate(fs.readFileSync(path.join(dir, file), 'utf8'));
        keys.add(cert.public); names.set(file.slice(0, -4), cert.public);
      } catch (e) {
        if (!this.warned.has(file)) { this.warned.add(file); this.log(`keyring: skipped ${file}: ${e.message}`); }
      }
    }
    this.authorized = keys; this.names = names;
    return keys;
  }

  trusts(key) { return typeof key === 'string' && key !== '' && this.readAuthorized().has(key); }

  /** The public key of authorized/NAME.key (a static peer's KEYNAME@tcp://...). */
  keyOf(name) {
    this.readAuthorized();
    const key = this.names.get(name);
    if (!key) throw new Error(`authorized/${name}.key is missing in keyring ${this.folder}`);
    return key;
  }

  /** The node's own key pair: secret/NAME.key_secret, or the only one there. */
  ownPair(name) {
    const dir = path.join(this.folder, 'secret');
    if (!name) {
      const found = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.key_secret') && !f.startsWith('.')) : [];
      if (found.length !== 1) throw new Error(`keyring ${this.folder}: ${found.length ? 'several' : 'no'} secret keys in secret/; name one with key=NAME`);
      name = found[0].slice(0, -'.key_secret'.length);
    }
    if (!NAME.test(name)) throw new Error(`a key name is 1-64 characters of A-Z a-z 0-9 . _ -, not ${JSON.stringify(name)}`);
    const cert = parseCertificate(fs.readFileSync(path.join(dir, `${name}.key_secret`), 'utf8'));
    if (!cert.secret) throw new Error(`secret/${name}.key_secret has no secret-key`);
    if (!fs.existsSync(path.join(this.folder, 'authorized', `${name}.key`))) throw new Error(`authorized/${name}.key is missing: a revoked node would be refused by its peers`);
    return { name, publicKey: cert.public, secretKey: cert.secret };
  }
}

module.exports = { Keyring, parseCertificate };
