"""Colour-mapped PNG renderings of perfusion maps for the web UI: a montage of all slices per map.

The colour map is a perceptually ordered black-blue-green-yellow-red-white ramp interpolated from a few
anchors (no Matplotlib dependency).  PNG encoding uses Pillow when it is installed; otherwise a small
writer built on zlib (PNG is a signature plus IHDR/IDAT/IEND chunks with CRC-32), so rendering works
with NumPy alone.  ``write_png`` returns which encoder it used.

Each map is coloured over its physiological window (:data:`~.maps.DISPLAY_RANGES`, the same the derived
DICOM series carry as WindowCenter/WindowWidth), never over its value range; outside the brain mask the
image is black (not a colour of the ramp).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from ..atomic import replacing
from .maps import DISPLAY_RANGES, display_range

__all__ = ["colourise", "montage", "write_png", "write_png_zlib", "render_map", "DEFAULT_RANGES"]

_ANCHORS = np.array([[0, 0, 0], [0, 0, 160], [0, 130, 255], [0, 200, 80], [255, 230, 0], [255, 60, 0],
                     [255, 255, 255]], dtype=np.float64)
DEFAULT_RANGES = DISPLAY_RANGES  # the name this module exported first


def colourise(image: np.ndarray, vmin: float, vmax: float, mask: np.ndarray | None = None) -> np.ndarray:
    """(H, W) float -> (H, W, 3) uint8; outside ``mask`` black."""
    x = np.clip((np.nan_to_num(image) - vmin) / max(vmax - vmin, 1e-12), 0, 1) * (len(_ANCHORS) - 1)
    i = np.minimum(x.astype(int), len(_ANCHORS) - 2)
    f = (x - i)[..., None]
    rgb = _ANCHORS[i] * (1 - f) + _ANCHORS[i + 1] * f
    if mask is not None:
        rgb[~mask] = 0
    return rgb.astype(np.uint8)


def montage(volume: np.ndarray, columns: int | None = None) -> np.ndarray:
    """(Z, H, W[, C]) -> one image with the slices on a grid."""
    nz = volume.shape[0]
    cols = columns or int(np.ceil(np.sqrt(nz)))
    rows = int(np.ceil(nz / cols))
    h, w = volume.shape[1:3]
    out = np.zeros((rows * h, cols * w) + volume.shape[3:], dtype=volume.dtype)
    for z in range(nz):
        r, c = divmod(z, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = volume[z]
    return out


def write_png_zlib(rgb: np.ndarray, path: str | Path) -> Path:
    """Minimal PNG encoder (8-bit RGB, filter type 0 on every row)."""
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), np.ascontiguousarray(rgb, np.uint8).reshape(h, w * 3)], axis=1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))
    path = Path(path)
    with replacing(path) as tmp:
        tmp.write_bytes(png)
    return path


def write_png(rgb: np.ndarray, path: str | Path) -> str:
    """Write RGB ``rgb`` as PNG; returns ``"pillow"`` or ``"zlib"`` (the encoder used)."""
    try:
        from PIL import Image
    except ImportError:
        write_png_zlib(rgb, path)
        return "zlib"
    Image.fromarray(np.ascontiguousarray(rgb, np.uint8)).save(path, format="PNG")
    return "pillow"


def render_map(name: str, volume: np.ndarray, mask: np.ndarray, path: str | Path,
               value_range: tuple[float, float] | None = None) -> tuple[Path, str]:
    """Colour montage of one map; the range defaults to :func:`~.maps.display_range`, for a map without one
    to 0..99th percentile in the mask."""
    if value_range is None:
        value_range = display_range(name)
    if value_range is None:
        vals = volume[mask]
        value_range = (0.0, float(np.percentile(vals, 99)) if vals.size else 1.0)
    rgb = np.stack([colourise(volume[z], *value_range, mask=mask[z]) for z in range(volume.shape[0])])
    encoder = write_png(montage(rgb), path)
    return Path(path), encoder
