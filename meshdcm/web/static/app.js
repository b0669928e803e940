// meshdcm web UI: plain JS, no build step. State lives on the server; server-sent events say what changed.
"use strict";
const $ = (sel, root = document) => root.querySelector(sel);
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v); else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
};
async function api(path, options = {}) {
  const opts = {...options, headers: {"X-CSRF-Token": csrf, ...(options.headers || {})}};
  if (opts.json !== undefined) { opts.body = JSON.stringify(opts.json); opts.headers["Content-Type"] = "application/json"; delete opts.json; }
  const r = await fetch(path, opts);
  if (r.status === 401) { location.href = "/login"; throw new Error("not logged in"); }
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}
const later = (fn, ms = 200) => { let t = null; return () => { if (!t) t = setTimeout(() => { t = null; fn(); }, ms); }; };
const personName = (v) => (v || "").split("=")[0].replace(/\^+/g, " ").trim();

// --- routing ----------------------------------------------------------------------------------------------
const state = {search: null, rows: [], sort: "StudyDate", descending: true, study: null, studyData: null, series: null,
               sections: [], draftTimer: null, timeline: false};
function route() {
  const [, page, arg] = location.hash.split("/");
  for (const p of ["search", "study", "monitor"]) $("#page-" + p).classList.toggle("hidden", (page || "search") !== p);
  $("#nav-search").classList.toggle("active", !page || page === "search" || page === "study");
  $("#nav-monitor").classList.toggle("active", page === "monitor");
  if (page === "study" && arg) showStudy(arg);
  if (page === "monitor") refreshMonitor();
}
window.addEventListener("hashchange", route);

// --- search ---------------------------------------------------------------------------------------------------
$("#search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  state.rows = [];
  renderResults();
  $("#search-status").textContent = "searching…";
  const res = await api("/api/search", {method: "POST", json: {
    patient: $("#search-patient").value, patient_id: $("#search-patient-id").value,
    date_from: $("#search-from").value, date_to: $("#search-to").value,
    modality: $("#search-modality").value, accession: $("#search-accession").value}});
  state.search = res.id;
  refreshSearch();
});
const refreshSearch = later(async () => {
  if (!state.search) return;
  const s = await api("/api/search/" + state.search);
  state.rows = s.studies;
  const answered = s.ends.map(e => `${e.node}${e.status === "failed" ? " (failed)" : ""}: ${e.count}`).join(", ");
  $("#search-status").textContent = `${s.studies.length} studies` + (answered ? ` — answers from ${answered}` : " — waiting for answers…");
  renderResults();
}, 100);
document.querySelectorAll("#results th[data-sort]").forEach(th => th.addEventListener("click", () => {
  state.descending = state.sort === th.dataset.sort ? !state.descending : false;
  state.sort = th.dataset.sort; renderResults();
}));
function renderResults() {
  const key = state.sort;
  const rows = [...state.rows].sort((a, b) => (state.descending ? -1 : 1) *
    String(a[key] || "").localeCompare(String(b[key] || ""), undefined, {numeric: true}));
  document.querySelectorAll("#results th").forEach(th => { th.classList.toggle("sorted", th.dataset.sort === key);
    th.classList.toggle("asc", th.dataset.sort === key && !state.descending); });
  const body = $("#results tbody");
  body.replaceChildren(...rows.map(r => el("tr", {dataset: {study: r.StudyInstanceUID}},
    el("td", {}, personName(r.PatientName)), el("td", {}, r.PatientID || ""), el("td", {}, r.StudyDate || ""),
    el("td", {}, r.ModalitiesInStudy || ""), el("td", {}, r.StudyDescription || ""), el("td", {}, r.AccessionNumber || ""),
    el("td", {}, r.NumberOfStudyRelatedInstances || ""), el("td", {class: "dim"}, (r.sources || []).join(", ")),
    el("td", {}, el("button", {class: "small open-study", onclick: () => openStudy(r.StudyInstanceUID)}, "Open")))));
}
async function openStudy(uid, again = false) {
  await api(`/api/studies/${uid}/open${again ? "?again=1" : ""}`, {method: "POST"});
  if (location.hash !== "#/study/" + uid) location.hash = "#/study/" + uid; else showStudy(uid);
}

// --- study page ---------------------------------------------------------------------------------------------
async function showStudy(uid) {
  if (state.study !== uid) {
    state.study = uid; state.series = null; state.studyData = null;
    $("#series").replaceChildren(); $("#sign-status").replaceChildren(); clearViewer();
    await loadDraft();
  }
  refreshStudy(); refreshMeasurements();
  if (state.timeline) refreshTimeline();
}
const refreshStudy = later(async () => {
  if (!state.study) return;
  const s = await api("/api/studies/" + state.study);
  state.studyData = s;
  const i = s.info;
  $("#study-title").textContent = `${personName(i.PatientName) || "?"} (${i.PatientID || "?"}) — ${i.StudyDescription || "study"} ${i.StudyDate || ""}`;
  $("#study-sub").textContent = `Accession ${i.AccessionNumber || "-"} · ${i.ModalitiesInStudy || ""} · ${s.uid}`;
  const pct = s.total ? Math.round(100 * s.done / s.total) : (s.state === "complete" ? 100 : 0);
  $("#study-progress > div").style.width = pct + "%";
  $("#study-progress").classList.toggle("done", s.state === "complete");
  $("#study-state").textContent = `${s.state}${s.total ? ` · ${s.done}/${s.total} images` : ""}`;
  renderSeries(s.series);
  prefillProtocol(s);
  renderErrors($("#study-errors"), s.errors);
  renderReports(s.reports);
  renderPriors(s);
  refreshMeasurements();
}, 250);
function renderSeries(list) {
  const grid = $("#series");
  const cards = new Map([...grid.children].map(c => [c.dataset.series, c]));
  for (const s of list) {
    let card = cards.get(s.uid);
    if (!card) {
      card = el("div", {class: "series-card", dataset: {series: s.uid}, onclick: () => openSeries(s.uid)},
        el("div", {class: "noimg"}), el("div", {class: "desc"}), el("div", {class: "bar"}, el("div")), el("div", {class: "dim meta"}));
      grid.append(card);
    }
    card.dataset.derived = s.derived ? "true" : "false";
    card.dataset.complete = s.complete ? "true" : "false";
    if (s.thumbnail && !card.querySelector("img")) {
      const img = el("img", {src: `/api/series/${s.uid}/thumbnail`, alt: s.description, loading: "lazy"});
      card.firstChild.replaceWith(img);
    }
    card.querySelector(".desc").replaceChildren(`${s.modality} #${s.number} ${s.description}`,
      s.derived ? el("div", {}, el("span", {class: "badge"}, s.map ? `${s.map} map` : "derived"), ` by ${s.node || "?"}`) : "");
    const expected = s.expected || s.arrived || 1;
    const pct = s.complete ? 100 : Math.min(100, Math.round(100 * s.arrived / expected));
    card.querySelector(".bar > div").style.width = pct + "%";
    card.querySelector(".bar").classList.toggle("done", !!s.complete);
    card.querySelector(".meta").textContent = `${s.arrived}/${s.expected || "?"} images` + (s.complete ? " ✓" : "");
  }
}
function renderErrors(list, errors) {
  list.replaceChildren(...errors.map(e => el("li", {class: "error"},
    `${e.time} ${e.node}: ${e.reason || "?"}`, el("div", {class: "dim"}, `next: ${e.action || "-"}`),
    e.dead_letter ? el("button", {class: "small retry-dead", onclick: (ev) => retryDead(e.dead_letter, ev.target)},
      `Retry dead letter ${e.dead_letter.id} on ${e.dead_letter.node}`) : null)));
}
async function retryDead(dl, button) {
  button.disabled = true;
  try { await api("/api/dead/retry", {method: "POST", json: dl}); button.textContent = "retried ✓"; }
  catch (err) { button.textContent = "retry failed: " + err.message; button.disabled = false; }
}
$("#study-refetch").addEventListener("click", () => openStudy(state.study, true));
$("#open-viewer").addEventListener("click", async () => {
  const r = await api("/api/viewer/open", {method: "POST", json: {study: state.study}});
  $("#study-state").textContent = "sent to the desktop viewer (open.study " + r.request.slice(0, 8) + ")";
});
$("#show-timeline").addEventListener("click", () => {
  state.timeline = !state.timeline; $("#timeline-box").classList.toggle("hidden", !state.timeline);
  if (state.timeline) refreshTimeline();
});
const refreshTimeline = later(async () => {
  if (!state.study || !state.timeline) return;
  const t = await api(`/api/studies/${state.study}/timeline`);
  $("#timeline tbody").replaceChildren(...t.events.map(e => el("tr", {},
    el("td", {}, e.time.replace("T", " ").replace("Z", "")), el("td", {}, e.node), el("td", {}, e.topic + (e.count > 1 ? ` ×${e.count}` : "")),
    el("td", {class: "dim"}, e.series ? "…" + e.series.slice(-10) : ""), el("td", {class: "error"}, e.error || ""),
    el("td", {class: "dim"}, e.source))));
}, 500);

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

// --- report -------------------------------------------------------------------------------------------------------
async function loadDraft() {
  const me = await api("/api/me");
  state.sections = me.sections;
  const d = await api(`/api/studies/${state.study}/draft`);
  $("#report-sections").replaceChildren(...state.sections.map(([key, title, code]) => el("label", {},
    title, " ", el("span", {class: "code"}, `RadLex ${code}`),
    el("textarea", {id: "report-" + key, dataset: {section: key},
      oninput: (ev) => { ev.target.dataset.edited = "1"; draftChanged(); }}))));
  for (const [key] of state.sections) $("#report-" + key).value = d.sections[key] || "";
  protocolSeen = "";
  if (d.saved && d.sections.protocol) $("#report-protocol").dataset.edited = "1";
  $("#draft-status").textContent = d.saved ? `draft saved ${d.saved}` + (d.signed ? ` · signed ${d.signed}` : "") : "new report";
}
let protocolSeen = "";
async function prefillProtocol(s) {  // the protocol section follows the series until the radiologist edits it
  const t = $("#report-protocol");
  const key = s.series.filter(x => !x.derived).map(x => x.uid + x.arrived).join() + s.series.length;
  if (!t || t.dataset.edited || key === protocolSeen) return;
  protocolSeen = key;
  const p = await api(`/api/studies/${state.study}/protocol`);
  if (!t.dataset.edited && p.text !== t.value) { t.value = p.text; if (p.text) draftChanged(); }
}
function sectionsNow() { const out = {}; for (const [key] of state.sections) out[key] = $("#report-" + key).value; return out; }
function draftChanged() {
  $("#draft-status").textContent = "editing…";
  clearTimeout(state.draftTimer);
  state.draftTimer = setTimeout(saveDraft, 400);
}
async function saveDraft() {
  const d = await api(`/api/studies/${state.study}/draft`, {method: "PUT", json: sectionsNow()});
  $("#draft-status").textContent = `draft saved ${d.saved}`;
  $("#draft-status").dataset.saved = d.saved;
}
const refreshMeasurements = later(async () => {
  if (!state.study) return;
  const m = await api(`/api/studies/${state.study}/measurements`);
  if (!m.measurements.length) return;
  $("#measurements").classList.remove("dim");
  $("#measurements").replaceChildren(...m.measurements.map(x => {
    const value = `${x.label}: ${x.value} ${x.unit || ""}`.trim();
    return el("div", {class: "measure"}, el("button", {class: "small insert-measurement", onclick: () => insertFinding(
      `${value} (${x.series_description}; ${x.method || ""} by ${x.node}, from ${x.source_series})`)}, "Insert"), " ", value,
      el("div", {class: "dim"}, `${x.series_description} · ${x.node} · ${x.method || ""} · from ${x.source_series}`));
  }));
}, 500);
function insertFinding(text) {
  const t = $("#report-findings");
  t.value = (t.value && !t.value.endsWith("\n") ? t.value + "\n" : t.value) + text;
  draftChanged();
}
function renderPriors(s) {
  const box = $("#priors");
  if (!s.priors.length) { box.textContent = s.priors_state === "done" ? "no prior reports" : "no index node answered"; return; }
  box.classList.remove("dim");
  box.replaceChildren(...s.priors.map(p => el("div", {class: "prior"}, el("b", {}, `${p.date} ${p.description}`),
    el("span", {class: "dim"}, ` (${p.node})`), el("pre", {}, p.text))));
}
function renderReports(reports) {
  $("#sign-status").replaceChildren(...reports.map(r => el("div", {class: r.state === "error" ? "error" : r.state === "stored" ? "ok" : "dim",
    dataset: {state: r.state, sop: r.sop}}, `Report ${r.sop.slice(-12)} signed by ${r.signed_by} at ${r.time}: ${r.state} — ${r.detail}`)));
}
$("#sign").addEventListener("click", async () => {
  clearTimeout(state.draftTimer);
  try { await api(`/api/studies/${state.study}/sign`, {method: "POST", json: sectionsNow()}); refreshStudy(); }
  catch (err) { $("#sign-status").append(el("div", {class: "error"}, "not signed: " + err.message)); }
});

// --- monitor ---------------------------------------------------------------------------------------------------------
const refreshMonitor = later(async () => {
  if (!location.hash.startsWith("#/monitor")) return;
  const m = await api("/api/mesh");
  $("#nodes tbody").replaceChildren(...m.nodes.map(n => el("tr", {},
    el("td", {}, n.name), el("td", {}, n.kind), el("td", {}, n.host), el("td", {}, n.group || "-"),
    el("td", {class: n.state === "alive" ? "ok" : "error"}, n.state), el("td", {}, n.lag.toFixed(1)),
    el("td", {class: "dim"}, n.topics.map(t => `${t.topic}${t.shared ? " [shared]" : ""}${t.where ? " where " + t.where : ""}`).join("; ")))));
  $("#rates").textContent = `${m.rates.total_per_s} messages/s over ${m.rates.window} s — ` +
    Object.entries(m.rates.topics).map(([k, v]) => `${k}: ${v}/s`).join(", ");
  renderErrors($("#mesh-errors"), m.errors);
}, 300);
$("#dead-refresh").addEventListener("click", async () => {
  $("#dead-status").textContent = "asking…";
  const d = await api("/api/dead/list", {method: "POST", json: {}});
  $("#dead tbody").replaceChildren(...d.letters.map(l => el("tr", {}, el("td", {}, l.node), el("td", {}, l.id),
    el("td", {}, l.topic), el("td", {class: "error"}, l.error), el("td", {}, l.attempts), el("td", {}, l.last_failed),
    el("td", {}, el("button", {class: "small", onclick: (ev) => retryDead({node: l.node, id: l.id}, ev.target)}, "Retry")))));
  $("#dead-status").textContent = d.ends.length ? `${d.ends.length} node(s) answered` : "no node keeps dead letters (or none answered)";
});
setInterval(refreshMonitor, 2000);
// a safety net under the event stream (a reconnect loses what happened meanwhile): refresh a study being fetched
setInterval(() => { if (state.study && state.studyData && state.studyData.state === "fetching") refreshStudy(); }, 2000);

// --- events and start -------------------------------------------------------------------------------------------------
const events = new EventSource("/api/events");
events.onmessage = (ev) => {
  const e = JSON.parse(ev.data);
  if (e.type === "search" && e.key === state.search) refreshSearch();
  if (e.type === "study" && e.key === state.study) refreshStudy();
  if (e.type === "timeline" && e.key === state.study) refreshTimeline();
  if (e.type === "mesh") refreshMonitor();
};
$("#logout").addEventListener("click", async () => { await api("/logout", {method: "POST"}); location.href = "/login"; });
api("/api/me").then(me => { $("#user").textContent = me.user; state.sections = me.sections; });
route();
