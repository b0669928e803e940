'use strict';
// Z85 (ZeroMQ RFC 32) and Curve25519 key pairs (docs/security.md, *The keyring on disk*).
const crypto = require('crypto');

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';
const DECODE = new Map([...ALPHABET].map((c, i) => [c, i]));

function encode(bytes) {
  if (bytes.length % 4) throw new Error('Z85 encodes a multiple of 4 bytes');
  let out = '';
  for (let i = 0; i < bytes.length; i += 4) {
    let v = bytes.readUInt32BE(i);
    let chunk = '';
    for (let k = 0; k < 5; k++) { chunk = ALPHABET[v % 85] + chunk; v = Math.floor(v / 85); }
    out += chunk;
  }
  return out;
}

function decode(text) {
  if (text.length % 5) throw new Error('Z85 text is a multiple of 5 characters');
  const out = Buffer.alloc((text.length / 5) * 4);
  for (let i = 0; i < text.length; i += 5) {
    let v = 0;
    for (let k = 0; k < 5; k++) {
      const d = DECODE.get(text[i + k]);
      if (d === undefined) throw new Error(`not a Z85 character: ${JSON.stringify(text[i + k])}`);
      v = v * 85 + d;
    }
    if (v > 0xffffffff) throw new Error('Z85 group out of range');
    out.writeUInt32BE(v, (i / 5) * 4);
  }
  return out;
}

const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** The public key (Z85) of a secret key (Z85): the X25519 base-point product. */
function publicOf(secretZ85) {
  const key = crypto.createPrivateKey({ key: Buffer.concat([PKCS8_X25519, decode(secretZ85)]), format: 'der', type: 'pkcs8' });
  const spki = crypto.createPublicKey(key).export({ format: 'der', type: 'spki' });
  return encode(spki.subarray(spki.length - 32));
}

/** A new key pair {publicKey, secretKey} in Z85. */
function keyPair() {
  const { privateKey } = crypto.generateKeyPairSync('x25519');
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
  const secretKey = encode(pkcs8.subarray(pkcs8.length - 32));
  return { publicKey: publicOf(secretKey), secretKey };
}

module.exports = { encode, decode, publicOf, keyPair };
