"""Provenance of derived series: stamp what meshdcm wrote, and recognise it so a node never reprocesses it.

Every instance meshdcm writes carries three marks (any one is enough to recognise it):

1. ``ImageType`` = ``DERIVED\\SECONDARY\\...`` (PS3.3 C.7.6.1.1.2).
2. ``ContributingEquipmentSequence`` (PS3.3 C.7.5.1, General Equipment) with an item whose Manufacturer is
   ``meshdcm``, ManufacturerModelName the node name, SoftwareVersions the node version, and purpose code
   (DCM, 109103, "Modifying Equipment"); ``DerivationDescription`` names the node and what it did.
3. A private block, creator ``MESHDCM`` in group 0x0071 (PS3.5 7.8): node name, node version, and the
   SeriesInstanceUID of the input series.

Detection (:func:`produced_by`) reads the private block first, then the contributing equipment, because
private blocks are dropped by some anonymisers and PACS exports while the standard sequence survives.

Default node input filters (meshdcm filter strings) that skip derived series, ours and others':

* :data:`DEFAULT_FILTER` -- ``Modality in ["MR", "CT"] and not ImageType contains "DERIVED"``
* :data:`REGISTRATION_FILTER` -- the same, except a scanner's ADC map (``ImageType`` ``DERIVED\\PRIMARY\\
  DIFFUSION\\ADC``): it shows the stroke's core, and the radiologist wants it on the reference with the DWI
* :data:`REFORMAT_FILTER` -- ``Modality in ["MR", "CT"] and not ImageType contains "DERIVED"`` too: reformats
  of reformats are never wanted.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

__all__ = [
    "DEFAULT_FILTER",
    "PRIVATE_CREATOR",
    "PRIVATE_GROUP",
    "REFORMAT_FILTER",
    "REGISTRATION_FILTER",
    "Provenance",
    "is_own_output",
    "produced_by",
    "stamp",
]

DEFAULT_FILTER = 'Modality in ["MR", "CT"] and not ImageType contains "DERIVED"'
REGISTRATION_FILTER = ('Modality in ["MR", "CT"] and (not ImageType contains "DERIVED" or '
                       'ImageType contains "ADC")')
REFORMAT_FILTER = DEFAULT_FILTER

PRIVATE_CREATOR = "MESHDCM"
PRIVATE_GROUP = 0x0071
MANUFACTURER = "meshdcm"
_NODE, _VERSION, _SOURCE = 0x00, 0x01, 0x02


@dataclass(frozen=True)
class Provenance:
    """Which meshdcm node wrote an instance, and from which series."""

    node_name: str
    node_version: str
    source_series_uid: str | None


def stamp(ds: Dataset, *, node_name: str, node_version: str, source_series_uid: str | None,
          description: str) -> Dataset:
    """Add the three provenance marks to ``ds`` (in place) and return it."""
    image_type = [str(v) for v in ds.get("ImageType", [])] or ["DERIVED", "SECONDARY"]
    ds.ImageType = ["DERIVED", "SECONDARY", *image_type[2:]]
    ds.DerivationDescription = f"{node_name} {node_version}: {description}"[:1024]
    equipment = Dataset()
    equipment.Manufacturer = MANUFACTURER
    equipment.ManufacturerModelName = node_name[:64]
    equipment.SoftwareVersions = node_version[:64]
    equipment.ContributionDescription = description[:64]
    purpose = Dataset()
    purpose.CodeValue = "109103"
    purpose.CodingSchemeDesignator = "DCM"
    purpose.CodeMeaning = "Modifying Equipment"
    equipment.PurposeOfReferenceCodeSequence = Sequence([purpose])
    items = list(ds.get("ContributingEquipmentSequence", []))
    ds.ContributingEquipmentSequence = Sequence([*items, equipment])
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(_NODE, "LO", node_name[:64])
    block.add_new(_VERSION, "LO", node_version[:64])
    if source_series_uid:
        block.add_new(_SOURCE, "UI", source_series_uid)
    return ds


def produced_by(ds: Dataset) -> Provenance | None:
    """The meshdcm node that wrote ``ds``, or None when meshdcm did not write it."""
    try:
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    except KeyError:
        block = None
    if block is not None and _NODE in block:
        source = block[_SOURCE].value if _SOURCE in block else None
        version = block[_VERSION].value if _VERSION in block else ""
        return Provenance(str(block[_NODE].value), str(version), str(source) if source else None)
    for item in reversed(list(ds.get("ContributingEquipmentSequence", []))):
        if str(item.get("Manufacturer", "")) == MANUFACTURER:
            return Provenance(str(item.get("ManufacturerModelName", "")), str(item.get("SoftwareVersions", "")),
                              None)
    return None


def is_own_output(ds: Dataset, node_name: str | None = None) -> bool:
    """True when meshdcm (and, if given, the node ``node_name``) wrote ``ds``: a node should skip it."""
    prov = produced_by(ds)
    return prov is not None and (node_name is None or prov.node_name == node_name)
