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
  if (r.status === 401) { location.href = "/login" + location.hash; throw new Error("not logged in"); }
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(data.error || `${r.status} ${r.statusText}`), {status: r.status, data});
  return data;
}
const later = (fn, ms = 200) => { let t = null; return () => { if (!t) t = setTimeout(() => { t = null; fn(); }, ms); }; };
const personName = (v) => (v || "").split("=")[0].replace(/\^+/g, " ").trim();
// what a reader reads: DICOM dates 2024-01-03, times 14:05, modalities "MR, SR", ISO times in local time
const dicomDate = (v) => /^\d{8}$/.test(v || "") ? `${v.slice(0, 4)}-${v.slice(4, 6)}-${v.slice(6)}` : (v || "");
const dicomTime = (v) => /^\d{4}/.test(v || "") ? `${v.slice(0, 2)}:${v.slice(2, 4)}` : "";
const modalities = (v) => (v || "").split("\\").filter(Boolean).join(", ");
const fullName = (pn) => {  // Doe^Jane^^Dr -> "Dr Jane Doe"
  const [family = "", given = "", middle = "", prefix = "", suffix = ""] = (pn || "").split("=")[0].split("^");
  return [prefix, given, middle, family, suffix].filter(Boolean).join(" ");
};
const localTime = (iso) => {
  const t = new Date(iso || "");
  if (isNaN(t)) return iso || "";
  const two = (n) => String(n).padStart(2, "0");
  return `${t.getFullYear()}-${two(t.getMonth() + 1)}-${two(t.getDate())} ${two(t.getHours())}:${two(t.getMinutes())}`;
};

// --- routing ----------------------------------------------------------------------------------------------
const state = {search: null, rows: [], sort: "StudyDate", descending: true, study: null, studyData: null, series: null,
               sections: [], draftTimer: null, timeline: false};
function route() {
  const [, page, arg] = location.hash.split("/");
  for (const p of ["search", "study", "monitor"]) $("#page-" + p).classList.toggle("hidden", (page || "search") !== p);
  $("#nav-search").classList.toggle("active", !page || page === "search" || page === "study");
  $("#nav-monitor").classList.toggle("active", page === "monitor");
  if ((page || "search") === "search") showSearch();
  if (page === "study" && arg) showStudy(arg);
  if (page === "monitor") refreshMonitor();
}
window.addEventListener("hashchange", route);
