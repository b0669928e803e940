// meshdcm web UI: the image viewer. One, two or four panes, each a series; the tools act on the active pane.
// Per pane: window/level and presets, zoom and pan, orientation labels, scale bar and slice position from the
// series' geometry (geometry.js), slices and phases (time points) of a dynamic series, a map or segmentation drawn
// over the anatomy. Panes are linked by patient position, not by index. The signal-time curve: curve.js.
"use strict";
// --- image viewer ----------------------------------------------------------------------------------------------
const PANE_SIZE = {1: 512, 2: 400, 4: 340};  // canvas pixels (= CSS pixels) of a pane in each layout
const ZOOM_STEP = 1.25, ZOOM_MIN = 0.25, ZOOM_MAX = 16;
const viewer = {panes: [], active: 0, layout: 1, link: true, t0: 0, series: new Map()};
const JET = (() => { const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) { const x = i / 255;
    lut[3 * i] = 255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * x - 3)));
    lut[3 * i + 1] = 255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * x - 2)));
    lut[3 * i + 2] = 255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * x - 1))); }
  return lut; })();

function makePane(i) {
  const canvas = el("canvas", {class: "view", id: i === 0 ? "viewer-canvas" : `viewer-canvas-${i}`, width: 512, height: 512});
  const div = (cls) => el("div", {class: cls});
  const pane = {i, canvas, ctx: canvas.getContext("2d"), image: document.createElement("canvas"),
    overImage: document.createElement("canvas"), uid: null, info: null, data: null, z: 0, t: 0, center: 0, width: 1,
    zoom: 1, panX: 0, panY: 0, overlay: null, opacity: 0.5, aif: null,
    orient: {top: div("orient orient-top"), bottom: div("orient orient-bottom"), left: div("orient orient-left"), right: div("orient orient-right")},
    corner: {tl: div("corner corner-tl"), bl: div("corner corner-bl"), br: div("corner corner-br")},
    scaleBar: div("scale-bar"), scaleLabel: el("span", {class: "scale-label"})};
  pane.el = el("div", {class: "viewport", dataset: {pane: i}}, canvas, ...Object.values(pane.orient),
    ...Object.values(pane.corner), el("div", {class: "scale"}, pane.scaleBar, pane.scaleLabel));
  attachPaneEvents(pane);
  return pane;
}
for (let i = 0; i < 4; i++) viewer.panes.push(makePane(i));
$("#viewports").replaceChildren(...viewer.panes.map(p => p.el));
const activePane = () => viewer.panes[viewer.active];
const shownPanes = () => viewer.panes.slice(0, viewer.layout);

function clearViewer() {
  for (const pane of viewer.panes) { Object.assign(pane, {uid: null, info: null, data: null, overlay: null, aif: null});
    pane.ctx.setTransform(1, 0, 0, 1, 0, 0); pane.ctx.clearRect(0, 0, pane.canvas.width, pane.canvas.height);
    for (const k of ["slice", "phase", "series", "firstImageMs", "loaded"]) delete pane.canvas.dataset[k];
    for (const d of [...Object.values(pane.orient), ...Object.values(pane.corner)]) d.textContent = "";
    pane.scaleLabel.textContent = ""; pane.scaleBar.style.width = "0"; }
  viewer.series.clear();
  $("#viewer-title").textContent = "Click a series to view it.";
  syncTools(); hideCurve();
}
function setLayout(n) {
  viewer.layout = n; $("#viewports").dataset.layout = n;
  for (const pane of viewer.panes) { pane.canvas.width = pane.canvas.height = PANE_SIZE[n]; }
  if (viewer.active >= n) activate(viewer.panes[0]);
  document.querySelectorAll(".pane-layout").forEach(b => b.classList.toggle("on", +b.dataset.layout === n));
  shownPanes().forEach(p => render(p));
}
function activate(pane) {
  viewer.active = pane.i; state.series = pane.uid;
  viewer.panes.forEach(p => p.el.classList.toggle("active", p === pane));
  markCards(); syncTools(); showCurveFor(pane);
}
function markCards() {
  const shown = new Set(shownPanes().map(p => p.uid).filter(Boolean));
  document.querySelectorAll(".series-card").forEach(c => { c.classList.toggle("selected", c.dataset.series === activePane().uid);
    c.classList.toggle("shown", shown.has(c.dataset.series)); });
}

// --- series data: the description and the slices, shared by the panes and overlays showing it ------------------
async function seriesData(uid) {
  if (!viewer.series.has(uid)) viewer.series.set(uid, {uid, info: null, slices: [], ready: api(`/api/series/${uid}/info`)
    .then(info => { const d = viewer.series.get(uid); if (d) { d.info = info; d.slices = new Array(info.count); } return info; })
    .catch(err => { viewer.series.delete(uid); throw err; })});
  const d = viewer.series.get(uid); await d.ready; return d;
}
async function fetchSlice(data, i) {
  if (data.slices[i]) return data.slices[i];
  const r = await fetch(`/api/series/${data.uid}/slices/${i}`);
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
  const buf = await r.arrayBuffer();
  return (data.slices[i] = data.info.dtype === "float32" ? new Float32Array(buf) : new Int16Array(buf));
}
async function prefetch(data, pane) {
  const n = data.info.count, first = data.info.first, order = [];
  for (let d = 1; d < n; d++) for (const i of [first + d, first - d]) if (i >= 0 && i < n) order.push(i);
  const next = async () => { while (order.length && viewer.series.get(data.uid) === data) await fetchSlice(data, order.shift()); };
  await Promise.all([next(), next(), next(), next()]);
  if (pane.uid === data.uid) pane.canvas.dataset.loaded = "all";
}

// --- opening a series in a pane ------------------------------------------------------------------------------------
async function openSeries(uid, pane = activePane()) {
  viewer.t0 = performance.now();
  pane.uid = uid; if (pane === activePane()) state.series = uid;
  delete pane.canvas.dataset.firstImageMs; delete pane.canvas.dataset.loaded;
  markCards();
  let data;
  try { data = await seriesData(uid); } catch (err) { $("#viewer-status").textContent = err.message; return; }
  if (pane.uid !== uid) return;
  const info = data.info, linkedTo = viewer.link && shownPanes().find(p => p !== pane && p.info && sameFrame(p.info, info));
  Object.assign(pane, {info, data, t: 0, center: info.center, width: info.width, zoom: 1, panX: 0, panY: 0,
                       overlay: null, aif: null, z: info.first});
  if (linkedTo) { const near = nearestSlice(info, sliceCentre(linkedTo.info, linkedTo.z)); if (near) pane.z = near.z; }
  if (pane === activePane()) $("#cursor-value").textContent = "";  // the last series' value is no value of this one
  const labels = orientationLabels(info) || {};
  for (const side of ["top", "bottom", "left", "right"]) pane.orient[side].textContent = labels[side] || "";
  pane.corner.tl.textContent = seriesTitle(uid);
  pane.canvas.dataset.series = uid;
  if (pane === activePane()) syncTools();
  await draw(pane);
  if (pane.uid !== uid) return;
  const ms = Math.round(performance.now() - viewer.t0);
  $("#viewer-status").textContent = `first image in ${ms} ms`;
  pane.canvas.dataset.firstImageMs = ms;
  if (info.phases > 1) loadAif(pane);
  showCurveFor(activePane());
  prefetch(data, pane);
}
function seriesRow(uid) { return (state.studyData && state.studyData.series.find(x => x.uid === uid)) || {}; }
function seriesTitle(uid) { const s = seriesRow(uid);
  return `${s.modality || ""} #${s.number || ""} ${s.description || uid}`.trim(); }

// --- the tools of the active pane ----------------------------------------------------------------------------------
function syncTools() {
  const pane = activePane(), info = pane.info;
  const s = info ? seriesRow(pane.uid) : null;
  $("#viewer-title").textContent = info ? seriesTitle(pane.uid) +
    (s.derived ? ` (${s.derived_from ? `${s.provenance || "derived"}, ` : ""}${madeBy(s)})` : "")
                                        : "Click a series to view it.";
  $("#presets").replaceChildren(...Object.entries(info ? info.presets : {}).map(([name, [c, w]]) =>
    el("button", {class: "small preset", dataset: {preset: name}, title: `C ${c} W ${w}`, onclick: () => setWindow(pane, c, w)}, name)));
  $("#phase-tools").classList.toggle("hidden", !info || info.phases < 2);
  refreshOverlayChoices();
  if (info) updateTools(pane);
}
function updateTools(pane) {
  if (pane !== activePane() || !pane.info) return;
  const info = pane.info;
  $("#slice-slider").max = info.slices - 1; $("#slice-slider").value = pane.z;
  $("#slice-label").textContent = `${pane.z + 1}/${info.slices}` + (info.positions[pane.z] !== null ? ` · ${info.positions[pane.z].toFixed(1)} mm` : "");
  $("#phase-slider").max = info.phases - 1; $("#phase-slider").value = pane.t;
  $("#phase-label").textContent = phaseText(info, pane.t);
  $("#wl-center").value = Math.round(pane.center * 100) / 100; $("#wl-width").value = Math.round(pane.width * 100) / 100;
  $("#overlay-series").value = pane.overlay ? pane.overlay.uid : "";
  $("#overlay-opacity").value = Math.round(pane.opacity * 100);
  const over = pane.overlay && pane.overlay.data ? pane.overlay.data.info : null;
  const segs = info.kind === "seg" ? info : over && over.kind === "seg" ? over : null;
  const legendOf = info.kind === "map" ? {info, center: pane.center, width: pane.width} :
    over && !segs ? {info: over, center: over.center, width: over.width} : null;
  $("#legend").style.display = legendOf ? "flex" : "none";
  if (legendOf) drawLegend(legendOf);
  $("#seg-legend").replaceChildren(...(segs ? segs.segments : []).map(x => {  // CSSOM, not a style attribute (CSP)
    const swatch = el("span", {class: "swatch"}); swatch.style.backgroundColor = `rgb(${x.rgb.join(",")})`;
    return el("span", {class: "segment", dataset: {value: x.value}}, swatch, x.label); }));
}
function phaseText(info, t) {
  if (info.phases < 2) return "";
  const what = info.phase_kind === "time" ? "time" : "volume";
  return `${what} ${t + 1}/${info.phases}` + (info.times ? ` · ${info.times[t].toFixed(1)} s` : "");
}
function drawLegend({info, center, width}) {
  const c = $("#legend-bar"), ctx = c.getContext("2d");
  for (let x = 0; x < c.width; x++) { const v = Math.round(255 * x / (c.width - 1));
    ctx.fillStyle = `rgb(${JET[3 * v]},${JET[3 * v + 1]},${JET[3 * v + 2]})`; ctx.fillRect(x, 0, 1, c.height); }
  const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2));
  $("#legend-lo").textContent = fmt(center - width / 2);
  $("#legend-hi").textContent = `${fmt(center + width / 2)} ${info.unit || ""}`;
}
function refreshOverlayChoices() {
  const pane = activePane(), select = $("#overlay-series");
  const rows = (state.studyData ? state.studyData.series : []).filter(s => s.uid !== pane.uid && s.thumbnail &&
    s.modality !== "SR" && s.stroke !== "summary" && (s.map || (s.derived && !/^registered|reformat/.test(s.provenance || ""))));
  select.replaceChildren(el("option", {value: ""}, "none"),
    ...rows.map(s => el("option", {value: s.uid}, s.provenance || s.description)));
  select.value = pane.overlay ? pane.overlay.uid : "";
  select.disabled = !pane.info;
}

// --- changing what a pane shows ----------------------------------------------------------------------------------
function setWindow(pane, c, w) { pane.center = c; pane.width = Math.max(1e-6, w); draw(pane); }
function setSlice(pane, z, {link = true} = {}) {
  if (!pane.info) return;
  pane.z = Math.min(pane.info.slices - 1, Math.max(0, z)); draw(pane);
  if (link && viewer.link) {
    const p = sliceCentre(pane.info, pane.z);
    for (const other of shownPanes()) {
      if (other === pane || !other.info || !sameFrame(pane.info, other.info)) continue;
      const near = nearestSlice(other.info, p);
      if (near && near.z !== other.z) { other.z = near.z; draw(other); }
    }
  }
  if (pane === activePane()) refreshCurve(pane);
}
function setPhase(pane, t) { if (!pane.info) return; pane.t = Math.min(pane.info.phases - 1, Math.max(0, t)); draw(pane); drawCurve(); }
function zoomBy(pane, factor, at = null) {  // at: canvas point that stays put
  if (!pane.info) return;
  const zoom = Math.min(ZOOM_MAX, Math.max(ZOOM_MIN, pane.zoom * factor)), k = zoom / pane.zoom;
  if (at) { const cx = pane.canvas.width / 2 + pane.panX, cy = pane.canvas.height / 2 + pane.panY;
    pane.panX += (at[0] - cx) * (1 - k); pane.panY += (at[1] - cy) * (1 - k); }
  else { pane.panX *= k; pane.panY *= k; }
  pane.zoom = zoom; render(pane);
}
function fit(pane) { pane.zoom = 1; pane.panX = pane.panY = 0; render(pane); }
async function setOverlay(pane, uid) {
  pane.overlay = uid ? {uid, data: null} : null;
  if (uid) { const data = await seriesData(uid); if (!pane.overlay || pane.overlay.uid !== uid) return; pane.overlay.data = data; }
  draw(pane); updateTools(pane);
}

// --- drawing ---------------------------------------------------------------------------------------------------------
const imageIndex = (pane) => pane.t * pane.info.slices + pane.z;
async function draw(pane) {
  if (!pane.info) return;
  const uid = pane.uid, i = imageIndex(pane);
  try { await fetchSlice(pane.data, i); } catch (err) { $("#viewer-status").textContent = err.message; return; }
  if (pane.uid !== uid || imageIndex(pane) !== i) return;  // moved on meanwhile: that draw shows it
  const o = overlaySlice(pane);
  if (o && o.data && !o.data.slices[o.z]) { await fetchSlice(o.data, o.z).catch(() => null); if (pane.uid !== uid) return; }
  render(pane);
}
// The overlay's slice at the pane's slice: the nearest by position, if it is within half a slice of it.
function overlaySlice(pane) {
  const o = pane.overlay;
  if (!o || !o.data || !o.data.info || !hasGeometry(o.data.info) || !hasGeometry(pane.info) || !sameFrame(pane.info, o.data.info)) return null;
  const near = nearestSlice(o.data.info, sliceCentre(pane.info, pane.z));
  return near && near.distance <= halfGap(o.data.info) + 1e-3 ? {data: o.data, z: near.z} : null;
}
// Pixels per mm on the canvas, and the map from image pixels to canvas pixels ([a, b, c, d, e, f] of setTransform).
function viewOf(pane) {
  const info = pane.info, [dr, dc] = info.spacing, W = pane.canvas.width, H = pane.canvas.height;
  const k = Math.min(W / (info.cols * dc), H / (info.rows * dr)) * pane.zoom, sx = k * dc, sy = k * dr;
  return {k, m: [sx, 0, 0, sy, W / 2 - sx * info.cols / 2 + pane.panX, H / 2 - sy * info.rows / 2 + pane.panY]};
}
// A segmentation's label map: each segment in its colour, no segment transparent.
function paintLabels(target, px, cols, rows, segments) {
  target.width = cols; target.height = rows;
  const ctx = target.getContext("2d"), img = ctx.createImageData(cols, rows), d = img.data;
  const rgb = new Map(segments.map(s => [s.value, s.rgb]));
  for (let i = 0, j = 0; i < px.length; i++, j += 4) {
    const c = rgb.get(px[i]);
    if (c) { d[j] = c[0]; d[j + 1] = c[1]; d[j + 2] = c[2]; d[j + 3] = 255; }
  }
  ctx.putImageData(img, 0, 0);
}
// A colour image (a summary, a screen capture): three values a pixel, shown as they are.
function paintRgb(target, px, cols, rows) {
  target.width = cols; target.height = rows;
  const ctx = target.getContext("2d"), img = ctx.createImageData(cols, rows), d = img.data;
  for (let i = 0, j = 0; j < d.length; i += 3, j += 4) { d[j] = px[i]; d[j + 1] = px[i + 1]; d[j + 2] = px[i + 2]; d[j + 3] = 255; }
  ctx.putImageData(img, 0, 0);
}
function paint(target, px, cols, rows, lo, width, colour, transparentBelow) {
  target.width = cols; target.height = rows;
  const ctx = target.getContext("2d"), img = ctx.createImageData(cols, rows), d = img.data, scale = 255 / width;
  for (let i = 0, j = 0; i < px.length; i++, j += 4) {
    const raw = px[i]; let v = (raw - lo) * scale; v = v < 0 ? 0 : v > 255 ? 255 : v | 0;
    if (colour) { d[j] = JET[3 * v]; d[j + 1] = JET[3 * v + 1]; d[j + 2] = JET[3 * v + 2]; } else { d[j] = d[j + 1] = d[j + 2] = v; }
    d[j + 3] = raw !== raw || (transparentBelow && (!(raw > lo) || raw === 0)) ? 0 : 255;  // NaN: a map's padding; a map is 0 outside its mask
  }
  ctx.putImageData(img, 0, 0);
}
function render(pane) {
  const ctx = pane.ctx, info = pane.info;
  ctx.setTransform(1, 0, 0, 1, 0, 0); ctx.fillStyle = "#000"; ctx.fillRect(0, 0, pane.canvas.width, pane.canvas.height);
  if (!info) return;
  const px = pane.data.slices[imageIndex(pane)]; if (!px) return;
  if (info.kind === "seg") paintLabels(pane.image, px, info.cols, info.rows, info.segments);
  else if (info.kind === "rgb") paintRgb(pane.image, px, info.cols, info.rows);
  else paint(pane.image, px, info.cols, info.rows, pane.center - pane.width / 2, pane.width, info.kind === "map", false);
  const view = viewOf(pane);
  ctx.imageSmoothingEnabled = false;
  ctx.setTransform(...view.m); ctx.drawImage(pane.image, 0, 0);
  const o = overlaySlice(pane), c = pane.canvas.dataset;
  let overlayDrawn = false;
  if (o && o.data.slices[o.z]) {
    const oi = o.data.info, t = overlayTransform(info, pane.z, oi, o.z);
    if (t) {
      if (oi.kind === "seg") paintLabels(pane.overImage, o.data.slices[o.z], oi.cols, oi.rows, oi.segments);
      else paint(pane.overImage, o.data.slices[o.z], oi.cols, oi.rows, oi.center - oi.width / 2, oi.width, true, true);
      ctx.globalAlpha = pane.opacity; ctx.transform(...t); ctx.drawImage(pane.overImage, 0, 0); ctx.globalAlpha = 1;
      ctx.setTransform(...view.m); overlayDrawn = true;
    }
  }
  drawAifMarks(pane, ctx);
  // the labels: slice position, phase, window, zoom, scale
  const pos = info.positions[pane.z];
  pane.corner.bl.textContent = `Im ${pane.z + 1}/${info.slices}` + (pos !== null ? ` · Pos ${pos.toFixed(1)} mm` : "") +
    (info.phases > 1 ? ` · ${phaseText(info, pane.t)}` : "") +
    (pane.overlay && pane.overlay.data && !overlayDrawn ? " · overlay: none at this position" : "");
  pane.corner.br.textContent = `C ${+pane.center.toFixed(2)} W ${+pane.width.toFixed(2)} · ${pane.zoom.toFixed(2)}×`;
  drawScale(pane, view.k);
  Object.assign(c, {slice: pane.z, phase: pane.t, index: imageIndex(pane), center: pane.center, width: pane.width,
    zoom: +pane.zoom.toFixed(3), pan: `${Math.round(pane.panX)},${Math.round(pane.panY)}`, position: pos !== null ? pos.toFixed(1) : "",
    overlay: overlayDrawn ? pane.overlay.uid : "", overlaySlice: overlayDrawn ? o.z : ""});
  updateTools(pane);
}
function drawScale(pane, k) {  // a bar of a round length, about a quarter of the pane wide
  const most = pane.canvas.width / 4 / k, mm = [1, 2, 5, 10, 20, 50, 100, 200, 500].filter(v => v <= most).pop() || 1;
  const css = mm * k * pane.canvas.clientWidth / pane.canvas.width;
  pane.scaleBar.style.width = `${css}px`; pane.scaleLabel.textContent = `${mm} mm`;
  Object.assign(pane.scaleBar.dataset, {mm, px: css.toFixed(1)});
}
function drawAifMarks(pane, ctx) {
  if (!pane.aif || !pane.aif.here) return;
  ctx.strokeStyle = "#ff3b30"; ctx.lineWidth = 2 / viewOf(pane).k / Math.min(...pane.info.spacing);
  for (const [z, row, col] of pane.aif.here.voxels) if (z === pane.z) ctx.strokeRect(col - 0.25, row - 0.25, 1.5, 1.5);
}

// --- what is under the cursor -----------------------------------------------------------------------------------------
function imagePoint(pane, ev) {  // (col, row) of the image under the mouse, fractional
  const r = pane.canvas.getBoundingClientRect(), m = viewOf(pane).m;
  const x = (ev.clientX - r.left) * pane.canvas.width / r.width, y = (ev.clientY - r.top) * pane.canvas.height / r.height;
  return [(x - m[4]) / m[0], (y - m[5]) / m[3]];
}
function showValue(pane, ev) {
  const info = pane.info, [fx, fy] = imagePoint(pane, ev), x = Math.floor(fx), y = Math.floor(fy);
  const px = pane.data.slices[imageIndex(pane)];
  if (!px || x < 0 || y < 0 || x >= info.cols || y >= info.rows) return null;
  const v = info.kind === "rgb" ? `rgb(${px.slice(3 * (y * info.cols + x), 3 * (y * info.cols + x) + 3).join(", ")})` : px[y * info.cols + x];
  let text = `(${x}, ${y}) = ${info.dtype === "float32" ? (v === v ? v.toFixed(2) : "none") : v} ${info.unit || ""}`;
  const o = overlaySlice(pane);
  if (o && o.data.slices[o.z]) {
    const oi = o.data.info, [ox, oy] = pixelOf(oi, o.z, pointOf(info, pane.z, fx - 0.5, fy - 0.5)).map(u => Math.round(u));
    if (ox >= 0 && oy >= 0 && ox < oi.cols && oy < oi.rows) {
      const ov = o.data.slices[o.z][oy * oi.cols + ox];
      text += oi.kind === "seg" ? ` · ${(oi.segments.find(x => x.value === ov) || {label: "no segment"}).label}`
        : ` · ${seriesRow(o.data.uid).map || "overlay"} ${ov.toFixed(2)} ${oi.unit || ""}`;
    }
  }
  $("#cursor-value").textContent = text;
  return [x, y];
}

// --- mouse and keys ---------------------------------------------------------------------------------------------------
let drag = null;
function attachPaneEvents(pane) {
  const c = pane.canvas;
  c.addEventListener("contextmenu", (ev) => ev.preventDefault());
  c.addEventListener("mousedown", (ev) => {
    if (pane !== activePane()) activate(pane);
    if (!pane.info) return;
    ev.preventDefault();  // no text selection while dragging; so the keys go to the panes, not to the last control:
    if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
    const mode = ev.button === 1 || (ev.button === 0 && ev.shiftKey) ? "pan" : ev.button === 2 ? "zoom" : "window";
    drag = {pane, mode, x: ev.clientX, y: ev.clientY, c: pane.center, w: pane.width, panX: pane.panX, panY: pane.panY, zoom: pane.zoom};
  });
  c.addEventListener("wheel", (ev) => { if (!pane.info) return; ev.preventDefault();
    if (pane !== activePane()) activate(pane);
    if (ev.ctrlKey) { const r = c.getBoundingClientRect();
      zoomBy(pane, ev.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP, [(ev.clientX - r.left) * c.width / r.width, (ev.clientY - r.top) * c.height / r.height]); }
    else setSlice(pane, pane.z + Math.sign(ev.deltaY));
  }, {passive: false});
  c.addEventListener("mousemove", (ev) => {
    if (!pane.info || drag) return;
    const at = showValue(pane, ev);
    if (at && pane.info.phases > 1 && pane === activePane()) requestCurve(pane, at[0], at[1]);
  });
}
window.addEventListener("mouseup", () => { drag = null; });
window.addEventListener("mousemove", (ev) => {
  if (!drag) return;
  const p = drag.pane, dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
  if (drag.mode === "window") { const k = Math.max(drag.w, 1) / 200; setWindow(p, drag.c + dy * k, drag.w + dx * k); }
  else if (drag.mode === "pan") { const s = p.canvas.width / p.canvas.getBoundingClientRect().width;
    p.panX = drag.panX + dx * s; p.panY = drag.panY + dy * s; render(p); }
  else { p.zoom = Math.min(ZOOM_MAX, Math.max(ZOOM_MIN, drag.zoom * Math.pow(1.01, -dy)));
    p.panX = drag.panX * p.zoom / drag.zoom; p.panY = drag.panY * p.zoom / drag.zoom; render(p); }
});
document.addEventListener("keydown", (ev) => {
  const pane = activePane(), info = pane.info;
  if (!info || ["TEXTAREA", "INPUT", "SELECT"].includes(ev.target.tagName) || $("#page-study").classList.contains("hidden")) return;
  const step = {ArrowDown: 1, ArrowUp: -1, ArrowRight: 1, ArrowLeft: -1}[ev.key];
  if (step !== undefined) { ev.preventDefault();
    if ((ev.key === "ArrowLeft" || ev.key === "ArrowRight") && info.phases > 1) setPhase(pane, pane.t + step);
    else setSlice(pane, pane.z + step); }
  if (ev.key === "+" || ev.key === "=") zoomBy(pane, ZOOM_STEP);
  if (ev.key === "-") zoomBy(pane, 1 / ZOOM_STEP);
});
$("#slice-slider").addEventListener("input", (ev) => setSlice(activePane(), +ev.target.value));
$("#phase-slider").addEventListener("input", (ev) => setPhase(activePane(), +ev.target.value));
for (const id of ["#wl-center", "#wl-width"]) $(id).addEventListener("change", () => setWindow(activePane(), +$("#wl-center").value, +$("#wl-width").value));
document.querySelectorAll(".pane-layout").forEach(b => b.addEventListener("click", () => setLayout(+b.dataset.layout)));
$("#link-panes").addEventListener("change", (ev) => { viewer.link = ev.target.checked; });
$("#zoom-in").addEventListener("click", () => zoomBy(activePane(), ZOOM_STEP));
$("#zoom-out").addEventListener("click", () => zoomBy(activePane(), 1 / ZOOM_STEP));
$("#zoom-fit").addEventListener("click", () => fit(activePane()));
$("#overlay-series").addEventListener("change", (ev) => setOverlay(activePane(), ev.target.value));
$("#overlay-opacity").addEventListener("input", (ev) => { const p = activePane(); p.opacity = +ev.target.value / 100; render(p); });
// the study changed (a map arrived): new overlay choices, and the AIF of a dynamic series once its maps are there
function viewerStudyChanged() {
  refreshOverlayChoices();
  for (const pane of shownPanes()) if (pane.info && pane.info.phases > 1 && !pane.aif) loadAif(pane);
  if (activePane().info) syncTools();
}
setLayout(1); activate(viewer.panes[0]);
