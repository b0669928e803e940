// meshdcm web UI: the report editor. A signed report is final: the page shows it read-only, with who signed it;
// a correction is an amendment (a new report that names the one it replaces). Drafts are saved only after an edit.
"use strict";
// --- report -------------------------------------------------------------------------------------------------------
async function loadDraft() {
  const me = await api("/api/me");
  state.sections = me.sections; state.me = me;
  const d = await api(`/api/studies/${state.study}/draft`);
  state.report = d.report; state.amending = !!(d.report && d.amends === d.report.sop);
  state.aiAccepted = d.ai_sr || (d.report && d.report.ai_sr) || null;  // the AI result this report uses
  $("#report-sections").replaceChildren(...state.sections.map(([key, title, code]) => el("label", {},
    title, " ", el("span", {class: "code"}, `RadLex ${code}`),
    el("textarea", {id: "report-" + key, dataset: {section: key},
      oninput: (ev) => { ev.target.dataset.edited = "1"; draftChanged(); }}))));
  for (const [key] of state.sections) $("#report-" + key).value = d.sections[key] || "";
  protocolSeen = "";
  if ((d.saved || d.report) && d.sections.protocol) $("#report-protocol").dataset.edited = "1";
  $("#draft-status").textContent = d.report && !state.amending ? "" :
    d.saved ? `draft saved ${localTime(d.saved)}` : "new report";
  showReportState();
}
function showReportState() {  // signed (read-only, Amend offered), amending, or a draft; and who may sign
  const r = state.report, signed = !!r && !state.amending, why = state.me && state.me.cannot_sign;
  for (const [key] of state.sections) $("#report-" + key).readOnly = signed;
  const sign = $("#sign");
  sign.textContent = signed ? "Signed" : state.amending ? "Sign the amendment and send to PACS" : "Sign and send to PACS";
  sign.disabled = signed || !!why;
  sign.title = why || "";
  $("#amend").classList.toggle("hidden", !signed);
  $("#amend").disabled = !!why;
  $("#report").dataset.state = signed ? (r.amends ? "amended" : "signed") : state.amending ? "amending" : "draft";
  const who = r ? `by ${fullName(r.signed_by)}${r.organisation ? ` (${r.organisation})` : ""} at ${localTime(r.time)}` : "";
  $("#report-state").replaceChildren(
    why ? el("div", {class: "error", id: "cannot-sign"}, "You cannot sign reports: " + why + ".") : "",
    r ? el("div", {class: signed ? "ok" : "dim", id: "signed-by"},
      el("span", {class: "tag " + (r.amends ? "amended" : "final")}, r.amends ? "amended" : "signed"), " ",
      `${r.amends ? "Amended" : "Signed"} ${who}` + (r.amends ? ` — replaces report …${r.amends.slice(-12)}` : " — final") +
      (state.amending ? ". You are writing an amendment: it will replace this report." : "")) : "");
}
let protocolSeen = "";
async function prefillProtocol(s) {  // the protocol section follows the series until the radiologist edits it
  const t = $("#report-protocol");
  const key = s.series.filter(x => !x.derived).map(x => x.uid + x.arrived).join() + s.series.length;
  if (!t || t.dataset.edited || t.readOnly || key === protocolSeen) return;
  protocolSeen = key;
  const p = await api(`/api/studies/${state.study}/protocol`);
  if (!t.dataset.edited && p.text !== t.value) t.value = p.text;  // shown, not saved: nothing was typed yet
}
function sectionsNow() { const out = {}; for (const [key] of state.sections) out[key] = $("#report-" + key).value; return out; }
function draftChanged() {
  $("#draft-status").textContent = "editing…";
  clearTimeout(state.draftTimer);
  state.draftTimer = setTimeout(saveDraft, 400);
}
async function saveDraft() {
  const amends = state.amending && state.report ? "?amends=" + state.report.sop : "";
  const d = await api(`/api/studies/${state.study}/draft${amends}`, {method: "PUT", json: withAi(sectionsNow())});
  $("#draft-status").textContent = `draft saved ${localTime(d.saved)}`;
  $("#draft-status").dataset.saved = d.saved;
}
const refreshMeasurements = later(async () => {  // this study's only: another study's values are never offered
  const study = state.study;
  if (!study) return;
  const m = await api(`/api/studies/${study}/measurements`);
  if (state.study !== study) return;  // the page moved to another study meanwhile
  $("#measurements").classList.toggle("dim", !m.measurements.length);
  if (!m.measurements.length) { $("#measurements").textContent = "none yet"; return; }
  $("#measurements").replaceChildren(...m.measurements.map(x => {
    const value = measureText(x);
    return el("div", {class: "measure"}, el("button", {class: "small insert-measurement", onclick: () => insertFinding(
      `${value} (${x.series_description}; ${x.method || ""} by ${x.node}, from ${x.source_series})`)}, "Insert"), " ", value,
      el("div", {class: "dim"}, `${x.series_description} · ${x.node} · ${x.method || ""} · from ${x.source_series}`));
  }));
}, 500);
function measureText(x) {  // rounded as a reader quotes it (33.2 ml/100g/min, 3.40 ml/100g); a ratio (UCUM "1") has no unit
  const v = Number(x.value), unit = x.unit && x.unit !== "1" ? ` ${x.unit}` : "";
  const shown = x.value === null || x.value === "" || !Number.isFinite(v) ? x.value : v.toFixed(Math.abs(v) >= 10 ? 1 : 2);
  return `${x.label}: ${shown}${unit}`;
}
function insertFinding(text) {
  const t = $("#report-findings");
  if (t.readOnly) return;
  t.value = (t.value && !t.value.endsWith("\n") ? t.value + "\n" : t.value) + text;
  draftChanged();
}
function renderPriors(s) {  // an amended prior says so; the report it replaced is shown as superseded
  const box = $("#priors");
  if (!s.priors.length) { box.textContent = s.priors_state === "done" ? "no prior reports" : "no index node answered"; return; }
  box.classList.remove("dim");
  const replaced = new Set(s.priors.flatMap(p => p.amends || []));
  box.replaceChildren(...s.priors.map(p => {
    const status = replaced.has(p.sop) ? "superseded" : (p.amends || []).length ? "amended" : "final";
    return el("div", {class: "prior " + status, dataset: {sop: p.sop, status}},
      el("b", {}, `${dicomDate(p.date)} ${p.description}`), " ",
      status === "final" ? "" : el("span", {class: "tag " + status}, status === "superseded" ? "superseded by an amendment" : "amended"),
      el("span", {class: "dim"}, ` (${p.node})`), el("pre", {}, p.text));
  }));
}
function renderReports(reports) {  // this study's signed reports, with their upload state and amendments
  $("#sign-status").replaceChildren(...reports.map(r => {
    const status = r.superseded_by ? "superseded" : r.amends ? "amended" : "final";
    return el("div", {class: "signed-report " + (r.state === "error" ? "error" : r.state === "stored" ? "ok" : "dim"),
      dataset: {state: r.state, sop: r.sop, status}},
      el("span", {class: "tag " + status}, status === "superseded" ? `superseded by …${r.superseded_by.slice(-12)}` : status), " ",
      `Report …${r.sop.slice(-12)} signed by ${fullName(r.signed_by) || r.user || "?"} at ${localTime(r.time)}: ${r.state} — ${r.detail}`);
  }));
  const head = reports.find(r => !r.superseded_by);  // signed or amended elsewhere (another tab, a colleague)
  if (head && !state.signing && (!state.report || state.report.sop !== head.sop)) loadDraft();
}
$("#sign").addEventListener("click", async () => {
  const button = $("#sign");
  if (button.disabled || state.signing) return;
  button.disabled = true; state.signing = true;  // a second click sends nothing (and the server signs once)
  clearTimeout(state.draftTimer);
  $("#sign-error").textContent = "";
  const amending = state.amending && state.report;
  try {
    state.report = await api(`/api/studies/${state.study}/${amending ? "amend" : "sign"}`, {method: "POST",
      json: withAi(amending ? {...sectionsNow(), predecessor: state.report.sop} : sectionsNow())});
    state.amending = false;
    $("#draft-status").textContent = "";
  } catch (err) {
    $("#sign-error").textContent = "not signed: " + err.message;
    if (err.data && err.data.report) { state.signing = false; await loadDraft(); }  // signed already: show that one
  }
  state.signing = false;
  showReportState(); refreshStudy(); renderAi();
});
$("#amend").addEventListener("click", () => {
  state.amending = true;
  $("#sign-error").textContent = "";
  $("#draft-status").textContent = "amending: edits are saved as a draft";
  showReportState();
  renderAi();  // an amendment may take the AI findings in too
  $("#report-impression").focus();
});
// --- AI findings: proposed from an analysis node's measurement SR, inserted only when the radiologist accepts --------
const sectionsWithAi = () => state.aiAccepted ? {ai_sr: state.aiAccepted} : {};
function withAi(body) { return {...body, ...sectionsWithAi()}; }
const aiNumber = (v, digits = 1) => v === null || v === undefined ? "undefined" : Number(v).toFixed(digits);
function renderAi() {
  const box = $("#ai-findings"), all = (state.studyData && state.studyData.ai) || [];
  if (!all.length) { box.classList.add("dim"); box.textContent = "no AI result for this study (yet)"; return; }
  box.classList.remove("dim");
  const ready = all.filter(r => r.state === "ready");
  const others = all.filter(r => r.state !== "ready").map(r => el("div", {class: r.state === "error" ? "error" : "dim",
    dataset: {state: r.state}}, r.state === "error" ? r.error : `reading the AI result from ${r.node}…`));
  const stale = state.aiAccepted && ready.length && ready[0].provenance.sop_instance_uid !== state.aiAccepted;
  box.replaceChildren(...ready.slice(0, 1).map(aiResult), ...(ready.length ? [] : others),
    stale ? el("div", {class: "error", id: "ai-superseded"}, "The AI result accepted into this report has been " +
      "superseded by the one above (e.g. the core by the ADC series that came later): check the inserted text.") : "",
    ready.length > 1 ? el("div", {class: "dim"}, `${ready.length - 1} older AI result(s) of this study not shown`) : "");
}
function aiResult(r) {
  const v = r.values, p = r.provenance, d3 = v.defuse3 || {}, sop = p.sop_instance_uid;
  const accepted = state.aiAccepted === sop, locked = $("#report-findings") && $("#report-findings").readOnly;
  const row = (label, value, unit = "") => el("tr", {}, el("td", {}, label), el("td", {class: "num"}, value), el("td", {}, unit));
  const crit = (label, met) => el("tr", {}, el("td", {}, label), el("td", {class: met ? "met" : "error"}, met ? "met" : "not met"), el("td"));
  const seg = state.studyData.series.find(s => s.uid === p.seg_series_uid) ||  // the SEG this SR measures
    state.studyData.series.find(s => s.stroke === "seg" && s.derived_from === p.source_series_uid);
  return el("div", {class: "ai-result", id: "ai-result", dataset: {sop, accepted: accepted ? "true" : "false"}},
    el("b", {}, "Stroke perfusion analysis"), " ", el("span", {class: "tag"}, "automated — to be confirmed"),
    el("table", {class: "ai-volumes"},
      row(`Ischaemic core (${v.core_method === "adc" ? "ADC" : "rCBF < 30 %"})`, aiNumber(v.core_ml), "ml"),
      row("Hypoperfusion Tmax > 6 s", aiNumber(v.tmax6_ml), "ml"), row("Severe hypoperfusion Tmax > 10 s", aiNumber(v.tmax10_ml), "ml"),
      row("Hypoperfusion intensity ratio", aiNumber(v.hir, 2)), row("Mismatch volume", aiNumber(v.mismatch_ml), "ml"),
      row("Mismatch ratio", aiNumber(v.mismatch_ratio)), row("Side", v.side || "-"),
      crit("DEFUSE-3: core < 70 ml", d3.core_lt_70ml), crit("DEFUSE-3: mismatch ratio ≥ 1.8", d3.mismatch_ratio_ge_1_8),
      crit("DEFUSE-3: mismatch ≥ 15 ml", d3.mismatch_ge_15ml), crit("DEFUSE-3 imaging criteria", d3.all_met)),
    el("div", {class: "dim"}, "Proposed findings:"), el("div", {class: "proposed", id: "ai-proposed-findings"}, r.findings),
    el("div", {class: "dim"}, "Proposed impression:"), el("div", {class: "proposed", id: "ai-proposed-impression"}, r.impression),
    el("div", {class: "dim provenance", id: "ai-provenance"},
      `${p.algorithm} ${p.algorithm_version} by ${p.node || "?"} · SR ${p.series_description || ""} · series ${p.series_uid} · ` +
      `SOP instance ${sop} · ${p.time ? localTime(p.time) : "time unknown"}`),
    el("div", {class: "row"},
      Object.assign(el("button", {class: "small", id: "ai-accept", onclick: () => acceptAi(r)},
        accepted ? "Accepted" : "Accept into the report"), {disabled: accepted || locked}),
      seg ? el("button", {class: "small", id: "ai-show", onclick: () => showAiOnImages(p.source_series_uid, seg.uid)},
        "Show on the images") : "",
      accepted ? el("span", {class: "ok"}, " in the report: edit it as needed; the signed report references this SR") : ""));
}
function acceptAi(r) {  // appended to what is there: the radiologist's own words are never replaced
  for (const [key, text] of [["findings", r.findings], ["impression", r.impression]]) {
    const t = $("#report-" + key);
    if (t.readOnly) return;
    t.value = (t.value && !t.value.endsWith("\n") ? t.value + "\n" : t.value) + text;
    t.dataset.edited = "1";
  }
  state.aiAccepted = r.provenance.sop_instance_uid;
  draftChanged(); renderAi();
}
async function showAiOnImages(source, seg) {  // the DSC series with the segmentation over it
  const pane = activePane();
  if (pane.uid !== source) await openSeries(source, pane);
  await setOverlay(pane, seg);
  $("#viewer").scrollIntoView({block: "nearest"});
}
