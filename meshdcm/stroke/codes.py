"""The coded concepts of the stroke SEG and SR: one per finding, shared by the writers and the report reader.

Standard codes where one exists (SNOMED CT ``Infarct`` for the core, ``Morphologically abnormal structure`` as the
segment category, ``Volume``, UCUM ``ml``, DCM ``Perfusion analysis by Susceptibility MR technique``); the
threshold-defined regions (Tmax > 6 s, Tmax > 10 s, mismatch) and the DEFUSE-3 criteria have none, so they carry
codes of the private scheme ``99MESHDCM`` (PS3.16 8.2: "99" designators are private), each with a meaning that
says exactly what it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.sr.coding import Code
from pydicom.sr.codedict import codes

__all__ = ["FINDINGS", "Finding", "SCHEME", "ML", "RATIO", "VOLUME", "PROCEDURE", "CATEGORY", "HIR", "MISMATCH_RATIO",
           "DEFUSE3", "DEFUSE3_ALL", "finding_by_code"]

SCHEME = "99MESHDCM"
CATEGORY = codes.SCT.MorphologicallyAbnormalStructure
VOLUME = codes.SCT.Volume
ML = Code("ml", "UCUM", "milliliter")
RATIO = Code("{ratio}", "UCUM", "ratio")
PROCEDURE = codes.DCM.PerfusionAnalysisBySusceptibilityMRTechnique
MISMATCH_RATIO = Code("MISMATCHRATIO", SCHEME, "Mismatch ratio, Tmax > 6 s volume / core volume")
HIR = Code("HIR", SCHEME, "Hypoperfusion intensity ratio, Tmax>10 s / Tmax>6 s volume")
DEFUSE3 = {
    "core_lt_70ml": Code("D3CORE", SCHEME, "DEFUSE-3 criterion: core volume < 70 ml"),
    "mismatch_ratio_ge_1_8": Code("D3RATIO", SCHEME, "DEFUSE-3 criterion: mismatch ratio >= 1.8"),
    "mismatch_ge_15ml": Code("D3MISMATCH", SCHEME, "DEFUSE-3 criterion: mismatch volume >= 15 ml"),
}
DEFUSE3_ALL = Code("D3ALL", SCHEME, "DEFUSE-3 imaging criteria all met")


@dataclass(frozen=True)
class Finding:
    """One region: its key in the result, its segment number, label, coded type and display colour."""

    key: str
    segment_number: int
    label: str
    type: Code
    rgb: tuple[int, int, int]


FINDINGS = (
    Finding("core", 1, "Ischaemic core", Code("55641003", "SCT", "Infarct"), (255, 0, 0)),
    Finding("tmax6", 2, "Hypoperfusion Tmax > 6 s", Code("TMAX6", SCHEME, "Hypoperfused tissue, Tmax > 6 s"),
            (0, 200, 0)),
    Finding("tmax10", 3, "Severe hypoperfusion Tmax > 10 s",
            Code("TMAX10", SCHEME, "Severely hypoperfused tissue, Tmax > 10 s"), (255, 220, 0)),
    Finding("mismatch", 4, "Mismatch (Tmax > 6 s minus core)",
            Code("MISMATCH", SCHEME, "Perfusion-core mismatch tissue, Tmax > 6 s outside the core"), (0, 160, 255)),
)


def finding_by_code(value: str, scheme: str) -> Finding | None:
    for f in FINDINGS:
        if f.type.value == value and f.type.scheme_designator == scheme:
            return f
    return None
