"""Acute stroke perfusion analysis: ischaemic core, hypoperfusion (Tmax > 6 s, > 10 s), mismatch and the DEFUSE-3
imaging criteria from DSC perfusion maps (and an ADC map when there is one); the results as a DICOM SEG, a TID 1500
SR measurement report and an RGB summary image; and the findings/impression text a report editor takes over.

Mesh-independent; :func:`meshdcm.perfusion.analyse_series` calls it at its end (``"stroke"`` in perfusion.json) and
the perfusion node announces its DICOM objects.  See docs/stroke.md for the rules and their references.

Names are loaded from their modules when first used: the analysis needs the imaging extras (SciPy, highdicom,
Pillow), which the perfusion maps do not, so that importing :mod:`meshdcm.stroke.hook` costs the perfusion
pipeline nothing when they are missing.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "ADC_FILTER": "adc", "ADCMap": "adc", "load_adc": "adc",
    "analyse_dsc": "analysis", "output_uids": "analysis",
    "ADCError": "errors", "StrokeError": "errors",
    "announcements": "hook", "stroke_object": "hook",
    "LESIONS": "phantom", "StrokePhantom": "phantom", "StrokePhantomSpec": "phantom", "make_stroke_phantom": "phantom",
    "write_stroke_phantom": "phantom",
    "StrokeReportText": "report", "report_text": "report",
    "ALGORITHM_NAME": "rules", "ALGORITHM_VERSION": "rules", "DEFAULT_RULES": "rules", "StrokeRules": "rules",
    "StrokeMasks": "volumes", "StrokeResult": "volumes", "analyse_stroke": "volumes", "defuse3": "volumes",
    "remove_small_components": "volumes", "voxel_volume_ml": "volumes",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'meshdcm.stroke' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
