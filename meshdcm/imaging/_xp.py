"""Array-module selection: CuPy when it is importable and a GPU is present, else NumPy.

Code written against ``xp`` (and :func:`ndimage`) runs unchanged on both; tests run it on NumPy.
"""

from __future__ import annotations

import logging
from types import ModuleType

import numpy as np

from .errors import ImagingError

__all__ = ["gpu_unavailable_reason", "get_xp", "ndimage", "to_numpy"]

log = logging.getLogger(__name__)


def gpu_unavailable_reason() -> str | None:
    """None when CuPy can use a GPU here, else why not (for logs and bench output)."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install 'meshdcm[gpu]')"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device is visible"
    except Exception as exc:  # CUDA driver errors come in many types
        return f"CUDA is not usable: {exc}"
    return None


def get_xp(prefer: str = "auto") -> ModuleType:
    """``cupy`` for ``"cupy"`` (error if unusable) or ``"auto"`` with a GPU; ``numpy`` otherwise."""
    if prefer not in ("auto", "cupy", "numpy"):
        raise ImagingError(f"unknown array backend {prefer!r}; use 'auto', 'cupy' or 'numpy'")
    if prefer == "numpy":
        return np
    reason = gpu_unavailable_reason()
    if reason is None:
        import cupy

        return cupy
    if prefer == "cupy":
        raise ImagingError(f"the CuPy backend was requested but {reason}; use backend='auto' or 'numpy'")
    return np


def ndimage(xp: ModuleType) -> ModuleType:
    """``scipy.ndimage`` or ``cupyx.scipy.ndimage`` to match ``xp``."""
    if xp is np:
        from scipy import ndimage as nd

        return nd
    from cupyx.scipy import ndimage as nd  # pragma: no cover - needs a GPU

    return nd


def to_numpy(a) -> np.ndarray:
    """A host NumPy array from a NumPy or CuPy array."""
    get = getattr(a, "get", None)
    return get() if callable(get) else np.asarray(a)
