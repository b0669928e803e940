'use strict';
// A keyed mesh (CURVE, keyring made by the Python CLI): a JavaScript node with an authorized key reaches a Python
// node; a rogue JavaScript node whose key is not in the keyring is refused (ZAP 400) and its message never arrives.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { Node } = require('../lib');
const { Mesh, waitUntil, sleep, records } = require('./helpers');

test('keyed mesh: an authorized JavaScript node is heard, a rogue one (key not in the keyring) is ignored', async (t) => {
  const mesh = new Mesh(t);
  const ring = mesh.file('keyring'); const rogueRing = mesh.file('rogue-keyring');
  mesh.cli('keys', 'init', ring); mesh.cli('keys', 'add', 'py', '--keyring', ring); mesh.cli('keys', 'add', 'js', '--keyring', ring);
  mesh.cli('keys', 'init', rogueRing); mesh.cli('keys', 'add', 'rogue', '--keyring', rogueRing);
  for (const f of fs.readdirSync(path.join(ring, 'authorized'))) fs.copyFileSync(path.join(ring, 'authorized', f), path.join(rogueRing, 'authorized', f));
  const js = new Node({ name: 'js-keyed', mesh: mesh.name, keyring: ring, key: 'js', log: () => {} });
  await js.start();
  t.after(() => js.stop());
  const out = mesh.file('recorder.txt');
  mesh.python('recorder', ['--peer', `js@${js.endpoints.control}`, '--name', 'py-keyed', '--keyring', ring, '--key', 'py'], { out, topic: 'stored.series' });
  try {
    await waitUntil(() => js.peers.size === 1, 20000, 'the Python node to join the keyed JavaScript node');
    const py = [...js.peers.values()][0].manifest;
    const rogue = new Node({ name: 'js-rogue', mesh: mesh.name, keyring: rogueRing, key: 'rogue', peers: [`py@${py.endpoints.control}`], log: () => {} });
    await rogue.start();
    t.after(() => rogue.stop());
    await sleep(300);
    js.publish('stored.series', { Modality: 'MR', SeriesInstanceUID: '1.2.826.0.1.3680043.10.1012.7.1' });
    await waitUntil(() => records(out).some((r) => r[2] === '1.2.826.0.1.3680043.10.1012.7.1'), 15000, 'the authorized message at the Python node');
    await sleep(1500);
    assert.equal(rogue.peers.size, 0, 'nobody welcomed the rogue');
    try { rogue.publish('stored.series', { Modality: 'MR', SeriesInstanceUID: '1.2.826.0.1.3680043.10.1012.7.666' }); } catch { /* not started */ }
    await sleep(1500);
    assert.ok(!records(out).some((r) => r[2].endsWith('.666')), 'the rogue message never arrived');
  } catch (e) { e.message += `\n${mesh.logs()}`; throw e; }
});
