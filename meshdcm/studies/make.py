"""Make a study set: every patient's studies, series by series, with their ground truth, into one folder.

Layout::

    manifest.json                       what was made (read it with :class:`meshdcm.studies.StudySet`)
    <patient>/<study>/<series>/IM00001.dcm ...
    <patient>/<study>/truth/truth.json, truth/<grid>/*.nii.gz

``manifest.json`` is written last: a folder without it is unfinished.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from contextlib import contextmanager
from pathlib import Path

from pydicom import config as _pydicom_config

from .._version import __version__
from .acquire import ACQUIRE, Session
from .anatomy import build_anatomy
from .headers import SERIES_NUMBERS
from .layout import PATIENTS, STUDIES, uid
from .lesion import lesion_labels, lesion_volumes_ml
from .protocol import variant as variant_spec
from .template import load_template
from .tissues import zone_fields
from .truth import study_truth, write_json
from .vessels import middle_cerebral_artery, sagittal_sinus, vessel_field

__all__ = ["MANIFEST", "make_studies"]

log = logging.getLogger("meshdcm.studies")
MANIFEST = "manifest.json"


@contextmanager
def _valid_dicom_only():
    """pydicom raises on a value its VR does not allow while the studies are written (they are test fixtures)."""
    before = _pydicom_config.settings.writing_validation_mode
    _pydicom_config.settings.writing_validation_mode = _pydicom_config.RAISE
    try:
        yield
    finally:
        _pydicom_config.settings.writing_validation_mode = before


def make_studies(out: str | Path, variant: str = "full") -> dict:
    """Make the study set of ``variant`` (``full`` or ``small``) in the folder ``out`` and return its manifest.

    Deterministic: the same UIDs and pixels on every run. Takes about 1.5 min for ``full`` (3,194 instances,
    264 MB) and 10 s for ``small`` on a loaded 2-core machine (docs/studies.md).
    """
    with _valid_dicom_only():
        return _make(Path(out), variant)


def _make(out: Path, variant: str) -> dict:
    started = time.perf_counter()
    spec = variant_spec(variant)
    out.mkdir(parents=True, exist_ok=True)
    anatomy = build_anatomy(load_template(), downsample=spec.downsample)
    vessels = {v.name: vessel_field(v, anatomy) for v in (middle_cerebral_artery("right"),
                                                            middle_cerebral_artery("left"), sagittal_sinus(anatomy))}
    log.info("studies %s: brain template read and tissues built in %.1f s", variant, time.perf_counter() - started)
    manifest = {"format": "meshdcm-studies/1", "variant": variant, "meshdcm": __version__,
                "template": "MNI ICBM152 2009a symmetric, from nilearn (docs/third-party.md)",
                "made": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "studies": []}
    for patient in PATIENTS.values():
        labels = lesion_labels(anatomy) if patient.stroke else None
        zones = zone_fields(anatomy, labels)
        lesion_ml = lesion_volumes_ml(anatomy, labels, patient.scale) if labels is not None else None
        for study in (s for s in STUDIES if s.patient == patient.key):
            folder = out / patient.key / study.key
            session = Session(variant, patient, study, anatomy, anatomy.view(patient.scale, study.pose), zones,
                              vessels, folder)
            entry = {"patient": patient.key, "study": study.key, "folder": f"{patient.key}/{study.key}",
                     "PatientID": patient.id, "PatientName": patient.name, "StudyInstanceUID":
                     uid(variant, patient.key, study.key, "study"), "AccessionNumber": study.accession,
                     "StudyDescription": study.description, "StudyDate": study.date, "Modality": study.modality,
                     "series": []}
            for key in study.series:
                t = time.perf_counter()
                paths = ACQUIRE[key](session, spec.acquisitions[key])
                entry["series"].append({"key": key, "folder": f"{entry['folder']}/{key}",
                                        "SeriesNumber": SERIES_NUMBERS[key],
                                        "SeriesDescription": spec.acquisitions[key].description,
                                        "SeriesInstanceUID": uid(variant, patient.key, study.key, key),
                                        "instances": len(paths)})
                log.info("studies %s: %s %s %s: %d instances in %.1f s", variant, patient.key, study.key, key,
                         len(paths), time.perf_counter() - t)
            study_truth(session, lesion_ml)
            entry["truth"] = f"{entry['folder']}/truth/truth.json"
            manifest["studies"].append(entry)
    manifest["seconds"] = round(time.perf_counter() - started, 1)
    manifest["instances"] = sum(s["instances"] for e in manifest["studies"] for s in e["series"])
    write_json(out / MANIFEST, manifest)
    log.info("studies %s: %d instances made in %.1f s into %s", variant, manifest["instances"], manifest["seconds"],
             out)
    return manifest
