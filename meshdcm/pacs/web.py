"""DICOMweb transport (PS3.18): WADO-RS retrieve and STOW-RS store, via dicomweb-client.

WADO-RS asks for instances in the transfer syntax they are stored in (``transfer-syntax=*``), so compressed
pixel data arrives as its original encapsulated fragments; the header is re-serialised by pydicom when the
file is written (pixel data bytes untouched).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import FileMetaDataset

from .config import Pacs
from .errors import PacsError, PacsUnavailable
from .results import RetrieveResult, StoreResult
from .durable import write_durably

__all__ = ["wado_retrieve", "stow_store", "client_for"]

LOGGER = logging.getLogger(__name__)


def client_for(pacs: Pacs):
    """A :class:`dicomweb_client.DICOMwebClient` for ``pacs.dicomweb_url``."""
    if not pacs.dicomweb_url:
        raise ValueError(f"PACS {pacs}: no dicomweb_url configured for WADO-RS/STOW-RS")
    try:
        from dicomweb_client.api import DICOMwebClient
    except ImportError as exc:  # pragma: no cover
        raise ImportError("WADO-RS/STOW-RS need dicomweb-client: pip install dicomweb-client") from exc
    return DICOMwebClient(url=pacs.dicomweb_url, headers=dict(pacs.http_headers) or None)


def _web_error(pacs: Pacs, exc: Exception, study_uid: str | None, operation: str) -> PacsError:
    import requests

    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return PacsUnavailable(pacs, f"DICOMweb server {pacs.dicomweb_url} unreachable: {exc.__class__.__name__}",
                               study_uid, operation)
    if isinstance(exc, requests.HTTPError):
        code = exc.response.status_code if exc.response is not None else "?"
        return PacsError(pacs, f"HTTP {code} from {pacs.dicomweb_url}", study_uid, operation,
                         retryable=code in (502, 503, 504))
    return PacsError(pacs, str(exc), study_uid, operation)


def wado_retrieve(pacs: Pacs, study_uid: str, dest: Path, *, series_uid: str | None = None,
                  on_progress=None, on_instance=None) -> RetrieveResult:
    """WADO-RS retrieve of a study/series into ``dest/<study>/<series>/<sop>.dcm``."""
    client = client_for(pacs)
    res = RetrieveResult(study_uid, "wado")
    media = (("application/dicom", "*"),)
    try:
        found = client.search_for_instances(study_instance_uid=study_uid, series_instance_uid=series_uid,
                                            fields=["00080018"])
        res.total = len(found)
        it = (client.iter_series(study_uid, series_uid, media_types=media) if series_uid
              else client.iter_study(study_uid, media_types=media))
        for ds in it:
            folder = dest / str(ds.StudyInstanceUID) / str(ds.SeriesInstanceUID)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{ds.SOPInstanceUID}.dcm"
            if not hasattr(ds, "file_meta") or "TransferSyntaxUID" not in ds.file_meta:
                raise PacsError(pacs, f"instance {ds.SOPInstanceUID} came without a transfer syntax", study_uid,
                                "WADO-RS")
            meta = FileMetaDataset(ds.file_meta)
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta = meta

            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            write_durably(path, buf.getbuffer())
            res.paths.append(path)
            res.done += 1
            if on_instance:
                on_instance(path, dcmread(path, stop_before_pixels=True))
            if on_progress:
                on_progress(str(ds.SeriesInstanceUID), res.done, max(res.total, res.done))
    except PacsError:
        raise
    except Exception as exc:
        raise _web_error(pacs, exc, study_uid, "WADO-RS") from exc
    res.total = max(res.total, res.done)
    return res


def stow_store(pacs: Pacs, paths: list[Path]) -> StoreResult:
    """STOW-RS upload of DICOM files."""
    client = client_for(pacs)
    result = StoreResult()
    datasets = [dcmread(p) for p in paths]
    try:
        resp = client.store_instances(datasets)
    except Exception as exc:
        raise _web_error(pacs, exc, None, "STOW-RS") from exc
    failed = {}
    for item in resp.get("00081198", {}).get("Value", []) if resp else []:  # FailedSOPSequence
        uid = item.get("00081155", {}).get("Value", ["?"])[0]
        reason = item.get("00081197", {}).get("Value", ["?"])[0]
        failed[uid] = f"STOW-RS failure reason {reason}"
    for ds in datasets:
        uid = str(ds.SOPInstanceUID)
        if uid in failed:
            result.failed[uid] = failed[uid]
        else:
            result.stored.append(uid)
    return result
