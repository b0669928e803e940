"""A made study set on disk: its manifest, and where each study's series and ground truth are."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .errors import StudiesError
from .make import MANIFEST

__all__ = ["StudySet"]


@dataclass(frozen=True)
class StudySet:
    """The study set in ``root`` (as made by :func:`meshdcm.studies.make_studies`)."""

    root: Path

    @cached_property
    def manifest(self) -> dict:
        path = Path(self.root) / MANIFEST
        if not path.is_file():
            raise StudiesError(f"{self.root} holds no finished study set (no {MANIFEST}); make one with "
                               "meshdcm studies make --out DIR")
        return json.loads(path.read_text())

    @property
    def variant(self) -> str:
        return self.manifest["variant"]

    def study(self, patient: str, study: str) -> dict:
        """The manifest's entry of one study (patient ``stroke`` or ``control``, study ``ct`` or ``mr``)."""
        for entry in self.manifest["studies"]:
            if entry["patient"] == patient and entry["study"] == study:
                return entry
        have = ", ".join(f"{e['patient']}/{e['study']}" for e in self.manifest["studies"])
        raise KeyError(f"no study {patient}/{study} in {self.root} (there are {have})")

    def series(self, patient: str, study: str, key: str) -> Path:
        """The folder of one series (``t1``, ``t2``, ``flair``, ``dwi``, ``adc``, ``dsc``, ``ct_thick``,
        ``ct_thin``)."""
        for entry in self.study(patient, study)["series"]:
            if entry["key"] == key:
                return Path(self.root) / entry["folder"]
        raise KeyError(f"study {patient}/{study} has no series {key!r}")

    def truth(self, patient: str, study: str) -> dict:
        """The study's ``truth.json``; its file paths are relative to :meth:`truth_folder`."""
        return json.loads((self.truth_folder(patient, study) / "truth.json").read_text())

    def truth_folder(self, patient: str, study: str) -> Path:
        return Path(self.root) / self.study(patient, study)["folder"] / "truth"

    def files(self) -> Iterator[Path]:
        """Every DICOM file of the set."""
        for entry in self.manifest["studies"]:
            for series in entry["series"]:
                yield from sorted((Path(self.root) / series["folder"]).glob("*.dcm"))
