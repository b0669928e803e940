"""Datasets and messages for the index tests: small headers of real shape, an SR report, a derived series."""

from __future__ import annotations

import os
import uuid

from pydicom import config
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from meshdcm import Message

MONGO_ENV = "MESHDCM_TEST_MONGO_URI"
MONGO_SKIP = (f"no MongoDB server: set {MONGO_ENV}=mongodb://HOST:PORT to run the contract suite against one "
              "(none can be installed on the CI machines)")


def mongo_uri() -> str | None:
    return os.environ.get(MONGO_ENV) or None


def header(patient="DOE^JANE", pid="P1", study=None, series=None, sop=None, date="20240102", modality="MR",
           description="T1 MPRAGE", number=1) -> Dataset:
    with config.strict_reading():  # a fixture with a value that is not valid DICOM fails here, not in a test
        return _header(patient, pid, study, series, sop, date, modality, description, number)


def _header(patient, pid, study, series, sop, date, modality, description, number) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = patient
    ds.PatientID = pid
    ds.PatientBirthDate = "19700101"
    ds.StudyInstanceUID = study or generate_uid()
    ds.StudyDate = date
    ds.StudyDescription = "MR brain"
    ds.AccessionNumber = "A" + ds.StudyInstanceUID[-6:]
    ds.SeriesInstanceUID = series or generate_uid()
    ds.SeriesNumber = number
    ds.SeriesDescription = description
    ds.Modality = modality
    ds.SOPInstanceUID = sop or generate_uid()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    return ds


def _code(value, scheme, meaning) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def sr_report(text="No acute infarct.", **kw) -> Dataset:
    """A Basic Text SR (TID 2000 shape): title, a finding (TEXT), a code and a measurement (NUM)."""
    ds = header(modality="SR", description="Report", **kw)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    finding = Dataset()
    finding.RelationshipType, finding.ValueType = "CONTAINS", "TEXT"
    finding.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
    finding.TextValue = text
    code = Dataset()
    code.RelationshipType, code.ValueType = "CONTAINS", "CODE"
    code.ConceptNameCodeSequence = Sequence([_code("121073", "DCM", "Impression")])
    code.ConceptCodeSequence = Sequence([_code("17621005", "SCT", "Normal")])
    num = Dataset()
    num.RelationshipType, num.ValueType = "CONTAINS", "NUM"
    num.ConceptNameCodeSequence = Sequence([_code("410668003", "SCT", "Length")])
    measured = Dataset()
    measured.NumericValue = "12.5"
    measured.MeasurementUnitsCodeSequence = Sequence([_code("mm", "UCUM", "millimeter")])
    num.MeasuredValueSequence = Sequence([measured])
    section = Dataset()
    section.RelationshipType, section.ValueType = "CONTAINS", "CONTAINER"
    section.ConceptNameCodeSequence = Sequence([_code("121070", "DCM", "Findings")])
    section.ContentSequence = Sequence([finding, code, num])
    ds.ContentSequence = Sequence([section])
    return ds


SENDER = uuid.UUID("00000000-0000-0000-0000-0000000000aa").bytes


def message(topic: str, ds: Dataset, meta: dict | None = None, ts: int | None = None) -> Message:
    """A message as a receiving node sees it (parsed from its wire bytes)."""
    msg = Message(topic, ds, meta=meta, sender=SENDER, timestamp_ns=ts)
    return Message.from_bytes(msg.to_bytes())


def query(**keys) -> Dataset:
    """A C-FIND identifier from keyword=value (empty string: a return key)."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    q = Dataset()
    for keyword, value in keys.items():
        q.add_new(tag_for_keyword(keyword), dictionary_VR(tag_for_keyword(keyword)), value if value != "" else None)
    return q
