"""Findings and impression text of a stroke analysis, with its provenance: what a report editor inserts.

:func:`report_text` reads either the measurement report SR (a path or a pydicom dataset; parsed with highdicom) or
the ``"stroke"`` object of perfusion.json (or the whole perfusion.json), and gives the same text for both::

    Findings:   MR perfusion (DSC), automated analysis (meshdcm stroke 1.1): ischaemic core (rCBF < 30 %) 45.9 ml;
                hypoperfusion (Tmax > 6 s) 230.4 ml, of which Tmax > 10 s 111.6 ml (hypoperfusion intensity ratio
                0.48); mismatch volume 184.5 ml, mismatch ratio 5.0; left hemisphere.
    Impression: Perfusion-core mismatch in the left hemisphere. DEFUSE-3 imaging criteria met: ... Automated
                result (meshdcm stroke 1.1); to be confirmed by the radiologist.

``provenance`` names the algorithm and version, the SR and SEG (SOP Instance UIDs), the source DSC series, the
core method and, from the JSON, the rules: so that a signed report can say where each number came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from .codes import DEFUSE3, DEFUSE3_ALL, FINDINGS, HIR, MISMATCH_RATIO, VOLUME
from .errors import StrokeError
from .rules import ALGORITHM_NAME, ALGORITHM_VERSION, DEFAULT_RULES
from .volumes import defuse3

__all__ = ["StrokeReportText", "report_text"]


@dataclass(frozen=True)
class StrokeReportText:
    findings: str
    impression: str
    provenance: dict = field(default_factory=dict)
    #: the numbers the text was made of: core_ml, tmax6_ml, tmax10_ml, mismatch_ml, mismatch_ratio, hir, side,
    #: core_method and defuse3 (core_lt_70ml, mismatch_ratio_ge_1_8, mismatch_ge_15ml, all_met): what a page shows
    values: dict = field(default_factory=dict)


def _num(value: float | None, digits: int = 1) -> str:
    return "undefined" if value is None else f"{value:.{digits}f}"


def _compose(v: dict, provenance: dict) -> StrokeReportText:
    algorithm = f"{provenance.get('algorithm', ALGORITHM_NAME)} {provenance.get('algorithm_version', ALGORITHM_VERSION)}"
    method = v.get("core_method")
    core_rule = {"adc": "ADC < 620 x10^-6 mm2/s", "rcbf": "rCBF < 30 %"}.get(method, "core")
    side = v.get("side")
    where = f"{side} hemisphere" if side in ("left", "right") else "both hemispheres" if side == "bilateral" else ""
    findings = (f"MR perfusion (DSC), automated analysis ({algorithm}): ischaemic core ({core_rule}) "
                f"{_num(v['core_ml'])} ml; hypoperfusion (Tmax > 6 s) {_num(v['tmax6_ml'])} ml, of which Tmax > 10 s "
                f"{_num(v['tmax10_ml'])} ml (hypoperfusion intensity ratio {_num(v.get('hir'), 2)}); mismatch volume "
                f"{_num(v['mismatch_ml'])} ml, mismatch ratio {_num(v.get('mismatch_ratio'))}"
                + (f"; {where}." if where else "."))
    d3 = v.get("defuse3") or defuse3(v["core_ml"], v["tmax6_ml"], DEFAULT_RULES)
    if v["tmax6_ml"] <= 0 and v["core_ml"] <= 0:
        lead = ("No hypoperfusion (Tmax > 6 s, clusters of 5 ml or more) and no ischaemic core (clusters of 1 ml or "
                "more) detected.")
    elif v["mismatch_ml"] > 0 and d3.get("mismatch_ratio_ge_1_8"):
        lead = f"Perfusion-core mismatch{' in the ' + where if where else ''}."
    else:
        lead = f"Ischaemic core with little or no mismatch{' in the ' + where if where else ''}."
    statement = d3.get("statement") or ""
    if not statement:  # from the SR: the criteria as coded there
        said = "met" if d3.get("all_met") else "not met"
        statement = (f"DEFUSE-3 imaging criteria {said} (core < 70 ml: {_yes(d3.get('core_lt_70ml'))}; mismatch "
                     f"ratio >= 1.8: {_yes(d3.get('mismatch_ratio_ge_1_8'))}; mismatch volume >= 15 ml: "
                     f"{_yes(d3.get('mismatch_ge_15ml'))}). Clinical criteria are not assessed.")
    warnings = v.get("warnings") or []
    caution = (" Caution: " + " ".join(w.rstrip(".") + "." for w in warnings)) if warnings else ""
    impression = f"{lead} {statement}{caution} Automated result ({algorithm}); to be confirmed by the radiologist."
    numbers = {k: v.get(k) for k in ("core_ml", "tmax6_ml", "tmax10_ml", "mismatch_ml", "mismatch_ratio", "hir",
                                     "side", "core_method")}
    numbers["defuse3"] = {k: bool(d3.get(k)) for k in ("core_lt_70ml", "mismatch_ratio_ge_1_8", "mismatch_ge_15ml",
                                                       "all_met")}
    return StrokeReportText(findings, impression, provenance, numbers)


def _yes(value) -> str:
    return "yes" if value else "no"


def _from_dict(doc: dict) -> StrokeReportText:
    stroke = doc.get("stroke", doc) if isinstance(doc.get("stroke"), dict) else doc
    if "error" in stroke:
        raise StrokeError(f"the stroke analysis was not done: {stroke['error']}")
    missing = [k for k in ("core_ml", "tmax6_ml", "tmax10_ml", "mismatch_ml") if k not in stroke]
    if missing:
        raise StrokeError(f"not a stroke result: {', '.join(missing)} missing; give perfusion.json or its 'stroke'")
    outputs = stroke.get("outputs") or {}
    provenance = {"algorithm": ALGORITHM_NAME, "algorithm_version": ALGORITHM_VERSION, "source": "perfusion.json",
                  "core_method": stroke.get("core_method"),
                  "sr_sop_instance_uid": (outputs.get("sr") or {}).get("sop_instance_uid"),
                  "seg_sop_instance_uid": (outputs.get("seg") or {}).get("sop_instance_uid"),
                  "source_series_uid": doc.get("source_series_uid"), "study_uid": doc.get("study_uid"),
                  "adc_series_uid": (stroke.get("reference") or {}).get("adc_series_uid"),
                  "rules": stroke.get("rules")}
    return _compose(stroke, provenance)


def _text_items(group, concept: str) -> list[str]:
    """The TEXT children of a measurement group's container named by DCM code ``concept``."""
    items = group[0].get("ContentSequence", []) if len(group) else []
    return [str(i.TextValue) for i in items if i.get("ValueType") == "TEXT"
            and i.ConceptNameCodeSequence[0].CodeValue == concept]


def _from_sr(ds: Dataset) -> StrokeReportText:
    import highdicom as hd

    try:
        sr = hd.sr.Comprehensive3DSR.from_dataset(ds, copy=True)
        groups = sr.content.get_volumetric_roi_measurement_groups()
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise StrokeError(f"SR {ds.get('SOPInstanceUID', '?')} is not a TID 1500 measurement report: {exc}") from exc
    keys = {(f.type.value, f.type.scheme_designator): f.key for f in FINDINGS}
    values: dict = {"defuse3": {}}
    seg_uid = source_series = None
    names, versions = [], []
    for g in groups:
        key = keys.get((g.finding_type.value, g.finding_type.scheme_designator)) if g.finding_type else None
        if key is None:
            continue
        for m in g.get_measurements():
            if m.name.value == VOLUME.value:
                values[f"{key}_ml"] = float(m.value)
            elif m.name.value == HIR.value:
                values["hir"] = float(m.value)
            elif m.name.value == MISMATCH_RATIO.value:
                values["mismatch_ratio"] = float(m.value)
        for q in g.get_qualitative_evaluations():
            for d3key, code in (*DEFUSE3.items(), ("all_met", DEFUSE3_ALL)):
                if q.name.value == code.value:
                    values["defuse3"][d3key] = q.value.value == "373066001"  # SCT Yes
        if key == "core":
            names += _text_items(g, "111001")  # Algorithm Name
            versions += _text_items(g, "111003")  # Algorithm Version
            label = g.tracking_identifier or ""
            for site in g.finding_sites:
                lat = getattr(site, "laterality", None)
                if lat is not None:
                    values["side"] = str(lat.meaning).lower()
            params = " ".join(_text_items(g, "111002"))  # Algorithm Parameters
            values["core_method"] = "adc" if "ADC" in params or "(ADC)" in label else "rcbf"
        if g.referenced_segment is not None:
            seg_uid = g.referenced_segment.referenced_sop_instance_uid
            src = g.referenced_segment.source_series_for_segmentation
            source_series = src.value if src is not None else source_series
    missing = [k for k in ("core_ml", "tmax6_ml", "tmax10_ml", "mismatch_ml") if k not in values]
    if missing:
        raise StrokeError(f"SR {ds.get('SOPInstanceUID', '?')} holds no {', '.join(missing)}: not a meshdcm stroke "
                          "report")
    values.setdefault("mismatch_ratio", None)
    values.setdefault("hir", None)
    computed = defuse3(values["core_ml"], values["tmax6_ml"], DEFAULT_RULES)
    if all(values["defuse3"].get(k) == computed[k] for k in (*DEFUSE3, "all_met")):
        values["defuse3"] = computed  # the coded criteria are DEFUSE-3's: the same statement as from the JSON
    provenance = {"algorithm": names[0] if names else ALGORITHM_NAME,
                  "algorithm_version": versions[0] if versions else "unknown", "source": "SR",
                  "core_method": values.get("core_method"), "sr_sop_instance_uid": str(ds.SOPInstanceUID),
                  "seg_sop_instance_uid": seg_uid, "source_series_uid": source_series,
                  "study_uid": str(ds.get("StudyInstanceUID", "")) or None}
    return _compose(values, provenance)


def report_text(source: Dataset | str | Path | dict) -> StrokeReportText:
    """Findings, impression and provenance from the stroke SR (dataset or file) or from perfusion.json (dict, or a
    path ending in .json)."""
    if isinstance(source, dict):
        return _from_dict(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.suffix.lower() == ".json":
            import json

            return _from_dict(json.loads(path.read_text()))
        from pydicom import dcmread

        source = dcmread(path)
    if not isinstance(source, Dataset):
        raise StrokeError(f"report_text takes an SR dataset or path, or the perfusion.json dict (got {type(source)})")
    return _from_sr(source)
