"""SR reports: recognise a Structured Report and render its content tree as plain text.

The text is what the radiologist reads as a prior report (``got.report`` meta ``text``): one line per content
item, ``Concept name: value``, indented by depth, containers as headings. TEXT, CODE, NUM, DATE, TIME, DATETIME,
PNAME and UIDREF values are rendered; image/waveform/composite references and spatial coordinates are skipped
(they point at other objects, they are not words of the report). Hand-written: highdicom parses SR only into its
template classes (TID 1500 and friends), while prior reports come from any template, so a generic walk of the
ContentSequence (PS3.3 C.17.3) is the smaller, surer code.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

__all__ = ["SR_MODALITY", "is_algorithm_result", "is_report", "report_text"]

SR_MODALITY = "SR"
#: Storage SOP classes of SR documents (PS3.4 B.5): 1.2.840.10008.5.1.4.1.1.88.*
SR_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
#: The root concept of a TID 1500 Imaging Measurement Report (what an analysis such as the stroke node writes).
MEASUREMENT_REPORT = ("126000", "DCM")
MAX_DEPTH = 32  # a content tree deeper than this is malformed or hostile; the rest is not rendered


def is_report(ds: Dataset) -> bool:
    """Whether ``ds`` is an SR document (Modality SR or an SR storage SOP class)."""
    return str(ds.get("Modality", "")) == SR_MODALITY or str(ds.get("SOPClassUID", "")).startswith(SR_CLASS_PREFIX)


def is_algorithm_result(ds: Dataset) -> bool:
    """Whether ``ds`` is an analysis' measurement report that no person verified (an AI result such as the stroke
    volumes, TID 1500, VerificationFlag UNVERIFIED): an SR, but not a prior *report* of a radiologist. Once a person
    verified it, it is one of their reports."""
    seq = ds.get("ConceptNameCodeSequence")
    if not seq:
        return False
    code = (str(seq[0].get("CodeValue", "")), str(seq[0].get("CodingSchemeDesignator", "")))
    return code == MEASUREMENT_REPORT and str(ds.get("VerificationFlag", "UNVERIFIED")).upper() != "VERIFIED"


def _concept(item: Dataset) -> str:
    seq = item.get("ConceptNameCodeSequence")
    return str(seq[0].get("CodeMeaning", "")) if seq else ""


def _value(item: Dataset) -> str | None:
    kind = str(item.get("ValueType", ""))
    if kind == "TEXT":
        return str(item.get("TextValue", ""))
    if kind == "CODE":
        seq = item.get("ConceptCodeSequence")
        return str(seq[0].get("CodeMeaning", "")) if seq else ""
    if kind == "NUM":
        seq = item.get("MeasuredValueSequence")
        if not seq:
            return ""
        number = seq[0].get("NumericValue", "")
        units = seq[0].get("MeasurementUnitsCodeSequence")
        unit = str(units[0].get("CodeValue", "") or units[0].get("CodeMeaning", "")) if units else ""
        return f"{number} {unit}".strip() if unit not in ("", "1") else str(number)
    if kind in ("DATE", "TIME", "DATETIME", "PNAME", "UIDREF"):
        keyword = {"DATE": "Date", "TIME": "Time", "DATETIME": "DateTime", "PNAME": "PersonName",
                   "UIDREF": "UID"}[kind]
        return str(item.get(keyword, ""))
    return None


def _walk(items, depth: int, lines: list[str]) -> None:
    if depth > MAX_DEPTH:
        return
    for item in items or ():
        concept = _concept(item)
        indent = "  " * depth
        if str(item.get("ValueType", "")) == "CONTAINER":
            if concept:
                lines.append(f"{indent}{concept}")
            _walk(item.get("ContentSequence"), depth + 1, lines)
            continue
        value = _value(item)
        if value is not None:
            lines.append(f"{indent}{concept}: {value}" if concept else f"{indent}{value}")
        _walk(item.get("ContentSequence"), depth + 1, lines)


def report_text(ds: Dataset) -> str:
    """The report as plain text: the document title, then its content tree (see the module docstring)."""
    lines: list[str] = []
    title = _concept(ds)
    if title:
        lines.append(title)
    _walk(ds.get("ContentSequence"), 1 if title else 0, lines)
    return "\n".join(lines)
