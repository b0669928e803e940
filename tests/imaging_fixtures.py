"""Shared helpers for the imaging tests: synthetic series on disk, dcm2niix runs, layout-independent comparison."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from meshdcm.imaging import testdata


def dcm2niix_binary() -> str:
    exe = shutil.which("dcm2niix") or ("/usr/bin/dcm2niix" if Path("/usr/bin/dcm2niix").exists() else None)
    if exe is None:
        pytest.skip("dcm2niix is not installed (pip install dcm2niix)")
    return exe


def run_dcm2niix(series_dir: Path, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([dcm2niix_binary(), "-z", "n", "-f", "%s_%d", "-o", str(out_dir), str(series_dir)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return sorted(out_dir.glob("*.nii"))


def reorient_like(img: nib.Nifti1Image, target: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    """``img``'s unscaled data and affine, flipped/permuted (losslessly) into ``target``'s voxel axes."""
    transform = ornt_transform(io_orientation(img.affine), io_orientation(target.affine))
    data = apply_orientation(np.asarray(img.dataobj.get_unscaled()), transform)
    affine = img.affine @ inv_ornt_aff(transform, img.shape)
    return data, affine


def assert_same_image(ours: Path, theirs: Path, *, atol_mm: float = 1e-3, value_atol: float = 0.0):
    a, b = nib.load(ours), nib.load(theirs)
    data, affine = reorient_like(a, b)
    ref = np.asarray(b.dataobj.get_unscaled())
    assert data.shape == ref.shape, f"{ours.name}: shape {data.shape} vs dcm2niix {ref.shape}"
    np.testing.assert_allclose(affine, b.affine, atol=atol_mm, err_msg=f"{ours.name}: affine differs from dcm2niix")
    sa, ia = a.dataobj.slope, a.dataobj.inter
    sb, ib = b.dataobj.slope, b.dataobj.inter
    np.testing.assert_allclose([sa, ia], [sb, ib], rtol=1e-6, err_msg=f"{ours.name}: rescale differs")
    if value_atol == 0.0:
        assert data.dtype == ref.dtype, f"{ours.name}: dtype {data.dtype} vs dcm2niix {ref.dtype}"
        assert np.array_equal(data, ref), f"{ours.name}: voxel values differ from dcm2niix"
    else:
        np.testing.assert_allclose(data.astype(float), ref.astype(float), atol=value_atol)


@pytest.fixture(scope="session")
def synthetic_series(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("series")
    out = {}
    for kind in testdata.KINDS:
        testdata.write_series(root / kind, kind)
        out[kind] = root / kind
    return out


class NetnsOrthanc:
    """A real Orthanc inside a network namespace this fixture creates (only its own loopback exists there).

    Every request runs inside the namespace through ``ip netns exec`` with curl / DCMTK, argument lists only.
    """

    def __init__(self, workdir: Path):
        import json as _json
        import os
        import uuid

        if os.geteuid() != 0 or shutil.which("ip") is None:
            pytest.skip("network namespaces need root and iproute2")
        if not Path("/usr/sbin/Orthanc").exists() or shutil.which("curl") is None:
            pytest.skip("Orthanc (/usr/sbin/Orthanc) and curl are needed")
        self.ns = f"mdcmimg{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", self.ns], check=True, capture_output=True)
        subprocess.run(["ip", "-n", self.ns, "link", "set", "lo", "up"], check=True, capture_output=True)
        storage = workdir / "orthanc-db"
        storage.mkdir(parents=True, exist_ok=True)
        config = workdir / "orthanc.json"
        config.write_text(_json.dumps({
            "Name": "MESHDCMTEST", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
            "HttpPort": 8042, "DicomPort": 4242, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "Plugins": [], "DicomCheckCalledAet": False,
        }))
        self.log = open(workdir / "orthanc.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, "/usr/sbin/Orthanc", str(config)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        import time

        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited early; see {workdir / 'orthanc.log'}")
            r = self.curl("/system", check=False)
            if r.returncode == 0 and r.stdout.strip().startswith("{"):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("Orthanc did not answer within 30 s")

    def curl(self, path: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns, "curl", "-sf", *extra, f"http://127.0.0.1:8042{path}"],
                              capture_output=True, text=True, check=check, timeout=30)

    def upload(self, path: Path) -> dict:
        import json as _json

        r = self.curl("/instances", "-X", "POST", "--data-binary", f"@{path}")
        return _json.loads(r.stdout)

    def get(self, path: str):
        import json as _json

        return _json.loads(self.curl(path).stdout)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    server = NetnsOrthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        yield server
    finally:
        server.close()
