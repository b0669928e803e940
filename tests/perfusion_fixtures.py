"""Shared fixtures for the perfusion tests: one digital phantom written as a real DICOM DSC series."""

from __future__ import annotations

import pytest

from meshdcm.perfusion import PhantomSpec, make_phantom, write_phantom_dicom


@pytest.fixture(scope="session")
def phantom():
    return make_phantom(PhantomSpec(seed=3))


@pytest.fixture(scope="session")
def phantom_dir(phantom, tmp_path_factory):
    d = tmp_path_factory.mktemp("dsc_phantom")
    write_phantom_dicom(phantom, d)
    return d
