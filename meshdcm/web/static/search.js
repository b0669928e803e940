// meshdcm web UI: the search page (worklist). The last search is kept in this tab (sessionStorage) and run again
// when the page is reloaded.
"use strict";
// --- search ---------------------------------------------------------------------------------------------------
const SEARCH_FIELDS = {patient: "#search-patient", patient_id: "#search-patient-id", date_from: "#search-from",
                       date_to: "#search-to", modality: "#search-modality", accession: "#search-accession"};
$("#search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const query = {};
  for (const [key, sel] of Object.entries(SEARCH_FIELDS)) query[key] = $(sel).value;
  runSearch(query);
});
async function runSearch(query) {
  state.rows = [];
  renderResults();
  $("#search-status").classList.remove("error");
  $("#search-status").textContent = "searching…";
  try {
    const res = await api("/api/search", {method: "POST", json: query});
    sessionStorage.setItem("meshdcm.search", JSON.stringify(query));
    state.search = res.id;
    refreshSearch();
  } catch (err) {
    $("#search-status").classList.add("error");
    $("#search-status").textContent = "search not sent: " + err.message;
  }
}
function showSearch() {  // the search page shown: after a reload, the last search of this tab runs again
  if (state.search) return;
  let query = null;
  try { query = JSON.parse(sessionStorage.getItem("meshdcm.search") || "null"); } catch (err) { query = null; }
  if (!query || typeof query !== "object") return;
  for (const [key, sel] of Object.entries(SEARCH_FIELDS)) $(sel).value = query[key] || "";
  runSearch(query);
}
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
    el("td", {}, personName(r.PatientName)), el("td", {}, r.PatientID || ""),
    el("td", {class: "when"}, `${dicomDate(r.StudyDate)} ${dicomTime(r.StudyTime)}`.trim()),
    el("td", {class: "modalities"}, modalities(r.ModalitiesInStudy)), el("td", {}, r.StudyDescription || ""), el("td", {}, r.AccessionNumber || ""),
    el("td", {}, r.NumberOfStudyRelatedInstances || ""), el("td", {class: "dim"}, (r.sources || []).join(", ")),
    el("td", {}, el("button", {class: "small open-study", onclick: () => openStudy(r.StudyInstanceUID)}, "Open")))));
}
async function openStudy(uid, again = false) {  // showStudy opens a study it was not showing (openFromLink)
  if (again || state.study === uid) await api(`/api/studies/${uid}/open${again ? "?again=1" : ""}`, {method: "POST"});
  if (location.hash !== "#/study/" + uid) location.hash = "#/study/" + uid; else showStudy(uid);
}
async function openFromLink(uid) {  // a study reached by a link (or by going back to it): opened as Open does, so a
  // study never opened is fetched and one opened before asks again for its prior reports (one signed since shows)
  await api(`/api/studies/${uid}/open`, {method: "POST"});
}
