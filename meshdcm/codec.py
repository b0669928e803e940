"""DICOM binary bodies: encode a pydicom Dataset once, decode only when asked.

A message body is a DICOM data set in Explicit VR Little Endian, without preamble, without the File Meta
group (0002,xxxx) and without pixel data (docs/protocol.md, "Body").  Encoding is done once, by the
publisher; every hop forwards the bytes unchanged, and a receiver decodes them (here) only when a handler
asks for ``message.dataset``.  Filters read the bytes directly through :mod:`meshdcm.dataview`.
"""

from __future__ import annotations

from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from .dataview import check_body
from .errors import MalformedMessage

__all__ = ["PIXEL_TAGS", "decode", "encode"]

#: Elements never carried on the event path: pixel data and its float/double variants.
PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})


def encode(dataset: Dataset) -> bytes:
    """The body bytes for ``dataset``: Explicit VR Little Endian, no File Meta, no pixel data.

    The dataset is not modified.  Its Specific Character Set is honoured for text values.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"a message body is a pydicom Dataset, got {type(dataset).__name__}")
    # dataset[tag] (not the raw element) so that UN elements of a file get the VR pydicom reads them with
    # (public or private dictionary): the body then means to DataView what the Dataset means to pydicom.
    dataset = Dataset({tag: dataset[tag] for tag in dataset.keys() if int(tag) >> 16 != 0x0002 and int(tag) not in PIXEL_TAGS})
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, dataset)
    return fp.getvalue()


def decode(body: bytes | memoryview) -> Dataset:
    """The pydicom Dataset of a message body (values are converted lazily by pydicom).

    The body is first walked whole, with limits (:func:`meshdcm.dataview.check_body`): a truncated or disordered
    body raises :class:`MalformedMessage` (pydicom's reader would quietly return the elements before the damage,
    and a handler would then work on part of the header), and a hostile one is refused before pydicom sees it.
    """
    check_body(body)
    try:
        ds = read_dataset(BytesIO(body), is_implicit_VR=False, is_little_endian=True)
    except Exception as exc:  # pydicom raises a mix of EOFError, ValueError, struct.error...
        raise MalformedMessage(f"the DICOM body cannot be read as Explicit VR Little Endian: {exc}") from exc
    ds.set_original_encoding(False, True)
    return ds
