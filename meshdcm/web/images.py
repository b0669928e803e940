"""Series pixels for the browser: files fetched once into the web node's cache, slices sent as raw little-endian
arrays (int16 for CT/MR in modality units, float32 for parametric maps), windowed and coloured in the browser.

Why raw arrays and not rendered PNGs: window/level, presets and the value under the cursor then need no round
trip, and a 512x512 int16 slice (512 KiB) costs less to produce than to PNG-compress (see bench/web.py).
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import dcmread

log = logging.getLogger("meshdcm.web.images")

#: Window presets (center, width) in HU, as the viewer offers them.
PRESETS = {"brain": (40, 80), "subdural": (75, 215), "stroke": (32, 8), "bone": (600, 2800)}
HEADER_TAGS = ("InstanceNumber", "ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns",
               "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth", "Modality", "ImageType",
               "SeriesDescription", "PixelSpacing", "TemporalPositionIdentifier", "SOPInstanceUID")
SLICE_CACHE = 4  # series whose slices are kept in memory


class ImageError(Exception):
    """A series that cannot be shown; the message says which and why."""


@dataclass
class SeriesPixels:
    """The ordered files of one series and what the viewer needs to know about them."""

    uid: str
    files: list[Path]
    rows: int
    cols: int
    kind: str              # "ct", "mr" or "map"
    dtype: str             # "int16" or "float32"
    center: float
    width: float
    unit: str
    spacing: tuple[float, float]

    def describe(self) -> dict:
        return {"uid": self.uid, "count": len(self.files), "rows": self.rows, "cols": self.cols, "kind": self.kind,
                "dtype": self.dtype, "center": self.center, "width": self.width, "unit": self.unit,
                "spacing": list(self.spacing), "presets": PRESETS if self.kind == "ct" else {}}


def _order_key(ds) -> tuple:
    pos = getattr(ds, "ImagePositionPatient", None)
    ori = getattr(ds, "ImageOrientationPatient", None)
    along = 0.0
    if pos is not None and ori is not None and len(ori) == 6:
        normal = np.cross(np.asarray(ori[:3], float), np.asarray(ori[3:], float))
        along = float(np.dot(normal, np.asarray(pos, float)))
    return (int(getattr(ds, "TemporalPositionIdentifier", 0) or 0), along, int(getattr(ds, "InstanceNumber", 0) or 0))


def index_series(uid: str, folder: Path, *, map_unit: str | None = None) -> SeriesPixels:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".part"))
    headers = []
    for path in files:
        try:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
        except Exception:  # noqa: S112 - not DICOM (a NIfTI, a sidecar): not a slice
            continue
        if getattr(ds, "Rows", None):
            headers.append((ds, path))
    if not headers:
        raise ImageError(f"series {uid} has no images in {folder}")
    headers.sort(key=lambda item: _order_key(item[0]))
    first = headers[len(headers) // 2][0]
    image_type = [str(v).upper() for v in (getattr(first, "ImageType", None) or [])]
    modality = str(getattr(first, "Modality", ""))
    is_map = map_unit is not None or ("DERIVED" in image_type and modality != "CT" and
                                      any(t in image_type for t in ("CBV", "CBF", "MTT", "TMAX", "TTP")))
    kind = "map" if is_map else ("ct" if modality == "CT" else "mr")
    pixels = SeriesPixels(uid, [p for _, p in headers], int(first.Rows), int(first.Columns), kind,
                          "float32" if is_map or float(getattr(first, "RescaleSlope", 1) or 1) % 1 else "int16",
                          0.0, 0.0, map_unit or ("HU" if kind == "ct" else ""),
                          tuple(float(v) for v in (getattr(first, "PixelSpacing", None) or (1.0, 1.0))))
    center, width = _window(first)
    if center is None:
        middle = slice_array(pixels, len(pixels.files) // 2)
        lo, hi = (np.percentile(middle, [1, 99.5]) if middle.size else (0.0, 1.0))
        center, width = (float(lo + hi) / 2, float(max(hi - lo, 1e-6)))
    pixels.center, pixels.width = center, width
    return pixels


def _window(ds) -> tuple[float | None, float | None]:
    c, w = getattr(ds, "WindowCenter", None), getattr(ds, "WindowWidth", None)
    if c is None or w is None:
        return None, None
    c = c[0] if not isinstance(c, (int, float)) else c
    w = w[0] if not isinstance(w, (int, float)) else w
    return float(c), float(w)


def slice_array(pixels: SeriesPixels, index: int) -> np.ndarray:
    ds = dcmread(pixels.files[index])
    arr = ds.pixel_array
    if arr.ndim == 3:  # a multi-frame instance: its first frame
        arr = arr[0]
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    if pixels.dtype == "float32":
        return (arr.astype(np.float32) * np.float32(slope) + np.float32(intercept))
    if slope == 1 and intercept == 0 and arr.dtype == np.int16:
        return arr
    return np.clip(arr.astype(np.int32) * int(slope) + int(intercept), -32768, 32767).astype(np.int16)


class SeriesImages:
    """Indexes, caches and serves series; thread-safe. ``locate(uid)`` returns the local folder of a series
    (fetching it if needed) and its map unit, or raises ImageError."""

    def __init__(self, locate):
        self._locate = locate
        self._index: dict[str, SeriesPixels] = {}
        self._slices: OrderedDict[str, dict[int, bytes]] = OrderedDict()
        self._thumbs: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._indexing: dict[str, threading.Lock] = {}

    def pixels(self, uid: str) -> SeriesPixels:
        with self._lock:
            if uid in self._index:
                return self._index[uid]
            gate = self._indexing.setdefault(uid, threading.Lock())
        with gate:  # one thread indexes a series; the others wait for it
            with self._lock:
                if uid in self._index:
                    return self._index[uid]
            folder, unit = self._locate(uid)
            pixels = index_series(uid, folder, map_unit=unit)
            with self._lock:
                self._index[uid] = pixels
            return pixels

    def slice_bytes(self, uid: str, index: int) -> bytes:
        pixels = self.pixels(uid)
        if not 0 <= index < len(pixels.files):
            raise ImageError(f"series {uid} has {len(pixels.files)} images, not {index + 1}")
        with self._lock:
            cached = self._slices.get(uid, {}).get(index)
        if cached is not None:
            return cached
        data = np.ascontiguousarray(slice_array(pixels, index), dtype="<" + ("f4" if pixels.dtype == "float32"
                                                                               else "i2")).tobytes()
        with self._lock:
            self._slices.setdefault(uid, {})[index] = data
            self._slices.move_to_end(uid)
            while len(self._slices) > SLICE_CACHE:
                self._slices.popitem(last=False)
        return data

    def prefetch(self, uid: str) -> None:
        """Index the series and read every slice into memory (on a background thread)."""
        def run():
            try:
                pixels = self.pixels(uid)
                self.thumbnail(uid)
                for i in range(len(pixels.files)):
                    self.slice_bytes(uid, i)
            except Exception as exc:  # a series that cannot be shown is reported when it is asked for
                log.info("prefetch of series %s stopped: %s", uid, exc)
        threading.Thread(target=run, name=f"prefetch-{uid[-8:]}", daemon=True).start()

    def thumbnail(self, uid: str, size: int = 128) -> bytes:
        with self._lock:
            if uid in self._thumbs:
                return self._thumbs[uid]
        from PIL import Image

        pixels = self.pixels(uid)
        arr = slice_array(pixels, len(pixels.files) // 2).astype(np.float32)
        lo = pixels.center - pixels.width / 2
        grey = np.clip((arr - lo) / max(pixels.width, 1e-6) * 255.0, 0, 255).astype(np.uint8)
        img = Image.fromarray(colour(grey) if pixels.kind == "map" else grey)
        img.thumbnail((size, size))
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=1)
        data = buf.getvalue()
        with self._lock:
            self._thumbs[uid] = data
        return data


def colour(grey: np.ndarray) -> np.ndarray:
    """A jet-like colour map (the viewer's, app.js ``jet``) of uint8 values: RGB uint8."""
    x = grey.astype(np.float32) / 255.0
    r = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * x - 1), 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)
