// meshdcm web UI: the search page (worklist).
"use strict";
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
