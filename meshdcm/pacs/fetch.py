"""Fetch stored instances wherever they are: ``fetch(uri, dest_dir) -> list[Path]``.

Node authors get a URI in a message and never care where the files live:

* ``file:///data/incoming/<study>/<series>/<sop>.dcm`` or a plain path -- same machine: the file (or every
  ``.dcm`` under a folder) is used in place, nothing is copied (``copy=True`` copies into ``dest_dir``).
* ``http(s)://host:port/dicom-web/studies/<study>[/series/<series>[/instances/<sop>]]`` -- another host:
  WADO-RS from the storing node's (or any PACS') DICOMweb endpoint, written under ``dest_dir``.
* ``dicom://AE@host:port/<study>[/<series>]`` -- C-GET from a DICOM node (no storage SCP needed on our side).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from .config import Pacs

__all__ = ["fetch"]

_WADO = re.compile(r"^(?P<base>.*?)/studies/(?P<study>[0-9.]+)(?:/series/(?P<series>[0-9.]+))?"
                   r"(?:/instances/(?P<sop>[0-9.]+))?/?$")


def fetch(uri: str, dest_dir: str | Path | None = None, copy: bool = False) -> list[Path]:
    """Local paths of the DICOM files ``uri`` names (see the module docstring for the URI forms)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        src = Path(unquote(parsed.path if parsed.scheme else uri))
        if not src.exists():
            raise FileNotFoundError(f"{src} does not exist on this host; publish an http(s) WADO-RS URI instead")
        files = sorted(src.rglob("*.dcm")) if src.is_dir() else [src]
        if not copy:
            return files
        if dest_dir is None:
            raise ValueError("copy=True needs dest_dir")
        out = []
        for f in files:
            target = Path(dest_dir) / f.relative_to(src if src.is_dir() else src.parent)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
            out.append(target)
        return out
    if dest_dir is None:
        raise ValueError(f"fetching {uri} from another host needs dest_dir")
    if parsed.scheme in ("http", "https"):
        m = _WADO.match(uri)
        if not m:
            raise ValueError(f"{uri} is not a WADO-RS study/series/instance URI (…/studies/<uid>[/series/<uid>])")
        pacs = Pacs(parsed.netloc or "dicomweb", dicomweb_url=m["base"], retrieve="wado")
        from .scu import retrieve

        paths = retrieve(pacs, m["study"], dest_dir, series_uid=m["series"], method="wado").paths
        if m["sop"]:
            paths = [p for p in paths if p.stem == m["sop"]]
        return paths
    if parsed.scheme == "dicom":
        ae, _, hostport = parsed.netloc.rpartition("@")
        host, _, port = hostport.partition(":")
        parts = [p for p in parsed.path.split("/") if p]
        if not parts:
            raise ValueError(f"{uri}: expected dicom://AE@host:port/<study>[/<series>]")
        pacs = Pacs(hostport, ae_title=ae or "ANY-SCP", host=host, port=int(port or 104), retrieve="get")
        from .scu import retrieve

        return retrieve(pacs, parts[0], dest_dir, series_uid=parts[1] if len(parts) > 1 else None).paths
    raise ValueError(f"unsupported URI scheme {parsed.scheme!r} in {uri}; use file, http(s) or dicom")
