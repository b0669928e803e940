"""C-FIND matching (PS3.4 C.2.2.2) of one record against a query identifier, in the subset that matters here.

Single value (case-sensitive; PN case-insensitive), ``*``/``?`` wildcards, UID lists, DA/TM/DT ranges ``a-b``,
``a-``, ``-b``; empty elements are return keys. Used by the embedded PACS (meshdcm.pacs.embedded) and the index
node (meshdcm.index), so that both answer a ``find.*`` the same way. Hand-written because pynetdicom leaves
matching to the application. Needs only pydicom.
"""

from __future__ import annotations

import fnmatch

from pydicom.dataset import Dataset

__all__ = ["COMPUTED_KEYS", "matches"]

# Computed per study/series (matched on the group, not on one header)
COMPUTED_KEYS = {"QueryRetrieveLevel", "SpecificCharacterSet", "ModalitiesInStudy", "SOPClassesInStudy",
                 "NumberOfStudyRelatedInstances", "NumberOfSeriesRelatedInstances", "NumberOfStudyRelatedSeries"}


def matches(header: Dataset, query: Dataset) -> bool:
    """Whether ``header`` matches every non-empty key of ``query`` (PS3.4 C.2.2.2 subset)."""
    for elem in query:
        kw = elem.keyword
        if not kw or kw in COMPUTED_KEYS or elem.VR == "SQ":
            continue
        want = elem.value
        if want in (None, "", b"") or (isinstance(want, (list, tuple)) and not want):
            continue
        have = header[elem.tag] if elem.tag in header else None
        if have is None:
            return False
        have_v = have.value
        if elem.VR == "UI":
            wanted = list(want) if not isinstance(want, str) else str(want).split("\\")
            if str(have_v) not in {str(w) for w in wanted}:
                return False
            continue
        w, h = str(want), str(have_v)
        if elem.VR in ("DA", "TM", "DT") and "-" in w:
            lo, _, hi = w.partition("-")
            if (lo and h < lo) or (hi and h[: len(hi)] > hi):
                return False
            continue
        if elem.VR == "PN":
            w, h = w.upper(), h.upper()
        if "*" in w or "?" in w:
            if not fnmatch.fnmatchcase(h, w.replace("[", "[[]")):
                return False
        elif h != w and not (isinstance(have_v, (list, tuple)) and w in [str(v) for v in have_v]):
            return False
    return True


