"""The vessels the perfusion analysis looks for: both middle cerebral arteries and the superior sagittal sinus.

Each vessel is a tube: a centre line (MNI RAS mm) and a radius. The fraction of each anatomy voxel the tube fills
(sampled at a few points per axis) is a field like the tissue classes, and each series averages it over its voxels:
a 2 mm artery fills a third to a half of a 1.7 x 1.7 x 5 mm DSC voxel at best (partial volume); the 8 mm sinus fills
whole voxels.

* middle cerebral arteries: from the carotid terminus along the M1 segment in the Sylvian fissure to the insula
  (M2), 2.2 mm across in the template (2 mm in a patient of scale 0.92);
* superior sagittal sinus: along the inner surface of the skull in the midline, from the frontal convexity over the
  vertex to the torcular, 8.5 mm across, following the template's intracranial surface.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .anatomy import Anatomy

__all__ = ["Vessel", "middle_cerebral_artery", "sagittal_sinus", "vessel_field"]


@dataclass(frozen=True)
class Vessel:
    """A tube: ``points`` (N, 3) of its centre line in MNI RAS mm, ``radius`` in template mm."""

    name: str
    points: np.ndarray
    radius: float


_M1_RIGHT = np.array([[13.0, 3.0, -16.0], [22.0, 5.0, -14.0], [30.0, 6.0, -11.0], [37.0, 4.0, -6.0],
                      [40.0, 0.0, 2.0], [41.0, -6.0, 10.0]])


def middle_cerebral_artery(side: str) -> Vessel:
    """The M1 and first M2 segment of the ``"left"`` or ``"right"`` middle cerebral artery."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', not {side!r}")
    points = _M1_RIGHT * np.array([-1.0 if side == "left" else 1.0, 1.0, 1.0])
    return Vessel(f"mca_{side}", points, 1.1)


def sagittal_sinus(anatomy: Anatomy) -> Vessel:
    """The superior sagittal sinus, 3.5 mm inside the intracranial surface in the midline (rays every 2.5 degrees
    from a point above the thalamus, from the frontal convexity to the torcular)."""
    inside = anatomy.fields["t1"] > 0
    inv = np.linalg.inv(anatomy.affine)
    centre = np.array([0.0, -20.0, 10.0])
    radii = []
    angles = np.radians(np.arange(30.0, 197.5, 2.5))  # from anterior (0) over the top (90) to behind and below
    steps = np.arange(20.0, 120.0, 0.5)
    for a in angles:
        ray = centre + np.outer(steps, [0.0, np.cos(a), np.sin(a)])
        index = np.rint(ray @ inv[:3, :3].T + inv[:3, 3]).astype(int)
        ok = np.all((index >= 0) & (index < inside.shape), axis=1)
        hit = np.zeros(len(steps), bool)
        hit[ok] = inside[tuple(index[ok].T)]
        radii.append(steps[np.flatnonzero(hit)[-1]] if hit.any() else np.nan)
    r = np.asarray(radii)
    r = np.convolve(np.pad(r, 2, mode="edge"), np.ones(5) / 5, mode="valid") - 3.5  # smooth the bumps away
    points = centre + np.column_stack([np.zeros_like(r), r * np.cos(angles), r * np.sin(angles)])
    return Vessel("sagittal_sinus", points, 4.25)


def _distance_to_line(points: np.ndarray, line: np.ndarray, step: float = 0.2) -> np.ndarray:
    """Distance of each of ``points`` (N, 3) to the polyline ``line`` (M, 3): to the nearest of its points every
    ``step`` mm (off by under 0.01 mm at a tube's wall)."""
    dense = [line[:1]]
    for a, b in zip(line[:-1], line[1:], strict=True):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / step)))
        dense.append(a + np.outer(np.arange(1, n + 1) / n, b - a))
    distance, _ = cKDTree(np.concatenate(dense)).query(points)
    return distance


def vessel_field(vessel: Vessel, anatomy: Anatomy, *, samples: int = 3) -> np.ndarray:
    """The fraction of each voxel of the anatomy's grid the vessel fills (uint8 0-255, like the tissue classes),
    from ``samples`` points per axis in each voxel near the tube; series sample it like any tissue field."""
    out = np.zeros(anatomy.fields["gm"].shape, dtype=np.uint8)
    affine, inv = anatomy.affine, np.linalg.inv(anatomy.affine)
    reach = vessel.radius + anatomy.spacing
    lo = np.floor((vessel.points.min(0) - reach) @ inv[:3, :3].T + inv[:3, 3]).astype(int)
    hi = np.ceil((vessel.points.max(0) + reach) @ inv[:3, :3].T + inv[:3, 3]).astype(int) + 1
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)  # an axis may run backwards
    lo, hi = np.clip(lo, 0, out.shape), np.clip(hi, 0, out.shape)
    voxels = np.stack(np.meshgrid(*(np.arange(lo[d], hi[d]) for d in range(3)), indexing="ij"), -1).reshape(-1, 3)
    centres = voxels @ affine[:3, :3].T + affine[:3, 3]
    near = _distance_to_line(centres, vessel.points) <= vessel.radius + anatomy.spacing * 0.87
    voxels, centres = voxels[near], centres[near]
    offsets = ((np.arange(samples) + 0.5) / samples - 0.5) * anatomy.spacing
    sub = np.array([[a, b, c] for a in offsets for b in offsets for c in offsets])
    points = (centres[:, None, :] + sub[None]).reshape(-1, 3)
    inside = (_distance_to_line(points, vessel.points) <= vessel.radius).reshape(len(voxels), -1)
    out[tuple(voxels.T)] = np.rint(inside.mean(axis=1) * 255).astype(np.uint8)
    return out
