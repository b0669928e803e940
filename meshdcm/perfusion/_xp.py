"""Array-module selection: CuPy when it is importable *and* a GPU answers, else NumPy.

Every numerical function in this package takes ``xp`` (a module, ``"numpy"``, ``"cupy"``, ``"auto"`` or
``None`` = auto) and is written against the NumPy API subset that CuPy implements, so the same code runs on
both; the tests run the NumPy path.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["get_xp", "to_numpy", "gpu_unavailable_reason"]


def gpu_unavailable_reason() -> str | None:
    """``None`` when CuPy can run on a GPU here, else a short reason (for reports and benchmarks)."""
    try:
        cp = importlib.import_module("cupy")
    except ImportError:
        return "cupy is not installed"
    try:
        n = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA runtime missing/broken: report, fall back
        return f"cupy cannot reach a GPU: {exc}"
    if n < 1:
        return "no CUDA device present"
    return None


def get_xp(xp: ModuleType | str | None = None) -> ModuleType:
    """Resolve the array module; ``None``/``"auto"`` picks CuPy only when a GPU is present."""
    if isinstance(xp, ModuleType):
        return xp
    if xp in (None, "auto"):
        if gpu_unavailable_reason() is None:
            return importlib.import_module("cupy")
        return np
    if xp == "numpy":
        return np
    if xp == "cupy":
        reason = gpu_unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"xp='cupy' was asked for but {reason}; use xp='numpy'")
        return importlib.import_module("cupy")
    raise ValueError(f"unknown array module {xp!r}: use 'numpy', 'cupy' or 'auto'")


def to_numpy(a):
    """A NumPy copy/view of a NumPy or CuPy array (or scalar)."""
    if hasattr(a, "get") and not isinstance(a, np.ndarray):
        return a.get()
    return np.asarray(a)
