// meshdcm web UI: the study page (series, errors, timeline).
"use strict";
// --- study page ---------------------------------------------------------------------------------------------
async function showStudy(uid) {
  if (state.study !== uid) {
    state.study = uid; state.series = null; state.studyData = null;
    $("#series").replaceChildren(); $("#sign-status").replaceChildren(); clearViewer();
    $("#measurements").replaceChildren("none yet"); $("#measurements").classList.add("dim");  // the last study's
    await openFromLink(uid);
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
  $("#study-title").textContent = `${personName(i.PatientName) || "?"} (${i.PatientID || "?"}) — ${i.StudyDescription || "study"} ${dicomDate(i.StudyDate)} ${dicomTime(i.StudyTime)}`.trim();
  $("#study-sub").textContent = `Accession ${i.AccessionNumber || "-"} · ${modalities(i.ModalitiesInStudy)} · ${s.uid}`;
  const pct = s.total ? Math.round(100 * s.done / s.total) : (s.state === "complete" ? 100 : 0);
  $("#study-progress > div").style.width = pct + "%";
  $("#study-progress").classList.toggle("done", s.state === "complete");
  $("#study-state").textContent = `${s.state}${s.total ? ` · ${s.done}/${s.total} images` : ""}`;
  renderSeries(s.series, s.renditions || []);
  renderNotes(s.notes || []);
  viewerStudyChanged();
  prefillProtocol(s);
  renderErrors($("#study-errors"), s.errors);
  renderReports(s.reports);
  renderPriors(s);
  refreshMeasurements();
  renderAi();
}, 250);
function renderSeries(list, renditions) {
  const grid = $("#series");
  const superseded = new Set(((state.studyData && state.studyData.ai) || [])  // an SR a later one replaces (late ADC)
    .filter(r => r.superseded && r.provenance).map(r => r.provenance.series_uid));
  const cards = new Map([...grid.children].map(c => [c.dataset.series || c.dataset.rendition, c]));
  for (const s of list) {
    let card = cards.get(s.uid);
    if (!card) {
      card = el("div", {class: "series-card", dataset: {series: s.uid},
        onclick: () => card.dataset.kind === "document" ? showDocument(s.uid) : openSeries(s.uid)},
        el("div", {class: "noimg"}), el("div", {class: "desc"}), el("div", {class: "bar"}, el("div")), el("div", {class: "dim meta"}));
      grid.append(card);
    }
    card.dataset.derived = s.derived ? "true" : "false";
    card.dataset.complete = s.complete ? "true" : "false";
    card.dataset.kind = seriesKind(s);
    card.dataset.superseded = superseded.has(s.uid) ? "true" : "false";
    if (s.thumbnail && !card.querySelector("img")) {
      const img = el("img", {src: `/api/series/${s.uid}/thumbnail`, alt: s.description, loading: "lazy"});
      card.firstChild.replaceWith(img);
    }
    card.querySelector(".desc").replaceChildren(`${s.modality} #${s.number} ${s.description}`,
      superseded.has(s.uid) ? el("div", {}, el("span", {class: "tag superseded"}, "superseded by a later analysis")) : "",
      s.derived ? el("div", {}, el("span", {class: "badge"}, s.map ? `${s.map} map` : card.dataset.kind), " ", madeBy(s)) : "",
      s.provenance ? el("div", {class: "provenance"}, s.provenance) : "");
    const expected = s.expected || s.arrived || 1;
    const pct = s.complete ? 100 : Math.min(100, Math.round(100 * s.arrived / expected));
    card.querySelector(".bar > div").style.width = pct + "%";
    card.querySelector(".bar").classList.toggle("done", !!s.complete);
    card.querySelector(".meta").textContent = `${s.arrived}/${s.expected || "?"} images` + (s.complete ? " ✓" : "");
  }
  for (const r of renditions) {  // the series in another format (NIfTI): listed with its provenance, not viewed here
    const key = `${r.of}:${r.topic}`;
    const card = cards.get(key) || grid.appendChild(el("div", {class: "series-card rendition", dataset: {rendition: key, kind: "rendition", derived: "true"}}));
    card.replaceChildren(el("div", {class: "noimg"}, r.format), el("div", {class: "desc"},
      el("div", {}, el("span", {class: "badge"}, r.format), ` by ${r.node || "?"}`), el("div", {class: "provenance"}, r.provenance)),
      el("div", {class: "dim meta", title: r.files.join("\n")}, `${r.files.length} file${r.files.length === 1 ? "" : "s"}: ${r.files.join(", ")}`));
  }
  markCards();
}
// What a series is, for the card's badge: original, map, registration, reformat, a document (an SR), or another
// derived series.
function seriesKind(s) {
  if (s.modality === "SR") return "document";
  if (!s.derived) return "original";
  if (s.map) return "map";
  if (/^registered/.test(s.provenance || "")) return "registration";
  if (/reformat/.test(s.derivation || "")) return "reformat";
  return "derived";
}
// Who made a derived series: the analysis node that published it, or, without `derived_from`, the modality (the
// scanner's ADC: the pacs node only announced it).
function madeBy(s) { return s.derived_from ? `by ${s.node || "?"}` : "from PACS, derived at the modality"; }
function showDocument(uid) {  // an SR has no images to view: say where its text is instead of failing to load them
  const s = seriesRow(uid);
  $("#viewer-title").textContent = `${s.modality} #${s.number} ${s.description}: a report (SR), not images; its ` +
    "text is in the report panel (AI findings, prior reports)";
  $("#viewer-status").textContent = "";
}
function renderNotes(notes) {
  $("#study-notes").replaceChildren(...notes.map(n => el("li", {class: "note", dataset: {node: n.node}},
    `${n.node}: ${n.reason}`, el("div", {class: "dim"}, `series held back: ${n.series.join(", ")}`))));
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
