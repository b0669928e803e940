"""What each voxel of a series holds: tissue fractions, split by lesion zone, mixed into what a modality measures.

``zone_fields`` splits a patient's grey and white matter by lesion zone (on the anatomy's grid). ``mix`` turns the
fractions into a quantity linear in them (a signal, an attenuation) on the anatomy's grid, so that a series samples
one field instead of one per class. ``masks`` is the ground truth's rule for masks. Series finer than the template (a
0.47 mm CT) are computed on a coarser ``work_grid`` and brought to their matrix by ``to_grid`` (bilinear), since the
template holds no detail below 1 mm.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .anatomy import Anatomy, HeadView
from .geometry import Grid
from .lesion import LABELS
from .physiology import TISSUES

__all__ = ["masks", "mix", "to_grid", "truth_masks", "work_grid", "zone_fields", "zone_total"]


def zone_fields(anatomy: Anatomy, labels: np.ndarray | None) -> dict[tuple[str, str], np.ndarray]:
    """(tissue, zone) -> that tissue's fraction in that zone (uint8 0-255, anatomy grid); zones without tissue are
    left out. Without ``labels`` everything is normal."""
    if labels is None:
        return {(t, "normal"): anatomy.fields[t] for t in TISSUES}
    out = {}
    for value, zone in LABELS.items():
        where = labels == value
        if not where.any():
            continue
        for t in TISSUES:
            out[(t, zone)] = np.where(where, anatomy.fields[t], np.uint8(0))
    return out


def mix(anatomy: Anatomy, zones: dict[tuple[str, str], np.ndarray], value: dict[str, float], *,
        rest: float = 0.0, zone_change: dict[tuple[str, str], float] | None = None,
        vessels: tuple[tuple[np.ndarray, float], ...] = ()) -> np.ndarray:
    """A quantity linear in the tissue fractions, on the anatomy's grid (float32): ``value`` per class, ``rest``
    for what no class fills (air), plus ``zone_change`` per (tissue, zone) fraction; each vessel's fraction holds
    its own value instead. Sampling it on a series' grid equals mixing the sampled fractions, at one resampling's
    cost instead of one per class."""
    out = np.full(anatomy.fields["gm"].shape, rest, dtype=np.float32)
    for name, v in value.items():
        out += anatomy.fields[name] * np.float32((v - rest) / 255.0)
    for key, change in (zone_change or {}).items():
        if key in zones:
            out += zones[key] * np.float32(change / 255.0)
    for field, v in vessels:
        filled = field * np.float32(1.0 / 255.0)
        out += filled * (np.float32(v) - out)
    return out


def zone_total(anatomy: Anatomy, zones, zone: str) -> np.ndarray:
    """Grey plus white matter of ``zone`` (0-1, anatomy grid)."""
    return mix(anatomy, zones, {}, zone_change={(t, zone): 1.0 for t in TISSUES})


def masks(gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, core: np.ndarray,
          penumbra: np.ndarray) -> dict[str, np.ndarray]:
    """The ground truth's masks from a grid's fractions:

    * ``brain``, ``gm``, ``wm``, ``csf``: voxels at least half that (brain: grey plus white matter);
    * ``core``, ``penumbra``: voxels at least 30 % brain, at least half of whose brain is in that zone.
    """
    brain = gm + wm
    return {"brain": brain >= 0.5, "gm": gm >= 0.5, "wm": wm >= 0.5, "csf": csf >= 0.5,
            "core": (brain >= 0.3) & (core >= 0.5 * brain), "penumbra": (brain >= 0.3) & (penumbra >= 0.5 * brain)}


def truth_masks(view: HeadView, zones, grid: Grid) -> dict[str, np.ndarray]:
    """:func:`masks` of a head on ``grid``."""
    fields = [view.sample(name, grid) for name in ("gm", "wm", "csf")]
    fields += [view.sample(zone_total(view.anatomy, zones, zone), grid) for zone in ("core", "penumbra")]
    return masks(*fields)


def work_grid(grid: Grid, finest: float = 1.0) -> Grid:
    """``grid``, or one with 2, 3, ... times fewer rows and columns when its pixels are finer than ``finest`` mm."""
    factor = max(1, int(finest / min(grid.dr, grid.dc)))
    while factor > 1 and (grid.shape[1] % factor or grid.shape[2] % factor):
        factor -= 1
    return grid.coarser(factor) if factor > 1 else grid


def to_grid(image: np.ndarray, grid: Grid) -> np.ndarray:
    """An image computed on ``work_grid(grid)`` brought to ``grid``'s matrix (bilinear, pixel edges aligned)."""
    if image.shape == grid.shape:
        return image
    zoom = (1.0, grid.shape[1] / image.shape[1], grid.shape[2] / image.shape[2])
    return ndimage.zoom(image, zoom, order=1, mode="nearest", grid_mode=True).astype(np.float32)
