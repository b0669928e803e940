"""Who was scanned, when and how the PACS files it: patients, studies, series numbers, descriptions, UIDs.

Two (fictitious) patients of a stroke unit:

* ``stroke``: a 66-year-old man with a left middle cerebral artery occlusion; non-contrast CT at 10:42, then MR with
  the stroke protocol at 10:58 the same day (two studies, two accession numbers, two scanners);
* ``control``: a 53-year-old woman, MR with the same protocol for transient symptoms, no lesion.

UIDs are ``2.25.`` UIDs of name-based UUIDs (PS3.5 B.2) of the variant and the object's place in the layout, so a
study set made twice has the same UIDs, and the small and full variants never share one.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from dataclasses import dataclass

from .geometry import Pose

__all__ = ["PATIENTS", "STUDIES", "PatientSpec", "StudySpec", "patient_age", "uid"]

_NAMESPACE = uuid.UUID("3b0d7f52-86a4-5c1e-9e1f-5a7c2d9b4e61")


def uid(variant: str, *parts) -> str:
    """A stable ``2.25.`` UID for ``parts`` of the layout in ``variant``."""
    name = "/".join(["meshdcm-studies", variant, *map(str, parts)])
    return f"2.25.{uuid.uuid5(_NAMESPACE, name).int}"


@dataclass(frozen=True)
class PatientSpec:
    """A patient: demographics, head size (``scale`` of the template) and whether the stroke is there."""

    key: str
    name: str
    id: str
    birth_date: str
    sex: str
    weight: float
    height: float
    scale: float
    stroke: bool


@dataclass(frozen=True)
class StudySpec:
    """A study as the PACS holds it, and how the head lay in the scanner (``pose``)."""

    key: str
    patient: str
    modality: str
    description: str
    accession: str
    study_id: str
    when: _dt.datetime
    pose: Pose
    series: tuple[str, ...]
    station: str

    @property
    def date(self) -> str:
        return self.when.strftime("%Y%m%d")

    @property
    def time(self) -> str:
        return self.when.strftime("%H%M%S")


PATIENTS = {
    "stroke": PatientSpec("stroke", "MUSTERMANN^MAX", "MESHDCM-1001", "19571123", "M", 84.0, 1.78, 0.92, True),
    "control": PatientSpec("control", "MUSTERMANN^ERIKA", "MESHDCM-1002", "19700305", "F", 66.0, 1.66, 0.90, False),
}

_MR_SERIES = ("t1", "t2", "flair", "dwi", "adc", "dsc")
STUDIES = (
    StudySpec("ct", "stroke", "CT", "CT HEAD WO CONTRAST", "ACC24031407", "5521", _dt.datetime(2024, 3, 14, 10, 42, 13),
              Pose(pitch=11.0, roll=-1.5, yaw=2.0, shift=(1.2, 24.0, -148.0)), ("ct_thick", "ct_thin"), "CT01"),
    StudySpec("mr", "stroke", "MR", "MR HEAD STROKE PROTOCOL", "ACC24031411", "5526",
              _dt.datetime(2024, 3, 14, 10, 58, 40), Pose(pitch=5.0, roll=1.0, yaw=-2.5, shift=(-0.8, 6.0, 12.0)),
              _MR_SERIES, "MR3T01"),
    StudySpec("mr", "control", "MR", "MR HEAD STROKE PROTOCOL", "ACC24020215", "5107",
              _dt.datetime(2024, 2, 2, 9, 15, 5), Pose(pitch=-3.0, roll=-0.5, yaw=1.5, shift=(0.5, 9.0, 8.0)),
              _MR_SERIES, "MR3T01"),
)


def patient_age(patient: PatientSpec, on: _dt.date) -> str:
    """PatientAge (AS) on a study date: ``066Y``."""
    born = _dt.datetime.strptime(patient.birth_date, "%Y%m%d").date()
    years = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    return f"{years:03d}Y"
