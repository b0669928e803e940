// meshdcm web UI: the mesh monitor.
"use strict";
// --- monitor ---------------------------------------------------------------------------------------------------------
// topic families named for a reader where the prefix alone misleads: dead.* is the dead-letter list/retry/drop
// traffic (the monitor's "Ask the nodes" and `meshdcm dead`), not dead nodes or lost messages
const TOPIC_FAMILIES = {dead: "dead-letter queries"};
const refreshMonitor = later(async () => {
  if (!location.hash.startsWith("#/monitor")) return;
  const m = await api("/api/mesh");
  $("#nodes tbody").replaceChildren(...m.nodes.map(n => el("tr", {dataset: {node: n.name, self: n.self ? "true" : "false"}},
    el("td", {}, n.name, n.self ? el("span", {class: "dim"}, " (this node)") : ""), el("td", {}, n.kind), el("td", {}, n.host), el("td", {}, n.group || "-"),
    el("td", {class: n.state === "alive" ? "ok" : "error"}, n.state), el("td", {}, n.lag.toFixed(1)),
    el("td", {class: "dim"}, n.topics.map(t => `${t.topic}${t.shared ? " [shared]" : ""}${t.where ? " where " + t.where : ""}`).join("; ")))));
  $("#rates").textContent = `${m.rates.total_per_s} messages/s over ${m.rates.window} s — ` +
    Object.entries(m.rates.topics).map(([k, v]) => `${TOPIC_FAMILIES[k] || k}: ${v}/s`).join(", ");
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
