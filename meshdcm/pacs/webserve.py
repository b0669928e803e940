"""A tiny read-only DICOMweb endpoint over a store folder (``<dir>/<study>/<series>/<sop>.dcm``).

So a node on another host can ``fetch("http://host:port/dicom-web/studies/<uid>", dest)`` what our storage
SCP received, without a PACS in between. Serves the minimum of PS3.18 that :func:`meshdcm.pacs.fetch` and
dicomweb-client need:

* QIDO-RS ``GET /dicom-web/studies/{study}[/series/{series}]/instances`` -> DICOM JSON (SOP Instance UIDs);
* WADO-RS ``GET /dicom-web/studies/{study}[/series/{series}[/instances/{sop}]]`` ->
  ``multipart/related; type="application/dicom"``, each part the stored file's bytes as received (so in
  its original transfer syntax).

Hand-written on :mod:`http.server` because the full DICOMweb servers (Orthanc, dcm4chee) are separate
services; this is a few dozen lines with no dependency. Only UIDs (digits and dots) are accepted in paths,
so nothing outside the folder can be named. Bind it to an address of the mesh's network, not 0.0.0.0.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["StoreWebServer"]

LOGGER = logging.getLogger(__name__)

_ROUTE = re.compile(r"^/dicom-web/studies/(?P<study>[0-9.]{1,64})(?:/series/(?P<series>[0-9.]{1,64}))?"
                    r"(?:/instances(?:/(?P<sop>[0-9.]{1,64}))?)?/?$")


class StoreWebServer:
    """Serve ``directory`` over WADO-RS/QIDO-RS at ``http://host:port/dicom-web`` (threaded, read-only)."""

    def __init__(self, directory: str | Path, host: str = "127.0.0.1", port: int = 0):
        self.directory = Path(directory)
        root = self.directory

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):  # route http.server's access log to our logger
                LOGGER.debug("webserve: " + fmt, *args)

            def do_GET(self):  # noqa: N802 - http.server API
                path = self.path.split("?", 1)[0]
                m = _ROUTE.match(path)
                if not m:
                    self.send_error(404, "not a WADO-RS/QIDO-RS study, series or instance path")
                    return
                study, series, sop = m["study"], m["series"], m["sop"]
                folder = root / study
                files = sorted(folder.glob(f"{series}/*.dcm" if series else "*/*.dcm"))
                if sop:
                    files = [f for f in files if f.stem == sop]
                if not files:
                    self.send_error(404, "no such study/series/instance in this store")
                    return
                if path.rstrip("/").endswith("/instances") and not sop:
                    body = json.dumps([{"00080018": {"vr": "UI", "Value": [f.stem]},
                                        "0020000D": {"vr": "UI", "Value": [study]},
                                        "0020000E": {"vr": "UI", "Value": [f.parent.name]}} for f in files]).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/dicom+json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                boundary = uuid.uuid4().hex
                self.send_response(200)
                self.send_header("Content-Type", f'multipart/related; type="application/dicom"; boundary={boundary}')
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for f in files:
                    self._chunk(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
                    self._chunk(f.read_bytes())
                    self._chunk(b"\r\n")
                self._chunk(f"--{boundary}--\r\n".encode())
                self._chunk(b"")

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/dicom-web"

    def start(self) -> str:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="store-webserve", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> StoreWebServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
