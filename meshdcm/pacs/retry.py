"""Retry with exponential backoff for operations that raise a retryable :class:`PacsError`."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import PacsError

__all__ = ["with_retry"]

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


def with_retry(fn: Callable[[], T], *, attempts: int = 3, base_delay: float = 0.5, max_delay: float = 10.0,
               on_retry: Callable[[int, PacsError, float], None] | None = None) -> T:
    """Call ``fn()``; on a retryable :class:`PacsError` wait (exponential backoff with jitter) and try again.

    After ``attempts`` tries the last error is raised, its message saying how many tries were made.
    Non-retryable errors are raised at once. ``on_retry(attempt, error, delay)`` is called before each wait.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except PacsError as exc:
            if not exc.retryable or attempt == attempts:
                if attempt > 1:
                    exc.args = (f"{exc.args[0]} (after {attempt} attempts)",)
                raise
            delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * (0.75 + 0.5 * random.random())
            LOGGER.warning("%s; retrying in %.1f s (attempt %d of %d)", exc, delay, attempt + 1, attempts)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")
