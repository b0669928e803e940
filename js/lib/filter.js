'use strict';
// The DICOM filter language (docs/filters.md): tokenizer, recursive-descent parser, canonical text (what peers
// advertise in manifests) and evaluation on a body's DataView, with the same results as meshdcm's filters.
const { DicomMetaDictionary } = require('dcmjs').data;
const { FilterSyntaxError } = require('./errors');
const { compileRegex } = require('./regex');

const MAX_DEPTH = 64;
const MAX_LENGTH = 10000;
const RESERVED = new Set(['and', 'or', 'not', 'in', 'contains', 'exists', 'missing']);
const TOKEN = /(\s+)|(\(\s*[0-9A-Fa-f]{4}\s*,\s*[0-9A-Fa-f]{4}\s*\))|(==|!=|<=|>=|<|>|~)|([()[\],])|([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|([A-Za-z_][A-Za-z0-9_]*)/y;
const KINDS = [null, 'ws', 'tag', 'op', 'punct', 'number', 'string', 'word'];

function tagForKeyword(word) {
  const e = DicomMetaDictionary.nameMap[word];
  if (!e || !/^\([0-9A-F]{4},[0-9A-F]{4}\)$/i.test(e.tag)) return null;
  return parseInt(e.tag.slice(1, 5) + e.tag.slice(6, 10), 16) >>> 0;
}

function tagName(tag) {
  const h = (n) => n.toString(16).toUpperCase().padStart(4, '0');
  const text = `(${h(tag >>> 16)},${h(tag & 0xffff)})`;
  const e = DicomMetaDictionary.dictionary[text];
  return e && e.name && tagForKeyword(e.name) === tag ? e.name : text;
}

function unquote(raw) {
  const body = raw.slice(1, -1);
  let out = '';
  for (let i = 0; i < body.length; i++) {
    if (body[i] === '\\' && i + 1 < body.length && '\\"\''.includes(body[i + 1])) { out += body[i + 1]; i++; } else out += body[i];
  }
  return out;
}

function tokenize(text) {
  const tokens = [];
  let pos = 0;
  while (pos < text.length) {
    TOKEN.lastIndex = pos;
    const m = TOKEN.exec(text);
    if (!m) {
      const ch = text[pos];
      if (ch === '"' || ch === "'") throw new FilterSyntaxError(text, pos + 1, `a closing ${ch} for the string that starts here`);
      if (ch === '=' || ch === '!') throw new FilterSyntaxError(text, pos + 1, "'==' or '!=' to compare", `'${ch}'`);
      throw new FilterSyntaxError(text, pos + 1, 'a keyword, a tag, an operator, a string or a number', `'${ch}'`);
    }
    const kind = KINDS[m.findIndex((g, i) => i > 0 && g !== undefined)];
    if (kind !== 'ws') {
      const tok = { kind, text: m[0], column: pos + 1 };
      if (kind === 'string') tok.value = unquote(m[0]);
      else if (kind === 'number') tok.value = Number(m[0]);
      else if (kind === 'tag') { const g = /([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})/.exec(m[0]); tok.value = parseInt(g[1] + g[2], 16) >>> 0; }
      tokens.push(tok);
    }
    pos += m[0].length;
  }
  tokens.push({ kind: 'end', text: '', column: text.length + 1 });
  return tokens;
}

// --- what a comparison means (meshdcm/_filter_tree.py) ---
function scalarText(v) { return typeof v === 'number' ? (Number.isInteger(v) ? String(v) : pyFloatStr(v)) : String(v); }
function pyFloatStr(v) { return require('./pyjson').floatRepr(v); }
function whole(value) { return Array.isArray(value) ? value.map(scalarText).join('\\') : scalarText(value); }
function toNumber(value) {
  if (typeof value === 'number') return value;
  if (typeof value !== 'string') return null;
  const t = value.trim().replace(/_/g, '');
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t)) return Number(t);
  if (/^[-+]?(inf|infinity)$/i.test(t)) return t.startsWith('-') ? -Infinity : Infinity;
  if (/^[-+]?nan$/i.test(t)) return NaN;
  return null;
}
function equal(value, operand) {
  if (typeof value === 'string' && typeof operand === 'string') return value === operand;
  if (typeof operand === 'string') return whole(value) === operand;
  const n = Array.isArray(value) ? null : toNumber(value);
  return n !== null && n === operand;
}
const COMPARE = { '==': (a, b) => a === b, '!=': (a, b) => a !== b, '<': (a, b) => a < b, '<=': (a, b) => a <= b, '>': (a, b) => a > b, '>=': (a, b) => a >= b };

function literalText(v) {
  if (typeof v === 'string') return `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
  return pyFloatStr(v);
}

class Test {
  constructor(tag, op, operand) { this.tag = tag; this.op = op; this.operand = operand; if (op === '~') this.re = compileRegex(operand); }
  text() {
    const name = tagName(this.tag);
    if (this.op === 'exists' || this.op === 'missing') return `${name} ${this.op}`;
    if (this.op === 'in') return `${name} in [${this.operand.map(literalText).join(', ')}]`;
    return `${name} ${this.op} ${literalText(this.operand)}`;
  }
  evaluate(get) {
    const value = get(this.tag);
    const { op, operand } = this;
    if (op === 'exists') return value !== null;
    if (op === 'missing') return value === null;
    if (value === null || value === true) return false;
    if (op === 'contains') return Array.isArray(value) ? value.some((v) => equal(v, operand)) : equal(value, operand);
    if (op === '~') { this.re.lastIndex = 0; return this.re.test(whole(value)); }
    if (op === 'in') return operand.some((o) => equal(value, o));
    if (typeof operand === 'string') return COMPARE[op](whole(value), operand);
    if (Array.isArray(value)) return false;
    const n = toNumber(value);
    return n !== null && COMPARE[op](n, operand);
  }
  tags() { return [this.tag]; }
}
class Not {
  constructor(item) { this.item = item; }
  text() { const t = this.item.text(); return this.item instanceof Test || this.item instanceof Not ? `not ${t}` : `not (${t})`; }
  evaluate(get) { return !this.item.evaluate(get); }
  tags() { return this.item.tags(); }
}
class Junction {
  constructor(kind, items) { this.kind = kind; this.items = items; }
  text() { return this.items.map((i) => (i instanceof Junction && i.kind !== this.kind ? `(${i.text()})` : i.text())).join(` ${this.kind} `); }
  evaluate(get) { return this.kind === 'and' ? this.items.every((i) => i.evaluate(get)) : this.items.some((i) => i.evaluate(get)); }
  tags() { return this.items.flatMap((i) => i.tags()); }
}

class Parser {
  constructor(text) { this.text = text; this.tokens = tokenize(text); this.i = 0; this.depth = 0; }
  get tok() { return this.tokens[this.i]; }
  fail(expected, tok = this.tok) { throw new FilterSyntaxError(this.text, tok.column, expected, tok.kind === 'end' ? 'the end of the filter' : `'${tok.text}'`); }
  word(w) { if (this.tok.kind === 'word' && this.tok.text === w) { this.i++; return true; } return false; }
  punct(p) { if (this.tok.kind === 'punct' && this.tok.text === p) { this.i++; return true; } return false; }
  parse() {
    if (this.tok.kind === 'end') this.fail('a test such as Modality == "MR"');
    const tree = this.orExpr();
    if (this.tok.kind !== 'end') this.fail("'and', 'or', or the end of the filter");
    return tree;
  }
  orExpr() { const items = [this.andExpr()]; while (this.word('or')) items.push(this.andExpr()); return items.length === 1 ? items[0] : new Junction('or', items); }
  andExpr() { const items = [this.notExpr()]; while (this.word('and')) items.push(this.notExpr()); return items.length === 1 ? items[0] : new Junction('and', items); }
  notExpr() {
    const open = this.tok;
    const nested = (open.kind === 'word' || open.kind === 'punct') && (open.text === 'not' || open.text === '(');
    if (nested && ++this.depth > MAX_DEPTH) throw new FilterSyntaxError(this.text, open.column, `at most ${MAX_DEPTH} nested 'not' and '('`, 'deeper nesting');
    try {
      if (this.word('not')) return new Not(this.notExpr());
      if (this.punct('(')) {
        const inner = this.orExpr();
        if (!this.punct(')')) this.fail(`')' to close the '(' at column ${open.column}`);
        return inner;
      }
      return this.test();
    } finally { if (nested) this.depth--; }
  }
  test() {
    const tok = this.tok;
    let tag;
    if (tok.kind === 'tag') tag = tok.value;
    else if (tok.kind === 'word' && !RESERVED.has(tok.text)) {
      tag = tagForKeyword(tok.text);
      if (tag === null) throw new FilterSyntaxError(this.text, tok.column, 'a DICOM keyword', `'${tok.text}'`);
    } else this.fail("a DICOM keyword or a tag like (0008,0060), 'not' or '('");
    this.i++;
    const op = this.tok;
    if (op.kind === 'op') {
      this.i++;
      if (op.text === '~') {
        if (this.tok.kind !== 'string') this.fail("a quoted regular expression after '~'");
        const pattern = this.tok.value;
        let test;
        try { test = new Test(tag, '~', pattern); } catch (e) { throw new FilterSyntaxError(this.text, this.tok.column, `a valid regular expression (${e.message})`); }
        this.i++;
        return test;
      }
      return new Test(tag, op.text, this.literal(`a string or a number after '${op.text}'`));
    }
    if (this.word('in')) {
      if (!this.punct('[')) this.fail("'[' to start the list after 'in'");
      const values = [this.literal('a string or a number in the list')];
      while (this.punct(',')) values.push(this.literal("a string or a number after ','"));
      if (!this.punct(']')) this.fail("',' or ']' to close the list");
      return new Test(tag, 'in', values);
    }
    if (this.word('contains')) return new Test(tag, 'contains', this.literal("a string or a number after 'contains'"));
    if (this.word('exists')) return new Test(tag, 'exists');
    if (this.word('missing')) return new Test(tag, 'missing');
    return this.fail('an operator (== != < <= > >= ~ in contains exists missing)');
  }
  literal(expected) { const t = this.tok; if (t.kind === 'string' || t.kind === 'number') { this.i++; return t.value; } return this.fail(expected); }
}

class Filter {
  constructor(tree) { this.tree = tree; }
  get isAll() { return this.tree === null; }
  /** The canonical text (what a manifest's `where` says); "" matches everything. */
  toString() { return this.tree ? this.tree.text() : ''; }
  /** get: tag -> value (a DataView's get), or a DataView, or a message with .view */
  matches(source) {
    if (!this.tree) return true;
    const view = typeof source === 'function' ? null : (source.view || source);
    const get = typeof source === 'function' ? source : (tag) => view.get(tag);
    return this.tree.evaluate(get);
  }
}

function parseFilter(text = '') {
  if (text instanceof Filter) return text;
  if (text.length > MAX_LENGTH) throw new FilterSyntaxError(text.slice(0, 60), 1, `at most ${MAX_LENGTH} characters`, `${text.length}`);
  if (!text.trim()) return new Filter(null);
  return new Filter(new Parser(text).parse());
}

module.exports = { parseFilter, Filter, tagForKeyword, tagName };
