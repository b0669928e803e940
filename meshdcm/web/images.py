"""Series pixels for the browser: files fetched once into the web node's cache, slices sent as raw little-endian
arrays (int16 for CT/MR in modality units, float32 for parametric maps), windowed and coloured in the browser.

Why raw arrays and not rendered PNGs: window/level, presets and the value under the cursor then need no round
trip, and a 512x512 int16 slice (512 KiB) costs less to produce than to PNG-compress (see bench/web.py).
"""

from __future__ import annotations

import io
import logging
import queue
import struct
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from meshdcm.dataview import DataView

from .stack import Stack, arrange, normal_of
from .windows import SAMPLE_SLICES, series_windows

log = logging.getLogger("meshdcm.web.images")

HEADER_TAGS = ("InstanceNumber", "ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns",
               "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth", "Modality", "ImageType",
               "SeriesDescription", "PixelSpacing", "TemporalPositionIdentifier", "SOPInstanceUID",
               "AcquisitionNumber", "AcquisitionTime", "TriggerTime", "SliceLocation", "FrameOfReferenceUID")
SLICE_CACHE = 4  # series whose slices are kept in memory
PREFETCH_PAUSE = 0.2  # seconds the prefetch stays quiet after a page's request
HEAD_BYTES = 16 * 1024
TRANSFER_SYNTAX = 0x00020010
EXPLICIT_LE = "1.2.840.10008.1.2.1"
#: what arranges the slices (read from every file; the rest comes from the middle file's full header)
SCAN_TAGS = {name: int(tag_for_keyword(name)) for name in (
    "InstanceNumber", "ImagePositionPatient", "ImageOrientationPatient", "TemporalPositionIdentifier",
    "AcquisitionNumber", "AcquisitionTime", "TriggerTime", "SliceLocation")}


class ImageError(Exception):
    """A series that cannot be shown; the message says which and why."""


@dataclass
class SeriesPixels:
    """The arranged files of one series (:class:`~meshdcm.web.stack.Stack`) and what the viewer needs to know."""

    uid: str
    stack: Stack
    rows: int
    cols: int
    kind: str              # "ct", "mr" or "map"
    dtype: str             # "int16" or "float32"
    center: float
    width: float
    unit: str
    spacing: tuple[float, float]  # PixelSpacing: between rows, between columns (mm)
    window_from: str = "series"   # "series" (its own WindowCenter/Width) or "histogram"
    presets: dict = field(default_factory=dict)
    frame: str = ""               # FrameOfReferenceUID
    labels: np.ndarray | None = None  # a segmentation (kind "seg"): slices x rows x cols of segment numbers
    segments: list = field(default_factory=list)  # ... and what each number is: {value, label, rgb}

    @property
    def files(self) -> list[Path]:
        return self.stack.files

    @property
    def first_index(self) -> int:
        """The image a page shows first: the middle slice (of the first phase)."""
        return self.stack.slices // 2

    def voxel_at(self, point) -> tuple[int, int, int] | None:
        """(slice, row, col) of the voxel holding ``point`` (LPS, mm), or None when it is outside the series."""
        s = self.stack
        normal = normal_of(s.orientation)
        if normal is None or any(o is None for o in s.origins) or any(p is None for p in s.positions):
            return None
        p = np.asarray(point, dtype=float)
        along = float(np.dot(normal, p))
        z = int(np.argmin([abs(pos - along) for pos in s.positions]))
        gap = float(np.median(np.abs(np.diff(s.positions)))) if s.slices > 1 else max(self.spacing)
        if abs(s.positions[z] - along) > gap / 2 + 1e-3:
            return None
        d = p - np.asarray(s.origins[z], dtype=float)
        col = int(round(float(np.dot(d, s.orientation[:3])) / self.spacing[1]))
        row = int(round(float(np.dot(d, s.orientation[3:])) / self.spacing[0]))
        return (z, row, col) if 0 <= row < self.rows and 0 <= col < self.cols else None

    def describe(self) -> dict:
        s = self.stack
        return {"uid": self.uid, "count": len(s.files), "rows": self.rows, "cols": self.cols, "kind": self.kind,
                "dtype": self.dtype, "center": self.center, "width": self.width, "unit": self.unit,
                "spacing": list(self.spacing), "presets": {k: list(v) for k, v in self.presets.items()},
                "window_from": self.window_from, "slices": s.slices, "phases": s.phases, "phase_kind": s.phase_kind,
                "times": s.times, "positions": s.positions, "origins": s.origins, "orientation": s.orientation,
                "frame": self.frame, "first": self.first_index, "segments": self.segments}


class _Header:
    """The few header values the viewer needs, as attributes (what :func:`meshdcm.web.stack.arrange` and
    ``index_series`` read)."""

    def __init__(self, values: dict):
        self.__dict__.update({k: v for k, v in values.items() if v is not None})

    def __getattr__(self, name):  # an absent element
        return None


def _tuple(v):
    return v if isinstance(v, tuple) else (v,)


def scan_header(path: Path) -> _Header | None:
    """The values that arrange the slices, from the first 16 KiB of a PS3.10 file in Explicit VR Little Endian, read
    with :class:`meshdcm.dataview.DataView` (~30x faster than pydicom, which matters for a 200-slice series the
    radiologist just clicked); None for any other file, which then goes through pydicom."""
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    if len(head) < 144 or head[128:132] != b"DICM" or head[132:138] != b"\x02\x00\x00\x00UL":
        return None
    try:
        meta_end = 144 + struct.unpack_from("<I", head, 140)[0]
        meta = DataView(memoryview(head)[132:meta_end])
        if meta.get(TRANSFER_SYNTAX) != EXPLICIT_LE:
            return None
        view = DataView(memoryview(head)[meta_end:])
        values = {name: view.get(tag) for name, tag in SCAN_TAGS.items()}
    except Exception:  # truncated within the first 16 KiB, or odd: pydicom decides
        return None
    for key in ("ImagePositionPatient", "ImageOrientationPatient"):
        if values[key] is not None:
            values[key] = _tuple(values[key])
    return _Header(values)


def index_series(uid: str, folder: Path, *, map_unit: str | None = None) -> SeriesPixels:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".part"))
    headers = []
    for path in files:
        ds = scan_header(path)
        if ds is None:
            try:
                ds = dcmread(path, stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
            except Exception:  # noqa: S112 - not DICOM (a NIfTI, a sidecar): not a slice
                continue
        if isinstance(ds, _Header) or getattr(ds, "Rows", None):
            headers.append((ds, path))
    first = None
    while headers and first is None:  # the middle file's full header (a file that is no image is dropped)
        middle = headers[len(headers) // 2][1]
        first = dcmread(middle, stop_before_pixels=True)
        if not getattr(first, "Rows", None):
            headers.pop(len(headers) // 2)
            first = None
    if not headers or first is None:
        raise ImageError(f"series {uid} has no images in {folder}")
    if str(getattr(first, "SOPClassUID", "")) == SEG_CLASS:
        return _segmentation(uid, headers[len(headers) // 2][1])
    stack = arrange(headers)
    image_type = [str(v).upper() for v in (getattr(first, "ImageType", None) or [])]
    modality = str(getattr(first, "Modality", ""))
    is_map = map_unit is not None or ("DERIVED" in image_type and modality != "CT" and
                                      any(t in image_type for t in ("CBV", "CBF", "MTT", "TMAX", "TTP", "RCBV", "RCBF", "RMTT")))
    kind = "map" if is_map else ("ct" if modality == "CT" else "mr")
    if int(getattr(first, "SamplesPerPixel", 1) or 1) == 3:  # a colour image (a summary, a screen capture)
        return SeriesPixels(uid, stack, int(first.Rows), int(first.Columns), "rgb", "int16", 127.5, 255.0, "",
                            tuple(float(v) for v in (getattr(first, "PixelSpacing", None) or (1.0, 1.0))),
                            window_from="colour", frame=str(getattr(first, "FrameOfReferenceUID", "") or ""))
    pixels = SeriesPixels(uid, stack, int(first.Rows), int(first.Columns), kind,
                          "float32" if is_map or float(getattr(first, "RescaleSlope", 1) or 1) % 1 else "int16",
                          0.0, 0.0, map_unit or ("HU" if kind == "ct" else ""),
                          tuple(float(v) for v in (getattr(first, "PixelSpacing", None) or (1.0, 1.0))),
                          frame=str(getattr(first, "FrameOfReferenceUID", "") or ""))
    samples = []
    if kind != "ct":  # MR presets and windows come from the histogram of a few slices of the first phase
        step = max(1, stack.slices // SAMPLE_SLICES)
        samples = [slice_array(pixels, i) for i in range(step // 2, stack.slices, step)][:SAMPLE_SLICES]
    (pixels.center, pixels.width), pixels.window_from, pixels.presets = series_windows(kind, first, samples)
    return pixels


SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
#: colours of the segments of a segmentation that is not the stroke analysis' (whose colours are its own)
SEG_PALETTE = ((255, 0, 0), (0, 200, 0), (255, 220, 0), (0, 160, 255), (255, 0, 255), (0, 255, 255))


def _segmentation(uid: str, path: Path) -> SeriesPixels:
    """A DICOM SEG as a label map on its own slices: at each position, the number of the segment drawn on top.
    The stroke analysis' segments are painted Tmax > 6 s, then Tmax > 10 s, then the core on top (the mismatch is
    Tmax > 6 s outside the core: green and yellow around red); another SEG's in reverse segment-number order."""
    from meshdcm.stroke.codes import finding_by_code

    ds = dcmread(path)
    frames = ds.pixel_array
    if frames.ndim == 2:
        frames = frames[None]
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else Dataset()
    per_frame = ds.PerFrameFunctionalGroupsSequence

    def group(i: int, name: str):
        return per_frame[i].get(name) or shared.get(name)

    try:
        orientation = [float(v) for v in group(0, "PlaneOrientationSequence")[0].ImageOrientationPatient]
        spacing = tuple(float(v) for v in group(0, "PixelMeasuresSequence")[0].PixelSpacing)
        normal = normal_of(orientation)
        slices: dict[float, tuple[list[float], list[tuple[int, int]]]] = {}
        for i in range(len(per_frame)):
            origin = [float(v) for v in group(i, "PlanePositionSequence")[0].ImagePositionPatient]
            number = int(group(i, "SegmentIdentificationSequence")[0].ReferencedSegmentNumber)
            along = round(float(np.dot(normal, origin)), 2)
            slices.setdefault(along, (origin, []))[1].append((number, i))
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise ImageError(f"segmentation {uid} has no plane positions per frame ({exc}): it cannot be drawn") from exc
    stroke_order = {"tmax6": 0, "tmax10": 1, "core": 2}  # painted in this order; the mismatch is not painted
    segments, rank = [], {}
    for n, item in enumerate(ds.SegmentSequence):
        number = int(item.SegmentNumber)
        code = item.SegmentedPropertyTypeCodeSequence[0]
        finding = finding_by_code(str(code.CodeValue), str(code.CodingSchemeDesignator))
        if finding is not None and finding.key not in stroke_order:
            continue
        rank[number] = stroke_order[finding.key] if finding is not None else -number
        rgb = finding.rgb if finding is not None else SEG_PALETTE[n % len(SEG_PALETTE)]
        segments.append({"value": number, "label": str(item.get("SegmentLabel", number)), "rgb": list(rgb)})
    positions = sorted(slices)
    rows, cols = int(ds.Rows), int(ds.Columns)
    labels = np.zeros((len(positions), rows, cols), np.int16)
    for z, along in enumerate(positions):
        for number, i in sorted((x for x in slices[along][1] if x[0] in rank), key=lambda x: rank[x[0]]):
            labels[z][frames[i] > 0] = number
    stack = Stack([path] * len(positions), len(positions), 1, list(positions), [slices[p][0] for p in positions],
                  orientation, None, "")
    segments.sort(key=lambda s: -rank[s["value"]])  # the legend: what is drawn on top first
    return SeriesPixels(uid, stack, rows, cols, "seg", "int16", 0.0, 1.0, "", spacing, window_from="segments",
                        frame=str(ds.get("FrameOfReferenceUID", "") or ""), labels=labels, segments=segments)


def slice_array(pixels: SeriesPixels, index: int) -> np.ndarray:
    if pixels.labels is not None:
        return pixels.labels[index]
    ds = dcmread(pixels.files[index])
    arr = ds.pixel_array
    if pixels.kind == "rgb":  # rows x cols x 3 (pydicom gives YBR as RGB), the first frame of a multi-frame one
        return (arr[0] if arr.ndim == 4 else arr).astype(np.int16)
    if arr.ndim == 3:  # a multi-frame instance: its first frame
        arr = arr[0]
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    if pixels.dtype == "float32":
        values = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        padding = getattr(ds, "PixelPaddingValue", None)
        if padding is not None:  # background without a value (a map outside the brain): NaN, drawn transparent
            values[arr == int(padding)] = np.nan
        return values
    if slope == 1 and intercept == 0 and arr.dtype == np.int16:
        return arr
    return np.clip(arr.astype(np.int32) * int(slope) + int(intercept), -32768, 32767).astype(np.int16)


class SeriesImages:
    """Indexes, caches and serves series; thread-safe. ``locate(uid)`` returns the local folder of a series
    (fetching it if needed) and its map unit, or raises ImageError; ``used(uid)`` (optional) is told each time a
    page opens a series, so the disk cache keeps it longest."""

    def __init__(self, locate, used=None):
        self._locate = locate
        self._used = used
        self._index: dict[str, SeriesPixels] = {}
        self._slices: OrderedDict[str, dict[int, bytes]] = OrderedDict()
        self._thumbs: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._indexing: dict[str, threading.Lock] = {}
        self._asking = 0                  # requests from pages being served: the prefetch waits for them
        self._last_ask = 0.0
        self._closed = threading.Event()
        self._prefetch_queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._prefetcher: threading.Thread | None = None

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

    def cached(self, uid: str, index: int) -> bytes | None:
        """A slice already in memory (no waiting), else None."""
        with self._lock:
            return self._slices.get(uid, {}).get(index)

    def known(self, uid: str) -> SeriesPixels | None:
        with self._lock:
            return self._index.get(uid)

    def in_memory(self) -> set[str]:
        """The series whose slices are held in memory (the ones being looked at)."""
        with self._lock:
            return set(self._slices)

    def forget(self, uid: str) -> None:
        """Drop what is known of a series (its files were removed from the cache): asked for again, it is
        located (fetched) and indexed anew."""
        with self._lock:
            self._index.pop(uid, None)
            self._slices.pop(uid, None)
            self._thumbs.pop(uid, None)

    @contextmanager
    def _page_asking(self):
        """Marks a page's request: the prefetch waits until none is running and none came for PAUSE s."""
        with self._lock:
            self._asking += 1
        try:
            yield
        finally:
            with self._lock:
                self._asking -= 1
                self._last_ask = time.monotonic()

    def _page_quiet(self) -> bool:
        return not self._asking and time.monotonic() - self._last_ask >= PREFETCH_PAUSE

    def info(self, uid: str) -> SeriesPixels:
        """What a page asks first when it opens a series."""
        with self._page_asking():
            if self._used is not None:
                self._used(uid)
            return self.pixels(uid)

    def slice_bytes(self, uid: str, index: int, *, background: bool = False) -> bytes:
        if background:
            return self._slice_bytes(uid, index)
        with self._page_asking():
            return self._slice_bytes(uid, index)

    def _slice_bytes(self, uid: str, index: int) -> bytes:
        try:
            return self._read_slice(uid, index)
        except FileNotFoundError:  # the cache removed the series meanwhile: fetch it again, once
            self.forget(uid)
            return self._read_slice(uid, index)

    def _read_slice(self, uid: str, index: int) -> bytes:
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

    def curve(self, uid: str, slice_index: int, row: int, col: int) -> dict:
        """The values of one voxel (``row``, ``col`` of slice ``slice_index``) in every phase of the series: a DSC
        series' signal-time curve."""
        pixels = self.pixels(uid)
        stack = pixels.stack
        if not (0 <= slice_index < stack.slices and 0 <= row < pixels.rows and 0 <= col < pixels.cols):
            raise ImageError(f"series {uid} has {stack.slices} slices of {pixels.rows}x{pixels.cols}: there is no "
                             f"voxel ({row}, {col}) in slice {slice_index + 1}")
        fmt = "<f4" if pixels.dtype == "float32" else "<i2"
        offset = row * pixels.cols + col
        values = [float(np.frombuffer(self.slice_bytes(uid, t * stack.slices + slice_index), fmt)[offset])
                  for t in range(stack.phases)]
        return {"slice": slice_index, "row": row, "col": col, "values": values, "times": stack.times,
                "phase_kind": stack.phase_kind, "unit": pixels.unit}

    def aif_signal(self, uid: str, aif: dict) -> dict:
        """Where the arterial input function an analysis node chose lies in this series (its points in LPS mm,
        else its voxel indices), and the mean signal of those voxels in every phase."""
        pixels = self.pixels(uid)
        voxels = [pixels.voxel_at(p) for p in aif.get("points_lps") or []]
        if not voxels:
            voxels = [tuple(int(i) for i in v) for v in aif.get("voxels") or [] if len(v) == 3]
        voxels = sorted({v for v in voxels if v is not None and 0 <= v[0] < pixels.stack.slices
                         and 0 <= v[1] < pixels.rows and 0 <= v[2] < pixels.cols})
        curves = [self.curve(uid, *v)["values"] for v in voxels]
        signal = [round(float(x), 3) for x in np.mean(curves, axis=0)] if curves else []
        return {"voxels": [list(v) for v in voxels], "signal": signal}

    def prefetch(self, uid: str) -> None:
        """Queue the series for the prefetch thread: it indexes the series and reads every slice into memory,
        middle slice first (the one the viewer shows first), then outwards, one series at a time, and steps aside
        while a page is asking for pixels."""
        with self._lock:
            if self._prefetcher is None:
                self._prefetcher = threading.Thread(target=self._prefetch_loop, name="web-prefetch", daemon=True)
                self._prefetcher.start()
        self._prefetch_queue.put(uid)

    def close(self) -> None:
        """Stop the prefetch (at the node's stop)."""
        self._closed.set()
        self._prefetch_queue.put("")

    def _prefetch_loop(self) -> None:
        while not self._closed.is_set():
            uid = self._prefetch_queue.get()
            if self._closed.is_set():
                return
            try:
                pixels = self.pixels(uid)
                n, first = len(pixels.files), pixels.first_index
                order = [first] + [i for d in range(1, n) for i in (first + d, first - d) if 0 <= i < n]
                for k, i in enumerate(order):
                    while not self._page_quiet() and not self._closed.is_set():
                        time.sleep(0.02)
                    if self._closed.is_set():
                        return
                    self.slice_bytes(uid, i, background=True)
                    if k == 0:
                        self.thumbnail(uid)
            except Exception as exc:  # a series that cannot be shown is reported when it is asked for
                log.info("prefetch of series %s stopped: %s", uid, exc)

    def thumbnail(self, uid: str, size: int = 128) -> bytes:
        with self._lock:
            if uid in self._thumbs:
                return self._thumbs[uid]
        from PIL import Image

        pixels = self.pixels(uid)
        middle = self._slice_bytes(uid, pixels.first_index)
        arr = np.frombuffer(middle, "<f4" if pixels.dtype == "float32" else "<i2")
        if pixels.kind != "rgb":
            arr = arr.reshape(pixels.rows, pixels.cols)
        arr = arr.astype(np.float32)
        lo = pixels.center - pixels.width / 2
        grey = np.clip(np.nan_to_num((arr - lo) / max(pixels.width, 1e-6) * 255.0), 0, 255).astype(np.uint8)
        if pixels.kind == "rgb":
            img = Image.fromarray(arr.reshape(pixels.rows, pixels.cols, 3).astype(np.uint8))
        elif pixels.kind == "seg":
            rgb = np.zeros(arr.shape + (3,), np.uint8)
            for segment in pixels.segments:
                rgb[arr == segment["value"]] = segment["rgb"]
            img = Image.fromarray(rgb)
        elif pixels.kind == "map":
            rgb = colour(grey)
            rgb[np.isnan(arr)] = 0  # background (padding) black, not the colour of the window's low end
            img = Image.fromarray(rgb)
        else:
            img = Image.fromarray(grey)
        img.thumbnail((size, size))
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=1)
        data = buf.getvalue()
        with self._lock:
            self._thumbs[uid] = data
        return data


def colour(grey: np.ndarray) -> np.ndarray:
    """A jet-like colour map (the viewer's, static/viewer.js ``JET``) of uint8 values: RGB uint8."""
    x = grey.astype(np.float32) / 255.0
    r = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * x - 1), 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)
