'use strict';
// The regular expressions of filters (`~`): RE2 syntax (docs/filters.md), run by V8. V8's backtracking engine can
// take exponential time, so this module turns on V8's linear-time engine for patterns that backtrack too much
// (--enable-experimental-regexp-engine-on-excessive-backtracks). That engine refuses the `u` and `i` flags, so a
// pattern is translated to flag-free JavaScript: `(?i)` becomes explicit case classes ([mM]), `(?s)`/`(?m)` the
// `s`/`m` flags, `(?P<name>` a named group, `\A`/`\z` anchors. Backreferences and lookaround are refused, as RE2
// refuses them.
const v8 = require('v8');

v8.setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');

function bothCases(ch) {
  const lo = ch.toLowerCase(); const up = ch.toUpperCase();
  if (lo === up || lo.length !== 1 || up.length !== 1) return null;
  return lo + up;
}

/** Compile an RE2 pattern; throws Error with the reason (the filter parser makes it a FilterSyntaxError). */
function compileRegex(pattern) {
  let flags = '';
  let rest = pattern;
  const lead = /^\(\?([imsU]+)\)/.exec(rest);
  let ignoreCase = false;
  if (lead) {
    if (lead[1].includes('U')) throw new Error('the U flag (ungreedy) is not supported here');
    ignoreCase = lead[1].includes('i');
    if (lead[1].includes('s')) flags += 's';
    if (lead[1].includes('m')) flags += 'm';
    rest = rest.slice(lead[0].length);
  }
  let out = '';
  let inClass = false;
  for (let i = 0; i < rest.length; i++) {
    const c = rest[i];
    if (c === '\\') {
      const n = rest[i + 1];
      if (n === undefined) throw new Error('trailing \\');
      if (/[1-9]/.test(n)) throw new Error('invalid escape sequence: \\' + n + '; filters use RE2 syntax: no backreferences or lookaround');
      if (n === 'A' && !inClass) { out += '^'; i++; continue; }
      if (n === 'z' && !inClass) { out += '$(?![\\s\\S])'; i++; continue; }
      if (n === 'p' || n === 'P' || n === 'Q' || n === 'C') throw new Error(`\\${n} is not supported by the JavaScript port`);
      out += c + n; i++;
      continue;
    }
    if (inClass) {
      if (c === ']') { inClass = false; out += c; continue; }
      if (c === '[' && rest[i + 1] === ':') { // POSIX class [:alpha:]
        const end = rest.indexOf(':]', i + 2);
        const name = rest.slice(i + 2, end);
        const posix = { alpha: 'A-Za-z', digit: '0-9', alnum: 'A-Za-z0-9', space: '\\s', upper: 'A-Z', lower: 'a-z', xdigit: '0-9A-Fa-f', punct: '!-\\/:-@\\[-`{-~', word: '\\w' }[name];
        if (end < 0 || !posix) throw new Error(`unknown character class [:${name}:]`);
        out += posix; i = end + 1; continue;
      }
      if (ignoreCase && rest[i + 1] === '-' && rest[i + 2] && rest[i + 2] !== ']' && /[A-Za-z]/.test(c) && /[A-Za-z]/.test(rest[i + 2])) {
        const to = rest[i + 2];
        out += `${c}-${to}${c.toLowerCase() === c ? c.toUpperCase() + '-' + to.toUpperCase() : c.toLowerCase() + '-' + to.toLowerCase()}`;
        i += 2; continue;
      }
      out += (ignoreCase && bothCases(c)) || c;
      continue;
    }
    if (c === '[') {
      inClass = true; out += c;
      if (rest[i + 1] === '^') { out += '^'; i++; }
      if (rest[i + 1] === ']') { out += '\\]'; i++; }
      continue;
    }
    if (c === '(' && rest[i + 1] === '?') {
      const ahead = rest.slice(i + 2, i + 4);
      if (ahead.startsWith('=') || ahead.startsWith('!') || ahead === '<=' || ahead === '<!') {
        throw new Error('invalid perl operator: (?' + ahead + '; filters use RE2 syntax: no backreferences or lookaround');
      }
      if (ahead.startsWith('P<')) { out += '(?<'; i += 3; continue; }
      if (/^[imsU-]/.test(ahead)) throw new Error('inline flags are supported only at the start of a pattern in this port');
    }
    const pair = ignoreCase && bothCases(c);
    out += pair ? `[${pair}]` : c;
  }
  if (inClass) throw new Error('missing ]');
  try {
    return new RegExp(out, flags);
  } catch (e) {
    throw new Error(String(e.message).replace(/^Invalid regular expression: /, ''));
  }
}

module.exports = { compileRegex };
