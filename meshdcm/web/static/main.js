// meshdcm web UI: start. Loaded last: the other scripts only define; this one wires events and routes.
"use strict";
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
api("/api/me").then(me => {
  $("#user").textContent = me.full_name ? `${fullName(me.full_name)} (${me.user})` : me.user;
  $("#user").title = me.organisation || (me.cannot_sign ? "cannot sign reports" : "");
  state.sections = me.sections;
});
route();
