// meshdcm web UI: the image viewer.
"use strict";
// --- image viewer ----------------------------------------------------------------------------------------------
const viewer = {info: null, slices: [], index: 0, center: 0, width: 1, canvas: $("#viewer-canvas"), lut: null, t0: 0};
const JET = (() => { const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) { const x = i / 255;
    lut[3 * i] = 255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * x - 3)));
    lut[3 * i + 1] = 255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * x - 2)));
    lut[3 * i + 2] = 255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * x - 1))); }
  return lut; })();
function clearViewer() {
  viewer.info = null; viewer.slices = [];
  viewer.canvas.getContext("2d").clearRect(0, 0, viewer.canvas.width, viewer.canvas.height);
  $("#viewer-title").textContent = "Click a series to view it.";
}
async function fetchSlice(uid, i) {
  const r = await fetch(`/api/series/${uid}/slices/${i}`);
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
  const buf = await r.arrayBuffer();
  return viewer.info.dtype === "float32" ? new Float32Array(buf) : new Int16Array(buf);
}
async function openSeries(uid) {
  viewer.t0 = performance.now();
  document.querySelectorAll(".series-card").forEach(c => c.classList.toggle("selected", c.dataset.series === uid));
  state.series = uid;
  const info = await api(`/api/series/${uid}/info`);
  if (state.series !== uid) return;
  viewer.info = info; viewer.slices = new Array(info.count); viewer.center = info.center; viewer.width = info.width;
  viewer.index = Math.floor(info.count / 2);
  viewer.canvas.width = info.cols; viewer.canvas.height = info.rows;
  const s = (state.studyData && state.studyData.series.find(x => x.uid === uid)) || {};
  $("#viewer-title").textContent = `${s.modality || ""} #${s.number || ""} ${s.description || uid}` + (s.derived ? ` (derived by ${s.node})` : "");
  const slider = $("#slice-slider"); slider.max = info.count - 1; slider.value = viewer.index;
  $("#presets").replaceChildren(...Object.entries(info.presets).map(([name, [c, w]]) =>
    el("button", {class: "small preset", dataset: {preset: name}, onclick: () => setWindow(c, w)}, name)));
  $("#legend").style.display = info.kind === "map" ? "flex" : "none";
  viewer.slices[viewer.index] = await fetchSlice(uid, viewer.index);
  if (state.series !== uid) return;
  draw();
  const ms = Math.round(performance.now() - viewer.t0);
  $("#viewer-status").textContent = `first image in ${ms} ms`;
  viewer.canvas.dataset.firstImageMs = ms;
  prefetch(uid);
}
async function prefetch(uid) {
  const order = []; const n = viewer.info.count;
  for (let d = 1; d < n; d++) { for (const i of [viewer.index + d, viewer.index - d]) if (i >= 0 && i < n) order.push(i); }
  const next = async () => { while (order.length && state.series === uid) { const i = order.shift();
    if (!viewer.slices[i]) viewer.slices[i] = await fetchSlice(uid, i); } };
  await Promise.all([next(), next(), next(), next()]);
  if (state.series === uid) viewer.canvas.dataset.loaded = "all";
}
function setWindow(c, w) { viewer.center = c; viewer.width = Math.max(1e-6, w); draw(); }
async function draw() {
  const info = viewer.info; if (!info) return;
  let px = viewer.slices[viewer.index];
  if (!px) { const uid = state.series; px = viewer.slices[viewer.index] = await fetchSlice(uid, viewer.index); if (uid !== state.series) return; }
  const ctx = viewer.canvas.getContext("2d");
  const img = ctx.createImageData(info.cols, info.rows);
  const d = img.data, lo = viewer.center - viewer.width / 2, scale = 255 / viewer.width, map = info.kind === "map";
  for (let i = 0, j = 0; i < px.length; i++, j += 4) {
    if (px[i] !== px[i]) { d[j + 3] = 0; continue; }  // NaN: a map's background (padding), left transparent
    let v = (px[i] - lo) * scale; v = v < 0 ? 0 : v > 255 ? 255 : v | 0;
    if (map) { d[j] = JET[3 * v]; d[j + 1] = JET[3 * v + 1]; d[j + 2] = JET[3 * v + 2]; }
    else { d[j] = d[j + 1] = d[j + 2] = v; }
    d[j + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  $("#slice-slider").value = viewer.index;
  $("#slice-label").textContent = `${viewer.index + 1}/${info.count}`;
  $("#wl-center").value = Math.round(viewer.center * 100) / 100; $("#wl-width").value = Math.round(viewer.width * 100) / 100;
  viewer.canvas.dataset.slice = viewer.index; viewer.canvas.dataset.center = viewer.center; viewer.canvas.dataset.width = viewer.width;
  if (map) drawLegend();
}
function drawLegend() {
  const c = $("#legend-bar"), ctx = c.getContext("2d");
  for (let x = 0; x < c.width; x++) { const v = Math.round(255 * x / (c.width - 1));
    ctx.fillStyle = `rgb(${JET[3 * v]},${JET[3 * v + 1]},${JET[3 * v + 2]})`; ctx.fillRect(x, 0, 1, c.height); }
  const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2));
  $("#legend-lo").textContent = fmt(viewer.center - viewer.width / 2);
  $("#legend-hi").textContent = `${fmt(viewer.center + viewer.width / 2)} ${viewer.info.unit || ""}`;
}
$("#slice-slider").addEventListener("input", (ev) => { viewer.index = +ev.target.value; draw(); });
viewer.canvas.addEventListener("wheel", (ev) => { if (!viewer.info) return; ev.preventDefault();
  viewer.index = Math.min(viewer.info.count - 1, Math.max(0, viewer.index + Math.sign(ev.deltaY))); draw(); });
document.addEventListener("keydown", (ev) => {
  if (!viewer.info || ev.target.tagName === "TEXTAREA" || ev.target.tagName === "INPUT") return;
  if (ev.key === "ArrowDown" || ev.key === "ArrowRight") { viewer.index = Math.min(viewer.info.count - 1, viewer.index + 1); draw(); }
  if (ev.key === "ArrowUp" || ev.key === "ArrowLeft") { viewer.index = Math.max(0, viewer.index - 1); draw(); }
});
for (const id of ["#wl-center", "#wl-width"]) $(id).addEventListener("change", () => setWindow(+$("#wl-center").value, +$("#wl-width").value));
let drag = null;
viewer.canvas.addEventListener("mousedown", (ev) => { drag = {x: ev.clientX, y: ev.clientY, c: viewer.center, w: viewer.width}; });
window.addEventListener("mouseup", () => { drag = null; });
viewer.canvas.addEventListener("mousemove", (ev) => {
  const info = viewer.info; if (!info) return;
  if (drag) { const k = Math.max(viewer.width, 1) / 200;
    setWindow(drag.c + (ev.clientY - drag.y) * k, drag.w + (ev.clientX - drag.x) * k); return; }
  const r = viewer.canvas.getBoundingClientRect();
  const x = Math.floor((ev.clientX - r.left) * info.cols / r.width), y = Math.floor((ev.clientY - r.top) * info.rows / r.height);
  const px = viewer.slices[viewer.index];
  if (!px || x < 0 || y < 0 || x >= info.cols || y >= info.rows) return;
  const v = px[y * info.cols + x];
  $("#cursor-value").textContent = `(${x}, ${y}) = ${info.dtype === "float32" ? (v === v ? v.toFixed(2) : "none") : v} ${info.unit || ""}`;
});
