"""The structured report: its sections (RadLex-coded), drafts saved as the radiologist types, the protocol
section pre-filled from the study's series, and the signed report as a DICOM Comprehensive SR (highdicom); when it
may be signed, and how it is amended: ``signing``.

SR content tree (TID 2000-like): a CONTAINER "Imaging report" (LOINC 18748-4, "Diagnostic imaging report") with one
TEXT item per non-empty section, each named by its RadLex code. SpecificCharacterSet is ISO_IR 192 (UTF-8).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from meshdcm._version import __version__

from .sessions import Person

#: (key, title, RadLex code): the sections of the template, in order (codes as in the RSNA RadReport templates).
SECTIONS = (
    ("clinical", "Clinical information", "RID13166"),
    ("protocol", "Protocol", "RID28482"),
    ("comparison", "Comparison", "RID28483"),
    ("findings", "Findings", "RID28486"),
    ("impression", "Impression", "RID13170"),
)
REPORT_TITLE = Code("18748-4", "LN", "Diagnostic imaging report")
UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
USER_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
SR_SERIES_NUMBER = 990


class ReportError(Exception):
    """A report that cannot be built or saved; the message says why and what to do."""


def sections_from(data: dict) -> dict[str, str]:
    unknown = set(data) - {k for k, _, _ in SECTIONS}
    if unknown:
        raise ReportError(f"unknown report section(s): {', '.join(sorted(unknown))}")
    out = {}
    for key, _, _ in SECTIONS:
        value = data.get(key, "")
        if not isinstance(value, str):
            raise ReportError(f"section {key} must be text")
        if len(value) > 64_000:
            raise ReportError(f"section {key} is longer than 64,000 characters")
        out[key] = value
    return out


#: Modalities that are documents about the images, not images acquired: never in the protocol section.
DOCUMENT_MODALITIES = frozenset({"SR", "KO", "PR", "DOC"})


def protocol_text(series: list[dict]) -> str:
    """One line per original series, in series-number order: what was acquired (reports and other documents
    about the images are not)."""
    lines = []
    for s in series:
        if s.get("derived") or s.get("modality") in DOCUMENT_MODALITIES:
            continue
        count = s.get("arrived") or s.get("expected") or 0
        lines.append(f"{s.get('modality') or '?'} #{s.get('number') or '?'} {s.get('description') or ''}"
                     f" ({count} images)".replace("  ", " "))
    derived = [s for s in series if s.get("derived")]
    if derived:
        lines.append("Post-processing: " + ", ".join(f"{s.get('description')} ({s.get('node') or '?'})"
                                                      for s in derived))
    return "\n".join(lines)


class Drafts:
    """Drafts as JSON files, one per user and study, written atomically (a reload or a restart finds them)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def _path(self, user: str, study_uid: str) -> Path:
        if not USER_RE.match(user) or not UID_RE.match(study_uid):
            raise ReportError("bad user name or study UID")
        return self.folder / user / f"{study_uid}.json"

    def load(self, user: str, study_uid: str) -> dict | None:
        path = self._path(user, study_uid)
        if not path.exists():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def save(self, user: str, study_uid: str, sections: dict[str, str], *, signed: str | None = None,
             amends: str | None = None, ai_sr: str | None = None) -> dict:
        """Save a draft; ``signed``: the time it was signed; ``amends``: the signed report it is an amendment of;
        ``ai_sr``: the AI result (SR SOP Instance UID) whose findings the radiologist accepted into it."""
        path = self._path(user, study_uid)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"sections": sections, "saved": datetime.now().astimezone().isoformat(timespec="seconds"),
                  "signed": signed, "amends": amends, "ai_sr": ai_sr}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh, ensure_ascii=False)
        os.replace(tmp, path)
        return record


#: The content item that names the AI result a report used: "Source of Measurement" (DCM 121112), a COMPOSITE
#: reference to the measurement SR whose findings the radiologist accepted.
AI_SOURCE = Code("121112", "DCM", "Source of Measurement")


def build_sr(evidence: Dataset, sections: dict[str, str], signer: Person, *,
             predecessor: Dataset | None = None, ai_sr: Dataset | None = None) -> Dataset:
    """The signed report as a Comprehensive SR in the study of ``evidence`` (one instance header of it), verified by
    ``signer`` (their full name, a DICOM PN, and organisation); an amendment names the report it corrects
    (``predecessor``) in its Predecessor Documents Sequence. ``ai_sr``: the AI measurement SR whose findings the
    radiologist accepted; the report then references it in its evidence (Current Requested Procedure Evidence
    Sequence when it is of the same study, else Pertinent Other Evidence Sequence) and in its content tree (a
    COMPOSITE "Source of Measurement" item)."""
    items = []
    for key, title, code in SECTIONS:
        value = sections.get(key, "").strip()
        if value:
            items.append(hd.sr.TextContentItem(name=Code(code, "RADLEX", title), value=value,
                                               relationship_type="CONTAINS"))
    if not items:
        raise ReportError("the report is empty; write at least the findings or the impression")
    if ai_sr is not None:
        items.append(hd.sr.CompositeContentItem(
            name=AI_SOURCE, referenced_sop_class_uid=str(ai_sr.SOPClassUID),
            referenced_sop_instance_uid=str(ai_sr.SOPInstanceUID), relationship_type="CONTAINS"))
    root = hd.sr.ContainerContentItem(name=REPORT_TITLE, template_id="2000")
    root.ContentSequence = items
    observer = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept("121006", "DCM", "Person"),
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=signer.full_name))
    root.ContentSequence.extend(observer)
    sr = hd.sr.ComprehensiveSR(
        evidence=[evidence] + ([ai_sr] if ai_sr is not None else []), content=root, series_instance_uid=generate_uid(), series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="meshdcm", is_complete=True,
        is_final=True, is_verified=True, verifying_observer_name=signer.full_name,
        verifying_organization=signer.organisation, institution_name=str(evidence.get("InstitutionName", "")) or None,
        previous_versions=[predecessor] if predecessor is not None else None)
    sr.SpecificCharacterSet = "ISO_IR 192"
    sr.SeriesDescription = "Report (amended)" if predecessor is not None else "Report"
    sr.SoftwareVersions = f"meshdcm {__version__}"
    return sr


def report_text(sr: Dataset) -> str:
    """Plain text of a report's TEXT items (``Title: value`` per section)."""
    lines = []
    for item in getattr(sr, "ContentSequence", []):
        if getattr(item, "ValueType", "") == "TEXT":
            lines.append(f"{item.ConceptNameCodeSequence[0].CodeMeaning}: {item.TextValue}")
    return "\n".join(lines)
