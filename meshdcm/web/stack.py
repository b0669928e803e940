"""How the images of a series are arranged: slices (positions in space) and phases (time points, or volumes such
as a DWI's b-values), with the geometry the viewer needs to label, measure and link them.

A DSC series is one stack of slices x time points, interleaved in any order: its images are grouped by position
(ImagePositionPatient along the slice normal, else SliceLocation) and, within a position, ordered by
TemporalPositionIdentifier, AcquisitionNumber, acquisition time and InstanceNumber; image ``phase * slices +
slice`` is then slice ``slice`` of phase ``phase``. A series whose positions do not repeat evenly is one phase of
images ordered as before (time point, position, InstanceNumber).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

POSITION_DECIMALS = 2  # positions closer than 0.01 mm are one slice
DYNAMIC_PHASES = 10  # without TemporalPositionIdentifier, this many phases at increasing times are a time series


@dataclass
class Stack:
    files: list[Path]                     # file ``phase * slices + slice``
    slices: int
    phases: int
    positions: list[float | None]         # mm along the normal, per slice
    origins: list[list[float] | None]     # ImagePositionPatient of each slice (LPS, mm)
    orientation: list[float] | None       # ImageOrientationPatient: row direction, then column direction
    times: list[float] | None             # seconds from the first phase, per phase
    phase_kind: str                       # "time" (a dynamic series), "volume" (several at one position), ""


def _floats(value, n: int) -> list[float] | None:
    if value is None:
        return None
    values = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else (value,)
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _number(value) -> float | None:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def seconds_of_day(tm) -> float | None:
    """A DICOM TM value (HHMMSS.FFFFFF) in seconds since midnight."""
    s = str(tm or "").strip()
    if len(s) < 2 or not s[:2].isdigit():
        return None
    try:
        return 3600 * int(s[0:2]) + 60 * int(s[2:4] or 0) + float(s[4:] or 0)
    except ValueError:
        return None


def normal_of(orientation: list[float] | None) -> tuple[float, float, float] | None:
    if orientation is None:
        return None
    r, c = orientation[:3], orientation[3:]
    return (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])


def _frame_time(ds) -> float | None:
    trigger = _number(getattr(ds, "TriggerTime", None))
    if trigger is not None:
        return trigger / 1000.0
    return seconds_of_day(getattr(ds, "AcquisitionTime", None))


def arrange(headers: list[tuple[object, Path]]) -> Stack:
    """The stack of ``headers`` (a header with the attributes above, and its file), which is not empty."""
    orientation = _floats(getattr(headers[0][0], "ImageOrientationPatient", None), 6)
    normal = normal_of(orientation)
    items = []
    for ds, path in headers:
        origin = _floats(getattr(ds, "ImagePositionPatient", None), 3)
        if origin is not None and normal is not None:
            along = sum(n * p for n, p in zip(normal, origin, strict=True))
        else:
            along = _number(getattr(ds, "SliceLocation", None))
        items.append({"ds": ds, "path": path, "origin": origin, "along": along,
                      "temporal": int(_number(getattr(ds, "TemporalPositionIdentifier", None)) or 0),
                      "acquisition": int(_number(getattr(ds, "AcquisitionNumber", None)) or 0),
                      "time": _frame_time(ds), "instance": int(_number(getattr(ds, "InstanceNumber", None)) or 0)})
    stack = _grid(items, orientation)
    if stack is not None:
        return stack
    items.sort(key=lambda it: (it["temporal"], it["along"] if it["along"] is not None else 0.0, it["instance"]))
    return Stack([it["path"] for it in items], len(items), 1, [it["along"] for it in items],
                 [it["origin"] for it in items], orientation, None, "")


def _phase_order(it: dict) -> tuple:
    return (it["temporal"], it["acquisition"], it["time"] if it["time"] is not None else 0.0, it["instance"])


def _grid(items: list[dict], orientation) -> Stack | None:
    """Slices x phases when every position holds the same number of images, else None."""
    if any(it["along"] is None for it in items):
        return None
    by_position: dict[float, list[dict]] = {}
    for it in items:
        by_position.setdefault(round(it["along"], POSITION_DECIMALS), []).append(it)
    positions = sorted(by_position)
    phases = len(items) // len(positions)
    if any(len(group) != phases for group in by_position.values()):
        return None
    columns = [sorted(by_position[p], key=_phase_order) for p in positions]
    files = [columns[z][t]["path"] for t in range(phases) for z in range(len(positions))]
    times = None
    if phases > 1 and all(it["time"] is not None for it in items):
        starts = [min(col[t]["time"] for col in columns) for t in range(phases)]
        times = [round(s - starts[0], 3) for s in starts]
        if any(b <= a for a, b in zip(times, times[1:], strict=False)):
            times = None  # not increasing (midnight, missing values): phases are numbered only
    # a dynamic series says so (TemporalPositionIdentifier), or repeats its positions at increasing times
    dynamic = phases > 1 and (any(it["temporal"] for it in items) or (times is not None and phases >= DYNAMIC_PHASES))
    return Stack(files, len(positions), phases, [columns[z][0]["along"] for z in range(len(positions))],
                 [columns[z][0]["origin"] for z in range(len(positions))], orientation, times if dynamic else None,
                 "" if phases == 1 else ("time" if dynamic else "volume"))
