"""DSC-MRI perfusion: CBV, CBF, MTT, Tmax and TTP maps by sSVD, cSVD or oSVD, NumPy or CuPy.

Mesh-independent library; a node calls :func:`analyse_series`.  See docs/perfusion.md.
"""

from .aif import AIF, manual_aif, select_aif
from .concentration import brain_mask, detect_baseline, signal_to_concentration
from .deconvolution import METHODS, Deconvolution, deconvolve
from .derived import derived_series_uid
from .errors import AIFSelectionError, NotDSCSeriesError, PerfusionError
from .leakage import boxerman_correction
from .maps import DISPLAY_RANGES, MAP_NAMES, PerfusionMaps, compute_maps
from .phantom import BrainPhantomSpec, Phantom, PhantomSpec, make_brain_phantom, make_phantom, write_phantom_dicom
from .pipeline import MapOutput, PerfusionResult, analyse_loaded, analyse_series
from .series import DSC_FILTER, DSCSeries, is_dsc_series, load_dsc_series
from .tissue import TissueClasses, classify_tissue, normalise_to_nawm, tissue_summary
from .vof import VOF, PartialVolumeCorrection, correct_aif, select_vof

__all__ = [
    "AIF", "AIFSelectionError", "BrainPhantomSpec", "DISPLAY_RANGES", "DSCSeries", "DSC_FILTER", "Deconvolution",
    "MAP_NAMES", "METHODS", "MapOutput", "NotDSCSeriesError", "PartialVolumeCorrection", "PerfusionError",
    "PerfusionMaps", "PerfusionResult", "Phantom", "PhantomSpec", "TissueClasses", "VOF", "analyse_loaded",
    "analyse_series", "boxerman_correction", "brain_mask", "classify_tissue", "compute_maps", "correct_aif",
    "deconvolve", "derived_series_uid", "detect_baseline", "is_dsc_series", "load_dsc_series", "make_brain_phantom",
    "make_phantom", "manual_aif", "normalise_to_nawm", "select_aif", "select_vof", "signal_to_concentration",
    "tissue_summary", "write_phantom_dicom",
]
