"""Realistic neuroradiology studies made from a real brain, with their ground truth (docs/studies.md).

An acute stroke patient (non-contrast CT; MR with 3D T1, T2, FLAIR, diffusion, ADC and DSC perfusion; a left
middle cerebral artery core and penumbra of known volume and perfusion) and a patient without a lesion, made from the
MNI ICBM152 template at clinical matrix sizes, with the true tissue classes, lesion masks and perfusion maps saved
beside the studies::

    from meshdcm.studies import StudySet, studies_folder

    studies = StudySet(studies_folder("full"))        # made once (about 1.5 min), then cached
    dsc = studies.series("stroke", "mr", "dsc")       # a folder of DICOM files
    truth = studies.truth("stroke", "mr")             # truth.json: volumes, per-tissue values, grids
    truth["lesion"]["volumes_ml"]["core"]

``small`` is the same set with coarse matrices for fast tests. ``meshdcm studies make`` makes a set from the
command line. The brain template comes from the nilearn wheel (``pip install --no-deps nilearn==0.14.1``).
"""

from __future__ import annotations

from .cache import cache_root, studies_folder
from .errors import StudiesError
from .make import make_studies
from .protocol import VARIANTS
from .studyset import StudySet
from .template import INSTALL_HINT

__all__ = ["INSTALL_HINT", "VARIANTS", "StudiesError", "StudySet", "cache_root", "make_studies", "studies_folder"]
