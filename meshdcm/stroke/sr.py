"""The stroke volumes as a DICOM SR measurement report (TID 1500, Comprehensive 3D SR; highdicom).

Content tree::

    Imaging Measurement Report (TID 1500)
    ├── observer: device "meshdcm stroke" (its UID derives from the algorithm's name and version)
    ├── procedure reported: DCM 126303 "Perfusion analysis by Susceptibility MR technique"
    └── Imaging Measurements
        ├── group (TID 1411) "Ischaemic core"       -> SEG segment 1; Volume [ml]
        ├── group "Hypoperfusion Tmax > 6 s"        -> SEG segment 2; Volume [ml]
        ├── group "Severe hypoperfusion Tmax > 10 s" -> SEG segment 3; Volume [ml], hypoperfusion intensity ratio
        └── group "Mismatch"                        -> SEG segment 4; Volume [ml] (Tmax>6 - core), mismatch ratio,
                                                       DEFUSE-3 criteria (qualitative: Yes/No)

Each group names its finding type (codes.py), its tracking identifier (the finding's name, and a UID derived from
the SR's), the algorithm (TID 4019: name, version, the thresholds as parameters), the finding site (cerebral
hemisphere, with laterality when the lesion is on one side), and the segment it measures (ReferencedSegment with
the DSC series as SourceSeriesForSegmentation).  The SEG is the evidence.  Volumes are in UCUM ``ml``.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from ..atomic import replacing
from ._uid import stable_uid
from .codes import DEFUSE3, DEFUSE3_ALL, FINDINGS, HIR, MISMATCH_RATIO, ML, PROCEDURE, RATIO, VOLUME
from .errors import StrokeError
from .rules import ALGORITHM_NAME, ALGORITHM_VERSION
from .seg import algorithm_parameters
from .volumes import StrokeResult

__all__ = ["write_sr", "SERIES_NUMBER"]

SERIES_NUMBER = 9101
_SIDE = {"left": codes.SCT.Left, "right": codes.SCT.Right}


def _yes_no(value: bool):
    return codes.SCT.Yes if value else codes.SCT.No


def _group(finding, result: StrokeResult, algorithm, site, seg: Dataset, source_series_uid: str, sr_uid: str):
    """One TID 1411 group: the finding's volume (and its ratios, and the DEFUSE-3 criteria for the mismatch)."""
    volume = {"core": result.core_ml, "tmax6": result.tmax6_ml, "tmax10": result.tmax10_ml,
              "mismatch": result.mismatch_ml}[finding.key]
    measurements = [hd.sr.Measurement(name=VOLUME, value=volume, unit=ML)]
    evaluations = None
    if finding.key == "tmax10" and result.hir is not None:
        measurements.append(hd.sr.Measurement(name=HIR, value=result.hir, unit=RATIO))
    if finding.key == "mismatch":
        if result.mismatch_ratio is not None:
            measurements.append(hd.sr.Measurement(name=MISMATCH_RATIO, value=result.mismatch_ratio, unit=RATIO))
        evaluations = [hd.sr.QualitativeEvaluation(name=code, value=_yes_no(result.defuse3[key]))
                       for key, code in DEFUSE3.items()]
        evaluations.append(hd.sr.QualitativeEvaluation(name=DEFUSE3_ALL, value=_yes_no(result.defuse3["all_met"])))
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=stable_uid(sr_uid, finding.key), identifier=finding.label),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=finding.segment_number,
            source_series=hd.sr.SourceSeriesForSegmentation(source_series_uid)),
        finding_type=finding.type, algorithm_id=algorithm, finding_sites=[site], measurements=measurements,
        qualitative_evaluations=evaluations)


def write_sr(seg: Dataset, result: StrokeResult, source_series_uid: str, path: str | Path, *, series_uid: str,
             sop_instance_uid: str, supersedes: Dataset | None = None) -> Dataset:
    """Write the measurement report of ``result`` (whose masks ``seg`` holds) to ``path`` and return it.

    ``supersedes``: the earlier report of the same DSC series this one replaces (the rCBF core's, when the study's
    ADC series came after it): named in the Predecessor Documents Sequence."""
    params = algorithm_parameters(result.rules, result.core_method)
    algorithm = hd.sr.AlgorithmIdentification(name=ALGORITHM_NAME, version=ALGORITHM_VERSION,
                                              parameters=[f"{k}: {v}" for k, v in params.items()])
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=stable_uid("device", ALGORITHM_NAME, ALGORITHM_VERSION), name=ALGORITHM_NAME,
        manufacturer_name="meshdcm", model_name=ALGORITHM_NAME)
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))
    site = hd.sr.FindingSite(anatomic_location=codes.SCT.CerebralHemisphere, laterality=_SIDE.get(result.side))
    try:
        groups = [_group(finding, result, algorithm, site, seg, source_series_uid, sop_instance_uid)
                  for finding in FINDINGS]
        report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=PROCEDURE,
                                         imaging_measurements=groups)
        sr = hd.sr.Comprehensive3DSR(
            evidence=[seg], content=report[0], series_instance_uid=series_uid, series_number=SERIES_NUMBER,
            sop_instance_uid=sop_instance_uid, instance_number=1, manufacturer="meshdcm", is_complete=True,
            is_final=False, is_verified=False, series_description="Stroke perfusion measurements (meshdcm)",
            previous_versions=None if supersedes is None else [supersedes])
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise StrokeError(f"the stroke SR of series {source_series_uid} could not be built: {exc}") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        sr.save_as(tmp)
    return sr
