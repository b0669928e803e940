"""Shared conventions for bench scripts.

Every script under ``bench/`` takes ``--quick`` (finishes in under 60 s), prints its figures readably, and
prints as its *last line* one JSON object with its figures and ratios, which is also written to
``bench/results/<name>.json``.  Timings are medians; ratios compare against the anchor tool measured
in the same run, because these machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes; finishes in under 60 s")
    return p


def median(values) -> float:
    return float(statistics.median(values))


def percentile(values, q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    data = sorted(values)
    if not data:
        return float("nan")
    k = max(0, min(len(data) - 1, int(round(q / 100.0 * (len(data) - 1)))))
    return float(data[k])


def emit(name: str, figures: dict) -> dict:
    """Write ``figures`` to bench/results/<name>.json and print it as the last line."""
    record = {
        "bench": name,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        **figures,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record), flush=True)
    return record
