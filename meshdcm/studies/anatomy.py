"""The patient's head, from the template: tissue fractions on a padded MNI grid, and views of it from a scanner.

Tissue classes (each a fraction 0-1 of a voxel, stored as 0-255):

* ``gm``, ``wm``: the template's probability maps;
* ``csf``: what the intracranial volume (the template T1's non-zero voxels) holds besides grey and white matter
  (ventricles, cisterns, sulci), plus a 1.5 mm layer of meninges and subarachnoid space around it;
* ``bone``: the skull, a shell 1.5 to 7 mm (+-1.5 mm, varying smoothly) outside the intracranial volume;
* ``soft``: scalp and, below the skull base, the neck; ``fat``: the subcutaneous fat layer inside the scalp;
* ``t1``: the template's T1-weighted intensity (0 outside the intracranial volume).

The template is brain-extracted: the skull and scalp are built around it, not imaged, so there is no face, orbit or
sinus. The template is an average brain, larger than most (1.68 l of grey and white matter): a patient is the
template scaled by ``scale`` (0.92 makes a 1.3 l brain) and placed in each scanner by a :class:`Pose`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .geometry import Grid, Pose, resample
from .template import Template

__all__ = ["CLASSES", "Anatomy", "HeadView", "build_anatomy", "smooth_noise"]

CLASSES = ("gm", "wm", "csf", "bone", "soft", "fat")
#: MNI RAS mm of the centre of the intracranial volume: the origin of head coordinates.
MNI_CENTRE = np.array([0.0, -22.0, 9.0])
_PAD_MM = {"x": (16, 16), "y": (16, 16), "z": (50, 16)}  # room for skull and scalp; the neck below


@dataclass
class Anatomy:
    """Tissue fields (uint8, 0-255 for 0-1; array order x, y, z) on a grid of ``spacing`` mm whose index -> MNI RAS
    mm affine is ``affine``."""

    fields: dict[str, np.ndarray]
    affine: np.ndarray
    spacing: float

    def fraction(self, name: str) -> np.ndarray:
        return self.fields[name].astype(np.float32) / 255.0

    def mni_points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """MNI RAS mm coordinates (x, y, z) of every voxel, as three broadcastable axes."""
        shape = self.fields["gm"].shape
        axes = [self.affine[d, d] * np.arange(shape[d], dtype=np.float32) + self.affine[d, 3] for d in range(3)]
        return axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]

    def volumes_ml(self, scale: float) -> dict[str, float]:
        """Tissue volumes of a head of ``scale`` (ml)."""
        voxel = (self.spacing * scale) ** 3 / 1000.0
        out = {name: float(self.fields[name].sum(dtype=np.float64) / 255.0 * voxel) for name in ("gm", "wm", "csf")}
        out["brain"] = out["gm"] + out["wm"]
        return out

    def view(self, scale: float, pose: Pose) -> HeadView:
        return HeadView(self, scale, pose)


@dataclass(frozen=True)
class HeadView:
    """A head of ``scale`` lying in a scanner as ``pose`` says: samples the anatomy's fields on the scanner's grids."""

    anatomy: Anatomy
    scale: float
    pose: Pose

    @property
    def head_to_mni(self) -> np.ndarray:
        """4x4: head LPS mm -> MNI RAS mm (head coordinates: the template scaled about its centre, in LPS)."""
        m = np.diag([-1.0 / self.scale, -1.0 / self.scale, 1.0 / self.scale, 1.0])
        m[:3, 3] = MNI_CENTRE
        return m

    @property
    def scanner_to_mni(self) -> np.ndarray:
        return self.head_to_mni @ np.linalg.inv(self.pose.matrix)

    @property
    def scanner_to_field(self) -> np.ndarray:
        return np.linalg.inv(self.anatomy.affine) @ self.scanner_to_mni

    def sample(self, what: str | np.ndarray, grid: Grid, *, average: bool = True, fill: float = 0.0) -> np.ndarray:
        """A field of the anatomy (by name) or any array on its grid, sampled on ``grid`` (float32; ``fill``
        beyond the anatomy's grid); uint8 fields hold fractions 0-255 and come back as 0-1."""
        data = self.anatomy.fields[what] if isinstance(what, str) else what
        out = resample(data, self.scanner_to_field, grid, average=average, fill=fill)
        if data.dtype == np.uint8:
            out *= np.float32(1.0 / 255.0)
        return out


def smooth_noise(shape, rng: np.random.Generator, *, cells: int = 8, terms: int = 6) -> np.ndarray:
    """A smooth random field in [-1, 1], float32: a sum of ``terms`` products of smooth random curves along each
    axis (``cells`` bumps along the longest), cheap on a large grid."""
    out = np.zeros(shape, dtype=np.float32)
    for _ in range(terms):
        term = np.ones([1] * len(shape), dtype=np.float32)
        for axis, n in enumerate(shape):
            k = max(3, round(cells * n / max(shape)))
            curve = ndimage.zoom(rng.uniform(-1.0, 1.0, k), n / k, order=3, mode="nearest", grid_mode=True)[:n]
            term = term * curve.astype(np.float32).reshape([-1 if d == axis else 1 for d in range(len(shape))])
        out += term
    out /= max(2.5 * float(out.std()), 1e-6)
    return np.clip(out, -1.0, 1.0, out=out)


def _ramp(distance: np.ndarray, at: np.ndarray | float) -> np.ndarray:
    """0 well inside ``at`` mm, 1 well outside, linear over the 1 mm in between (partial volume of a surface)."""
    return np.clip(distance - at + 0.5, 0.0, 1.0)


def _downsample(volume: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return volume
    shape = [n // factor * factor for n in volume.shape]
    v = volume[: shape[0], : shape[1], : shape[2]].astype(np.float32)
    v = v.reshape(shape[0] // factor, factor, shape[1] // factor, factor, shape[2] // factor, factor)
    return np.rint(v.mean(axis=(1, 3, 5))).astype(np.uint8)


def build_anatomy(template: Template, *, downsample: int = 1, seed: int = 0) -> Anatomy:
    """The tissue fields of the template (``downsample`` 2: on a 2 mm grid, for the small variant). About 6 s at
    1 mm, under 1 s at 2 mm."""
    spacing = float(template.affine[0, 0]) * downsample
    pads = [tuple(round(p / spacing) for p in _PAD_MM[a]) for a in "xyz"]
    t1, gm, wm = (np.pad(_downsample(v, downsample), pads) for v in (template.t1, template.gm, template.wm))
    affine = template.affine.copy()
    affine[:3, :3] *= downsample
    affine[:3, 3] += (downsample - 1) / 2 * np.diag(template.affine)[:3]  # the centre of each block
    affine[:3, 3] -= np.array([p[0] for p in pads]) * spacing
    rng = np.random.default_rng(seed)

    inside = (t1 > 0) | (gm.astype(np.uint16) + wm > 25)
    icv = ndimage.gaussian_filter(inside.astype(np.float32), 0.5 / spacing)
    g, w = gm.astype(np.float32) / 255.0, wm.astype(np.float32) / 255.0
    csf = np.clip(icv - g - w, 0.0, 1.0)
    del icv
    outside = ndimage.distance_transform_edt(~inside, sampling=spacing).astype(np.float32)
    vary = 1.5 * smooth_noise(outside.shape, rng)
    csf += _ramp(outside, 0.5) - _ramp(outside, 1.5)  # meninges and subarachnoid space
    bone = _ramp(outside, 1.5) - _ramp(outside, 7.0 + vary)
    soft = _ramp(outside, 7.0 + vary) - _ramp(outside, 12.5 + vary)
    fat = _ramp(outside, 8.5 + vary) - _ramp(outside, 10.5 + vary)
    del outside, vary
    soft -= fat
    # the neck: below the template's lowest slices, an elliptic column of soft tissue under the skull base
    x, y, z = (a.astype(np.float32) for a in _mni_axes(gm.shape, affine))
    bottom = float(template.affine[2, 3]) + 4.0
    neck = (((x / 42.0) ** 2 + ((y + 32.0) / 46.0) ** 2) <= 1.0) & (z < bottom)
    soft = np.where(neck, np.maximum(soft, 1.0 - bone - csf - g - w), soft)
    fields = {"gm": gm, "wm": wm}
    for name, value in (("csf", csf), ("bone", bone), ("soft", soft), ("fat", fat)):
        fields[name] = np.rint(np.clip(value, 0.0, 1.0) * 255.0).astype(np.uint8)
    fields["t1"] = t1
    return Anatomy(fields, affine, spacing)


def _mni_axes(shape, affine):
    return tuple(
        (affine[d, d] * np.arange(shape[d], dtype=np.float32) + affine[d, 3]).reshape([-1 if e == d else 1
                                                                                      for e in range(3)])
        for d in range(3))
