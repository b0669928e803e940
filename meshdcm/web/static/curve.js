// meshdcm web UI: the signal-time curve of the voxel under the cursor in a dynamic series (a DSC's slices x time
// points, from /api/series/{uid}/curve), drawn with the arterial input function the perfusion node chose
// (/api/series/{uid}/aif: the mean signal of its voxels in this series; viewer.js marks them on the image).
"use strict";
const curve = {uid: null, at: null, values: null, times: null, busy: false, next: null};

function hideCurve() { $("#curve-box").classList.add("hidden"); Object.assign(curve, {uid: null, at: null, values: null}); }
function showCurveFor(pane) {
  const dynamic = !!(pane.info && pane.info.phases > 1);
  $("#curve-box").classList.toggle("hidden", !dynamic);
  if (!dynamic) return;
  if (curve.uid !== pane.uid) Object.assign(curve, {uid: pane.uid, at: null, values: null, times: null});
  drawCurve();
}
function requestCurve(pane, col, row) {  // the newest request waits while one is out; those in between are dropped
  curve.next = {pane, uid: pane.uid, z: pane.z, col, row};
  if (!curve.busy) pumpCurve();
}
function refreshCurve(pane) { if (curve.at && curve.uid === pane.uid) requestCurve(pane, curve.at.col, curve.at.row); }
async function pumpCurve() {
  curve.busy = true;
  while (curve.next) {
    const q = curve.next; curve.next = null;
    try {
      const r = await api(`/api/series/${q.uid}/curve?slice=${q.z}&row=${q.row}&col=${q.col}`);
      if (q.pane.uid === q.uid && activePane() === q.pane) {
        Object.assign(curve, {uid: q.uid, at: {z: q.z, col: q.col, row: q.row}, values: r.values, times: r.times});
        drawCurve();
      }
    } catch (err) { $("#curve-legend").textContent = err.message; }
  }
  curve.busy = false;
}
async function loadAif(pane) {
  const uid = pane.uid;
  const r = await api(`/api/series/${uid}/aif`).catch(() => ({aif: null}));
  if (pane.uid !== uid || !r.aif) return;
  pane.aif = r.aif; render(pane);
  if (pane === activePane()) drawCurve();
}
function drawCurve() {
  const pane = activePane(), info = pane.info, c = $("#curve-plot"), ctx = c.getContext("2d");
  if (!info || info.phases < 2) return;
  const W = c.width, H = c.height, left = 46, right = 8, top = 8, bottom = 20;
  ctx.fillStyle = "#0d1014"; ctx.fillRect(0, 0, W, H);
  const xs = info.times || [...Array(info.phases).keys()];
  const voxel = curve.uid === pane.uid && curve.values ? curve.values : null;
  const aif = pane.aif && pane.aif.here && pane.aif.here.signal.length === info.phases ? pane.aif.here.signal : null;
  const all = [...(voxel || []), ...(aif || [])];
  const legend = [];
  if (!all.length) {
    ctx.fillStyle = "#9aa4b2"; ctx.font = "12px system-ui"; ctx.fillText("move the cursor over the image: its signal over time", left, H / 2);
  } else {
    let lo = Math.min(...all), hi = Math.max(...all); const pad = (hi - lo) * 0.05 || 1; lo -= pad; hi += pad;
    const X = (i) => left + (W - left - right) * (xs[i] - xs[0]) / ((xs[xs.length - 1] - xs[0]) || 1);
    const Y = (v) => top + (H - top - bottom) * (hi - v) / (hi - lo);
    ctx.strokeStyle = "#2c333d"; ctx.strokeRect(left, top, W - left - right, H - top - bottom);
    ctx.fillStyle = "#9aa4b2"; ctx.font = "11px system-ui";
    ctx.fillText(hi.toFixed(0), 2, top + 10); ctx.fillText(lo.toFixed(0), 2, H - bottom);
    ctx.fillText(info.times ? `${xs[0].toFixed(0)} s` : "1", left, H - 5);
    const end = info.times ? `${xs[xs.length - 1].toFixed(1)} s` : `${info.phases}`;
    ctx.fillText(end, W - right - ctx.measureText(end).width, H - 5);
    ctx.strokeStyle = "#9aa4b2"; ctx.setLineDash([3, 3]); ctx.beginPath();
    ctx.moveTo(X(pane.t), top); ctx.lineTo(X(pane.t), H - bottom); ctx.stroke(); ctx.setLineDash([]);
    const line = (values, colour) => { ctx.strokeStyle = colour; ctx.lineWidth = 1.5; ctx.beginPath();
      values.forEach((v, i) => (i ? ctx.lineTo(X(i), Y(v)) : ctx.moveTo(X(i), Y(v)))); ctx.stroke(); };
    if (aif) line(aif, "#ff3b30");
    if (voxel) line(voxel, "#4ea1ff");
  }
  if (voxel) legend.push(el("span", {class: "curve-voxel"}, `voxel (${curve.at.col}, ${curve.at.row}) of slice ${curve.at.z + 1}`));
  if (pane.aif) { const a = pane.aif, n = a.here.voxels.length, peak = Math.max(...(a.curve || [0]));
    legend.push(el("span", {class: "curve-aif"}, `AIF of the perfusion maps: ${n} voxel${n === 1 ? "" : "s"} (${a.method || "?"}), ` +
      `by ${a.node}; peak ${peak.toFixed(1)} ${a.unit || ""}`)); }
  $("#curve-legend").replaceChildren(...legend);
  Object.assign(c.dataset, {points: voxel ? voxel.length : 0, aif: aif ? pane.aif.here.voxels.length : 0, phase: pane.t});
}
