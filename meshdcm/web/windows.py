"""The window (center, width) a series opens with, and the presets the viewer offers for it.

A series opens at its own window, the first WindowCenter/WindowWidth pair of its header, when it has one (the
scanner's or the analysis node's choice: a perfusion map's window says what its range means). Without one it
opens at a window from its histogram: an MR series or a map at the 1st-99th percentile of its head voxels (the
voxels above the background, in a few slices spread over the series), a CT at the brain window.

Presets: CT in HU (:data:`CT_PRESETS`). MR values have no unit, so an MR preset is a percentile range of the
series' own head-voxel histogram (:data:`MR_PRESETS`), turned into numbers once per series: what each contrast
needs to show, whatever the scanner's scaling. A series with a window of its own offers it as the preset
"series", so a click brings it back.
"""

from __future__ import annotations

import numpy as np

#: CT windows (center, width) in HU.
CT_PRESETS = {"brain": (40.0, 80.0), "subdural": (75.0, 215.0), "stroke": (40.0, 40.0), "bone": (600.0, 2800.0)}
#: MR windows as (low, high) percentiles of the series' head voxels: "auto" is the one a series without a window
#: of its own opens at; T1 keeps grey and white matter apart; T2/FLAIR keeps the brightest voxels (CSF in T2,
#: lesions in FLAIR) below white; DWI lifts the low end, so restricted diffusion stands out.
MR_PRESETS = {"auto": (1.0, 99.0), "T1": (1.0, 99.5), "T2/FLAIR": (0.5, 99.9), "DWI": (20.0, 99.9)}
#: A voxel brighter than this fraction of the series' 99.5th percentile is in the head (MR background is noise).
BACKGROUND_FRACTION = 0.05
#: Slices read for the histogram (spread evenly over the series).
SAMPLE_SLICES = 9


def own_window(ds) -> tuple[float, float] | None:
    """The first WindowCenter/WindowWidth pair of a header, or None (absent, empty or not a number)."""
    c, w = getattr(ds, "WindowCenter", None), getattr(ds, "WindowWidth", None)
    if c is None or w is None:
        return None
    c = c[0] if isinstance(c, (list, tuple)) or type(c).__name__ == "MultiValue" else c
    w = w[0] if isinstance(w, (list, tuple)) or type(w).__name__ == "MultiValue" else w
    try:
        c, w = float(c), float(w)
    except (TypeError, ValueError):
        return None
    return (c, w) if np.isfinite(c) and np.isfinite(w) and w > 0 else None


def head_voxels(samples: list[np.ndarray], kind: str) -> np.ndarray:
    """The values of the sampled slices that are in the head (MR: above the background) or, for a map, finite
    and non-zero (a map is 0 outside its mask)."""
    values = np.concatenate([np.asarray(s, dtype=np.float32).ravel() for s in samples]) if samples else \
        np.zeros(0, np.float32)
    values = values[np.isfinite(values)]
    if kind == "map":
        return values[values != 0]
    if values.size == 0:
        return values
    top = float(np.percentile(values, 99.5))
    return values[values > BACKGROUND_FRACTION * top] if top > 0 else values


def percentile_window(values: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """(center, width) spanning the ``low``-``high`` percentiles of ``values``."""
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [low, high]))
    return round((lo + hi) / 2, 3), round(max(hi - lo, 1e-3), 3)


def series_windows(kind: str, header, samples: list[np.ndarray]) -> tuple[tuple[float, float], str, dict]:
    """The window a series opens at, where it comes from ("series" or "histogram"), and its presets
    ``{name: (center, width)}`` in the order the page shows them."""
    own = own_window(header)
    presets: dict[str, tuple[float, float]] = {}
    if own is not None:
        presets["series"] = own
    if kind == "ct":
        presets.update(CT_PRESETS)
        return (own or CT_PRESETS["brain"]), ("series" if own else "histogram"), presets
    head = head_voxels(samples, kind)
    if kind == "mr":
        presets.update({name: percentile_window(head, lo, hi) for name, (lo, hi) in MR_PRESETS.items()})
        auto = presets["auto"]
    else:  # a map: its own window, else its histogram; no presets beyond those
        auto = percentile_window(head, *MR_PRESETS["auto"])
    return (own or auto), ("series" if own else "histogram"), presets
