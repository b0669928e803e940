'use strict';
// Running Python meshdcm nodes next to JavaScript ones: each test has its own mesh name and state folder, and
// waits with deadlines, never fixed sleeps.
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');

const ROOT = path.resolve(__dirname, '..', '..');
const PYTHON = process.env.MESHDCM_PYTHON || path.join(ROOT, '.venv', 'bin', 'python');

class Mesh {
  constructor(t) {
    this.name = `js-test-${crypto.randomBytes(5).toString('hex')}`;
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'meshdcm-js-'));
    this.procs = [];
    this.n = 0;
    this.env = { ...process.env, MESHDCM_MESH: this.name, PYTHONUNBUFFERED: '1', XDG_DATA_HOME: path.join(this.tmp, 'state') };
    delete this.env.MESHDCM_CONFIG;
    if (t) t.after(() => this.close());
  }

  file(name) { return path.join(this.tmp, name); }

  spawn(argv, label) {
    const log = this.file(`proc${++this.n}-${label}.log`);
    const fh = fs.openSync(log, 'a');
    const proc = spawn(argv[0], argv.slice(1), { cwd: ROOT, env: this.env, stdio: ['ignore', fh, fh], detached: true });
    proc.log = log;
    proc.output = () => fs.readFileSync(log, 'utf8');
    this.procs.push(proc);
    return proc;
  }

  /** A Python node: `meshdcm node tests/nodes/KIND.py` with options in [nodes.KIND]. */
  python(kind, args = [], options = {}) {
    const cfg = this.file(`config${++this.n}.toml`);
    fs.writeFileSync(cfg, `[nodes.${kind}]\n${Object.entries(options).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join('\n')}\n`);
    return this.spawn([PYTHON, '-m', 'meshdcm.cli.main', 'node', path.join(ROOT, 'tests', 'nodes', `${kind}.py`), '--config', cfg, '--no-discovery', ...args], kind);
  }

  /** A JavaScript node in its own process: test/nodes/NAME.js with a JSON config. */
  js(name, config) {
    const cfg = this.file(`js${++this.n}.json`);
    fs.writeFileSync(cfg, JSON.stringify({ mesh: this.name, ...config }));
    return this.spawn([process.execPath, path.join(__dirname, 'nodes', `${name}.js`), cfg], name);
  }

  cli(...args) {
    const { execFileSync } = require('child_process');
    return execFileSync(PYTHON, ['-m', 'meshdcm.cli.main', ...args], { cwd: ROOT, env: this.env, encoding: 'utf8' });
  }

  kill(proc, signal = 'SIGKILL') { try { process.kill(-proc.pid, signal); } catch { /* gone */ } }

  async close() {
    for (const p of this.procs.reverse()) {
      if (p.exitCode !== null || p.signalCode !== null) continue;
      this.kill(p, 'SIGTERM');
      const ended = await Promise.race([new Promise((r) => p.once('exit', () => r(true))), sleep(5000).then(() => false)]);
      if (!ended) this.kill(p, 'SIGKILL');
    }
  }

  logs() { return this.procs.map((p) => `----- ${p.spawnargs.slice(-4).join(' ')}\n${p.output().split('\n').slice(-40).join('\n')}`).join('\n'); }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(predicate, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await predicate();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** The lines a recorder node wrote: [name, topic, uid, seq, ...]. */
function records(file) {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(' '));
}

module.exports = { Mesh, waitUntil, sleep, records, ROOT, PYTHON };
