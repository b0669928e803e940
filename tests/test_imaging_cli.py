"""The command-line entry points, run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from imaging_fixtures import synthetic_series  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "meshdcm.imaging.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_convert_both_ways_and_reformat(synthetic_series, tmp_path):  # noqa: F811
    r = _cli("convert", "to-nifti", str(synthetic_series["ct"]), str(tmp_path / "nii"))
    assert r.returncode == 0, r.stderr
    nii = json.loads(r.stdout.strip().splitlines()[-1])["paths"][0]
    r = _cli("convert", "to-dicom", nii, str(synthetic_series["ct"]), str(tmp_path / "dcm"))
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout.strip().splitlines()[-1])["paths"]) == 20
    r = _cli("reformat", str(synthetic_series["ct"]), str(tmp_path / "cor"), "--plane", "coronal", "--thickness", "7")
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "cor").iterdir())) == json.loads(r.stdout.strip().splitlines()[-1])["paths"]


def test_bad_input_exits_2_with_a_clear_message(tmp_path):
    r = _cli("convert", "to-nifti", str(tmp_path), str(tmp_path / "out"))
    assert r.returncode == 2
    assert "no DICOM image" in r.stderr and "Traceback" not in r.stderr
