// meshdcm web UI: the report editor.
"use strict";
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
