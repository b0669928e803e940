'use strict';
// A JavaScript member of a worker group for the tests: records each work item it handles as a line
// "<name> <topic> <SeriesInstanceUID>" in `out`, after `delay` ms of work.
const fs = require('fs');
const { Node } = require('../../lib');

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const node = new Node({ name: cfg.name, mesh: cfg.mesh, group: cfg.group, peers: cfg.peers, keyring: cfg.keyring, key: cfg.key });
node.on(cfg.topic || 'stored.series', cfg.where || '', async (msg) => {
  await new Promise((r) => setTimeout(r, cfg.delay || 0));
  fs.appendFileSync(cfg.out, `${node.name} ${msg.topic} ${msg.get('SeriesInstanceUID')}\n`);
});
node.start().then(() => { if (cfg.ready) fs.writeFileSync(cfg.ready, node.endpoints.control); });
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => node.stop().then(() => process.exit(0)));
