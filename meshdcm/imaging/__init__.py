"""Image conversion, derived-series writing, registration and reformatting for meshdcm nodes.

Mesh-independent: every function takes paths or pydicom datasets and returns plain results, so a node wraps
it in a few lines.  See docs/imaging.md.
"""

from .errors import ImagingError, NiftiError, RegistrationError, SeriesError
from .derived import nifti_to_series, write_derived_series
from .nifti import NiftiResult, series_to_nifti
from .provenance import DEFAULT_FILTER, Provenance, is_own_output, produced_by
from .reformat import reformat_series
from .register import RegistrationResult, register_series, register_study
from .series import SeriesVolume, load_series

__all__ = [
    "DEFAULT_FILTER",
    "ImagingError",
    "NiftiError",
    "NiftiResult",
    "Provenance",
    "RegistrationError",
    "RegistrationResult",
    "SeriesError",
    "SeriesVolume",
    "is_own_output",
    "load_series",
    "nifti_to_series",
    "produced_by",
    "reformat_series",
    "register_series",
    "register_study",
    "series_to_nifti",
    "write_derived_series",
]
