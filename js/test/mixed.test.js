'use strict';
// Mixed meshes: real Python meshdcm processes and JavaScript nodes exchanging messages.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const { Node } = require('../lib');
const { Mesh, waitUntil, records } = require('./helpers');

test('Python publishes, JavaScript handles and publishes back, Python sees it', async (t) => {
  const mesh = new Mesh(t);
  const js = new Node({ name: 'js-echo', mesh: mesh.name, log: () => {} });
  const seen = [];
  js.on('stored.series', 'Modality == "MR"', (msg, node) => {
    seen.push(msg.get('SeriesInstanceUID'));
    node.publish('js.echo', { SeriesInstanceUID: msg.get('SeriesInstanceUID'), Modality: 'MR' }, { replyTo: msg });
  });
  await js.start();
  t.after(() => js.stop());
  const out = mesh.file('recorder.txt');
  const recorder = mesh.python('recorder', ['--peer', js.endpoints.control, '--name', 'py-recorder'], { out, topic: 'js.echo' });
  try {
    // the recorder wants the JavaScript node's stream from the moment they meet: what was published before is not
    // for it, so the ticker starts only then
    await waitUntil(() => /peer joined: js-echo/.test(recorder.output()), 30000, 'the recorder to meet the JavaScript node');
    mesh.python('ticker', ['--peer', js.endpoints.control, '--name', 'py-ticker'], { interval: 0.05 });
    await waitUntil(() => seen.length >= 20, 30000, '20 stored.series from Python at the JavaScript node');
    await waitUntil(() => {
      const got = new Set(records(out).map((r) => r[2]));
      return seen.slice(0, 20).every((uid) => got.has(uid));
    }, 15000, 'the JavaScript answers at the Python recorder');
  } catch (e) { e.message += `\n${mesh.logs()}`; throw e; }
  assert.equal(js.counters.malformed, 0);
  assert.equal(js.counters.unknown_sender, 0);
  const uids = records(out).map((r) => r[2]);
  assert.equal(new Set(uids).size, uids.length, 'each answer handled once');
});

test('a JavaScript worker and a Python worker share a group; nothing is lost when the Python one is SIGKILLed', async (t) => {
  const mesh = new Mesh(t);
  const pub = new Node({ name: 'js-publisher', mesh: mesh.name, log: () => {} });
  await pub.start();
  t.after(() => pub.stop());
  const jsOut = mesh.file('js-worker.txt'); const pyOut = mesh.file('py-worker.txt');
  mesh.js('worker', { name: 'js-worker', group: 'qa', peers: [pub.endpoints.control], out: jsOut, delay: 60 });
  const py = mesh.python('recorder', ['--peer', pub.endpoints.control, '--name', 'py-worker', '--group', 'qa'], { out: pyOut, topic: 'stored.series', delay: 0.06 });
  const N = 60;
  const handled = () => new Set([...records(jsOut), ...records(pyOut)].map((r) => r[2]));
  try {
    await waitUntil(() => [...pub.peers.values()].filter((p) => p.manifest.group === 'qa').length === 2, 20000, 'both workers in the mesh');
    for (let i = 1; i <= N; i++) pub.publish('stored.series', { Modality: 'MR', SeriesInstanceUID: `1.2.826.0.1.3680043.10.1012.9.${i}` });
    await waitUntil(() => records(pyOut).length >= 5, 20000, 'the Python worker to handle a few items');
    mesh.kill(py);
    await waitUntil(() => handled().size === N, 30000, `all ${N} items handled (${handled().size} so far)`);
  } catch (e) { e.message += `\n${mesh.logs()}`; throw e; }
  assert.ok(records(jsOut).length > 0, 'the JavaScript worker took items');
  assert.equal(pub.leases.waiting(), 0, 'every item acknowledged');
});
