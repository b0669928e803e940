"""Shared fixtures for the perfusion tests: digital phantoms written as real DICOM DSC series.

``phantom``: the block layout (104 CBF/CBV/MTT/delay regions; correlations, delay sensitivity).
``brain_phantom``: the brain-like layout (GM/WM with known values, a delayed region, partial-volume AIF voxels,
a sinus; absolute values, tissue classes).
"""

from __future__ import annotations

import pytest

from meshdcm.perfusion import BrainPhantomSpec, PhantomSpec, make_brain_phantom, make_phantom, write_phantom_dicom


@pytest.fixture(scope="session")
def phantom():
    return make_phantom(PhantomSpec(seed=3))


@pytest.fixture(scope="session")
def phantom_dir(phantom, tmp_path_factory):
    d = tmp_path_factory.mktemp("dsc_phantom")
    write_phantom_dicom(phantom, d)
    return d


@pytest.fixture(scope="session")
def brain_phantom():
    return make_brain_phantom(BrainPhantomSpec(seed=5))


@pytest.fixture(scope="session")
def brain_dir(brain_phantom, tmp_path_factory):
    d = tmp_path_factory.mktemp("dsc_brain_phantom")
    write_phantom_dicom(brain_phantom, d)
    return d


@pytest.fixture(scope="session")
def brain_result(brain_dir, tmp_path_factory):
    """The brain phantom analysed end to end (DICOM in, automatic AIF, VOF correction, all outputs written)."""
    from meshdcm.perfusion import analyse_series

    out = tmp_path_factory.mktemp("brain_out")
    return analyse_series(brain_dir, out, method="osvd", xp="numpy"), out
