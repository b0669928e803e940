'use strict';
// JSON as meshdcm's Python side reads and writes it (docs/protocol.md, *Control messages*; docs/discovery.md,
// *The manifest digest*): integers beyond 2^53 are read as BigInt (never through a double), and text is written
// as Python's json.dumps writes it (ASCII with \uXXXX escapes, ", " and ": " or compact separators, sorted keys
// on demand, floats as Python's repr).

/** A number that must be written as a Python float (`1764672000.0`, not `1764672000`). */
class Float {
  constructor(value) { this.value = Number(value); }
  valueOf() { return this.value; }
  toJSON() { return this.value; }
}

/** Parse JSON; integers beyond 2^53 become BigInt; with keepFloats, numbers written with '.' or an exponent
 * become Float (so that they are written back as Python floats). */
function parse(text, { keepFloats = false } = {}) {
  if (Buffer.isBuffer(text)) text = text.toString('utf8');
  let i = 0;
  const ws = () => { while (i < text.length && ' \t\n\r'.includes(text[i])) i++; };
  const fail = (what) => { throw new SyntaxError(`JSON: ${what} at ${i}`); };
  function value() {
    ws();
    const c = text[i];
    if (c === '{') {
      i++; const out = {}; ws();
      if (text[i] === '}') { i++; return out; }
      for (;;) {
        ws(); if (text[i] !== '"') fail('expected a key');
        const k = string(); ws();
        if (text[i++] !== ':') fail("expected ':'");
        const v = value();
        if (!Object.prototype.hasOwnProperty.call(out, k)) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
        else out[k] = v;
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return out; }
        fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      i++; const out = []; ws();
      if (text[i] === ']') { i++; return out; }
      for (;;) {
        out.push(value()); ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return out; }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    if (text.startsWith('true', i)) { i += 4; return true; }
    if (text.startsWith('false', i)) { i += 5; return false; }
    if (text.startsWith('null', i)) { i += 4; return null; }
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m) fail('unexpected character');
    i += m[0].length;
    if (m[2] === undefined && m[3] === undefined) {
      const n = Number(m[0]);
      return Number.isSafeInteger(n) ? n : BigInt(m[0]);
    }
    return keepFloats ? new Float(Number(m[0])) : Number(m[0]);
  }
  function string() {
    const start = i;
    i++;
    for (;;) {
      const c = text[i];
      if (c === undefined) fail('unterminated string');
      if (c === '\\') { i += 2; continue; }
      if (c === '"') { i++; break; }
      i++;
    }
    return JSON.parse(text.slice(start, i));
  }
  const out = value(); ws();
  if (i !== text.length) fail('trailing text');
  return out;
}

function floatRepr(x) {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  if (Object.is(x, -0)) return '-0.0';
  const [mant, expText] = x.toExponential().split('e'); // shortest digits that read back as x
  const exp = Number(expText);
  const neg = mant.startsWith('-');
  const digits = mant.replace('-', '').replace('.', '');
  let out;
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    out = `${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  } else if (exp < 0) {
    out = `0.${'0'.repeat(-exp - 1)}${digits}`;
  } else if (digits.length <= exp + 1) {
    out = `${digits}${'0'.repeat(exp + 1 - digits.length)}.0`;
  } else {
    out = `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
  }
  return (neg ? '-' : '') + out;
}

function quote(s, ascii) {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\b') out += '\\b';
    else if (ch === '\f') out += '\\f';
    else if (c < 0x20 || (ascii && c > 0x7e)) {
      if (c > 0xffff) {
        const v = c - 0x10000;
        out += `\\u${(0xd800 + (v >> 10)).toString(16).padStart(4, '0')}\\u${(0xdc00 + (v & 0x3ff)).toString(16).padStart(4, '0')}`;
      } else out += `\\u${c.toString(16).padStart(4, '0')}`;
    } else out += ch;
  }
  return out + '"';
}

/**
 * Python's json.dumps: `{sortKeys, compact, ascii}` (defaults: no sorting, ", "/": " separators, ASCII).
 * Integers (JS integral numbers and BigInt) are written in decimal; a Float is written as Python's repr.
 */
function dumps(value, { sortKeys = false, compact = false, ascii = true } = {}) {
  const item = compact ? ',' : ', ';
  const kv = compact ? ':' : ': ';
  function w(v) {
    if (v === null || v === undefined) return 'null';
    if (v === true) return 'true';
    if (v === false) return 'false';
    if (typeof v === 'bigint') return v.toString();
    if (v instanceof Float) return floatRepr(v.value);
    if (typeof v === 'number') return Number.isInteger(v) ? String(v) : floatRepr(v);
    if (typeof v === 'string') return quote(v, ascii);
    if (Array.isArray(v)) return `[${v.map(w).join(item)}]`;
    const keys = Object.keys(v).filter((k) => v[k] !== undefined);
    if (sortKeys) keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)); // UTF-16 order = code point order for BMP
    return `{${keys.map((k) => quote(k, ascii) + kv + w(v[k])).join(item)}}`;
  }
  return w(value);
}

module.exports = { parse, dumps, Float, floatRepr };
