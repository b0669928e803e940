"""Image conversion, derived-series writing, registration and reformatting for meshdcm nodes.

Mesh-independent: every function takes paths or pydicom datasets and returns plain results, so a node wraps
it in a few lines.  See docs/imaging.md.
"""

from .errors import ImagingError, NiftiError, RegistrationError, SeriesError
from .derived import nifti_to_series, write_derived_series
from .nifti import NiftiResult, series_to_nifti
from .series import SeriesVolume, load_series

__all__ = [
    "ImagingError",
    "NiftiError",
    "NiftiResult",
    "RegistrationError",
    "SeriesError",
    "SeriesVolume",
    "load_series",
    "nifti_to_series",
    "series_to_nifti",
    "write_derived_series",
]
