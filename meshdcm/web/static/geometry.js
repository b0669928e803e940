// meshdcm web UI: where a slice lies in the patient (DICOM Image Plane module: LPS, mm), for the viewer's labels,
// scale, linked panes and overlays. `info` is a series as /api/series/{uid}/info describes it.
"use strict";
const dot3 = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const rowDir = (info) => info.orientation.slice(0, 3);  // along a row: left to right on the screen
const colDir = (info) => info.orientation.slice(3, 6);  // down a column: top to bottom
const normalOf = (info) => { if (!info.orientation) return null; const r = rowDir(info), c = colDir(info);
  return [r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]]; };
// Positions of two series compare only in one frame of reference (a series that names none is taken as in it).
const sameFrame = (a, b) => !a.frame || !b.frame || a.frame === b.frame;
const hasGeometry = (info) => !!(info && info.orientation && info.origins && info.origins.every(o => o));

// The patient directions a vector points to, strongest first: +x left, +y posterior, +z head (LPS).
function directionLetters(v) {
  const names = [["L", "R"], ["P", "A"], ["H", "F"]];
  return [0, 1, 2].filter(i => Math.abs(v[i]) > 0.1).sort((a, b) => Math.abs(v[b]) - Math.abs(v[a]))
    .map(i => names[i][v[i] > 0 ? 0 : 1]).join("");
}
// The letters at the four edges of a slice: what lies that way in the patient.
function orientationLabels(info) {
  if (!info.orientation) return null;
  const r = rowDir(info), c = colDir(info), neg = (v) => v.map(x => -x);
  return {left: directionLetters(neg(r)), right: directionLetters(r), top: directionLetters(neg(c)), bottom: directionLetters(c)};
}
// Pixel (col, row) of slice z, as a point in the patient.
function pointOf(info, z, col, row) {
  const o = info.origins[z], r = rowDir(info), c = colDir(info), [dr, dc] = info.spacing;
  return [0, 1, 2].map(k => o[k] + r[k] * dc * col + c[k] * dr * row);
}
// (col, row) of a patient point in the plane of slice z (fractional; not checked against the matrix).
function pixelOf(info, z, p) {
  const o = info.origins[z], d = [p[0] - o[0], p[1] - o[1], p[2] - o[2]], [dr, dc] = info.spacing;
  return [dot3(d, rowDir(info)) / dc, dot3(d, colDir(info)) / dr];
}
const sliceCentre = (info, z) => hasGeometry(info) ? pointOf(info, z, (info.cols - 1) / 2, (info.rows - 1) / 2) : null;
// The slice of `info` nearest to point p by its position along the normal (not by index), and how far it is (mm).
function nearestSlice(info, p) {
  const n = normalOf(info); if (!n || !p || info.positions.some(x => x === null)) return null;
  const along = dot3(n, p); let best = 0;
  info.positions.forEach((pos, z) => { if (Math.abs(pos - along) < Math.abs(info.positions[best] - along)) best = z; });
  return {z: best, distance: Math.abs(info.positions[best] - along)};
}
// Half the distance between slices (mm): how far a point may be from a slice and still be in it.
const halfGap = (info) => info.positions.length > 1 ?
  Math.abs(info.positions[info.positions.length - 1] - info.positions[0]) / (info.positions.length - 1) / 2 :
  Math.max(...info.spacing);
// Canvas coordinates of slice zo of `over` in those of slice zb of `base` (a 2D affine map as setTransform takes it,
// pixel edges to pixel edges), or null when the two planes are not parallel.
function overlayTransform(base, zb, over, zo) {
  if (Math.abs(dot3(normalOf(base), normalOf(over))) < 0.99) return null;
  const ob = base.origins[zb], oo = over.origins[zo], d = [0, 1, 2].map(k => oo[k] - ob[k]);
  const rb = rowDir(base), cb = colDir(base), ro = rowDir(over), co = colDir(over);
  const [drb, dcb] = base.spacing, [dro, dco] = over.spacing;
  const a = dot3(ro, rb) * dco / dcb, b = dot3(ro, cb) * dco / drb, c = dot3(co, rb) * dro / dcb, e = dot3(co, cb) * dro / drb;
  const tx = dot3(d, rb) / dcb, ty = dot3(d, cb) / drb;  // pixel centres; then shifted to pixel edges
  return [a, b, c, e, tx + 0.5 - 0.5 * (a + c), ty + 0.5 - 0.5 * (b + e)];
}
