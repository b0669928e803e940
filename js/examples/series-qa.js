'use strict';
// An example JavaScript node doing real work on stored series: a header QA check. For each stored.series it
// fetches the instances its meta `uris` name (meshdcm:// folders or files, file://), reads their headers with dcmjs
// and checks PixelSpacing (present, the same on every slice), SliceThickness against the spacing between slice
// positions, and that every slice has the same orientation. It publishes `qa.series` with the findings (meta
// `findings`, `instances`, `ok`), and, when something is wrong, an `error.<node>` event, which the web UI's monitor
// and the study's timeline list without any change on their side.
//   node examples/series-qa.js [--peer tcp://127.0.0.1:PORT] [--name series-qa]
const { Node, codec, HandlerError } = require('../lib');

const args = process.argv.slice(2);
const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
const peers = args.flatMap((a, i) => (a === '--peer' ? [args[i + 1]] : []));

const num = (v) => (Array.isArray(v) ? v.map(Number) : v === undefined || v === null ? null : [Number(v)]);
const near = (a, b, tol = 1e-3) => Math.abs(a - b) <= tol * Math.max(1, Math.abs(a), Math.abs(b));

/** Findings (strings) of a series' headers (naturalized data sets). */
function check(headers) {
  const findings = [];
  const spacing = headers.map((h) => num(h.PixelSpacing));
  const missing = spacing.filter((s) => !s || s.length !== 2).length;
  if (missing) findings.push(`PixelSpacing missing on ${missing} of ${headers.length} instances`);
  const distinct = new Set(spacing.filter((s) => s && s.length === 2).map((s) => s.map((x) => x.toFixed(4)).join('\\')));
  if (distinct.size > 1) findings.push(`PixelSpacing differs between instances (${[...distinct].join(', ')})`);
  const orient = headers.map((h) => num(h.ImageOrientationPatient)).filter((o) => o && o.length === 6);
  if (orient.length && orient.some((o) => o.some((x, i) => !near(x, orient[0][i], 1e-4)))) findings.push('ImageOrientationPatient differs between instances');
  const pos = headers.map((h) => num(h.ImagePositionPatient));
  if (orient.length && pos.every((p) => p && p.length === 3) && headers.length > 1) {
    const [r, c] = [orient[0].slice(0, 3), orient[0].slice(3)];
    const n = [r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]];
    const z = pos.map((p) => p[0] * n[0] + p[1] * n[1] + p[2] * n[2]).sort((a, b) => a - b);
    const gaps = z.slice(1).map((v, i) => v - z[i]);
    const gap = gaps.reduce((a, b) => a + b, 0) / gaps.length;
    if (gaps.some((g) => !near(g, gap, 0.01))) findings.push(`uneven spacing between slices (${Math.min(...gaps).toFixed(3)} to ${Math.max(...gaps).toFixed(3)} mm)`);
    const thick = Number(headers[0].SliceThickness);
    if (Number.isFinite(thick) && gap > 0 && !near(thick, gap, 0.05)) findings.push(`SliceThickness ${thick} mm differs from the spacing between slices ${gap.toFixed(3)} mm`);
  }
  return findings;
}

async function headersOf(node, uris) {
  const out = [];
  for (const uri of uris) {
    const got = await node.fetch(uri);
    if (got && got.files) {
      for (const f of got.files) out.push(codec.readFile(await node.fetch(`${uri.replace(/\/$/, '')}/${f}`)));
    } else out.push(codec.readFile(got));
  }
  return out;
}

async function main() {
  const node = new Node({ name: opt('--name') || 'series-qa', kind: 'series-qa', peers });
  node.on('stored.series', 'Modality exists', async (msg) => {
    if (!msg.uris.length) throw new HandlerError('the stored.series names no URIs: nothing to check', { action: 'publish the series with meta uris' });
    const headers = await headersOf(node, msg.uris);
    const findings = check(headers);
    const series = msg.get('SeriesInstanceUID');
    node.publish('qa.series', { StudyInstanceUID: msg.get('StudyInstanceUID') || '', SeriesInstanceUID: series || '' },
      { replyTo: msg, meta: { ok: findings.length === 0, findings, instances: headers.length } });
    if (findings.length) {
      node.publishError({ handler: 'series-qa', topic: msg.topic, message_id: msg.id, sender: msg.sender.toString('hex'),
        reason: `QA of series ${series}: ${findings.join('; ')}`, exception: 'QAFinding', attempt: 1,
        action: 'check the acquisition or the export of this series before measuring on it', next: 'nothing: this is a report' }, msg);
    }
    node.log(`QA of series ${series}: ${headers.length} instances, ${findings.length ? findings.join('; ') : 'ok'}`);
  });
  await node.start();
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => node.stop().then(() => process.exit(0)));
}

if (require.main === module) main();
module.exports = { check };
