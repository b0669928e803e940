"""The core and hypoperfusion masks as a DICOM Segmentation (highdicom; PS3.3 A.51) on the DSC slices' geometry.

BINARY segmentation, one frame per DSC slice and segment (empty frames kept, so that a study without a lesion still
has a complete, valid SEG saying so), referencing the first time point's instances as its source images: the
viewer places it on the DSC series (same Frame of Reference, positions and orientation).  Segments (codes.py):
1 ischaemic core, 2 Tmax > 6 s, 3 Tmax > 10 s, 4 mismatch (Tmax > 6 s minus core); each AUTOMATIC, with the
algorithm's name and version and the thresholds as its parameters.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from ..atomic import replacing
from .codes import CATEGORY, FINDINGS
from .errors import StrokeError
from .rules import ALGORITHM_NAME, ALGORITHM_VERSION, StrokeRules
from .volumes import StrokeMasks

__all__ = ["write_seg", "algorithm_parameters"]

SERIES_NUMBER = 9100


def algorithm_parameters(rules: StrokeRules, core_method: str) -> dict[str, str]:
    """The thresholds the masks were made with, as text (SEG Algorithm Parameters, SR algorithm parameters)."""
    core = (f"ADC < {rules.adc_core:g}e-6 mm2/s" if core_method == "adc"
            else f"rCBF < {rules.rcbf_core:.0%} within Tmax > {rules.tmax_hypoperfusion:g} s")
    return {"core": core, "hypoperfusion": f"Tmax > {rules.tmax_hypoperfusion:g} s",
            "severe": f"Tmax > {rules.tmax_severe:g} s",
            "cleaning": f"components < {rules.min_core_ml:g} ml (core), < {rules.min_tmax_ml:g} ml (Tmax) removed"}


def write_seg(source_images: list[Dataset], masks: StrokeMasks, path: str | Path, *, series_uid: str,
              sop_instance_uid: str, core_method: str, rules: StrokeRules, software_version: str) -> Dataset:
    """Write the SEG of ``masks`` ((Z, Y, X), Z in the order of ``source_images``) to ``path`` and return it."""
    family = codes.cid7162.MorphologicalOperations
    algorithm = hd.AlgorithmIdentificationSequence(name=ALGORITHM_NAME, family=family, version=ALGORITHM_VERSION,
                                                   parameters=algorithm_parameters(rules, core_method))
    descriptions, planes = [], []
    for finding in FINDINGS:
        label = finding.label + (" (ADC)" if finding.key == "core" and core_method == "adc" else
                                 " (rCBF)" if finding.key == "core" else "")
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=finding.segment_number, segment_label=label, segmented_property_category=CATEGORY,
            segmented_property_type=finding.type, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm, display_color=hd.color.CIELabColor.from_rgb(*finding.rgb)))
        planes.append(getattr(masks, finding.key))
    pixels = np.stack(planes, axis=-1).astype(np.uint8)  # (Z, Y, X, segments)
    if pixels.shape[0] != len(source_images):
        raise StrokeError(f"{pixels.shape[0]} mask slices for {len(source_images)} source images")
    try:
        seg = hd.seg.Segmentation(
            source_images=source_images, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions, series_instance_uid=series_uid, series_number=SERIES_NUMBER,
            sop_instance_uid=sop_instance_uid, instance_number=1, manufacturer="meshdcm",
            manufacturer_model_name=ALGORITHM_NAME, software_versions=software_version, device_serial_number="0",
            omit_empty_frames=False, series_description="Stroke core and hypoperfusion (meshdcm)",
            content_label="STROKE", content_description=f"Ischaemic core ({core_method}) and Tmax > 6 s / 10 s")
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise StrokeError(f"the stroke SEG of series {source_images[0].get('SeriesInstanceUID', '?')} could not be "
                          f"built: {exc}") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        seg.save_as(tmp)
    return seg
