"""Files between nodes over the control socket: ``meshdcm://<node id>/<root>/<path>`` URIs.

A node serves folders (``node.serve("store", path)``); any node of the mesh fetches from it with
``node.fetch(uri, dest_dir)``. The transfer rides on the control sockets (ROUTER/DEALER), so in a mesh with a
keyring it is CURVE-encrypted and only authorized nodes can fetch (docs/security.md). Chunks are asked for a few
at a time (credit-based flow control, after the ZeroMQ guide's file-transfer pattern), so a large series never
floods a queue. A folder URI fetches every file under it.

Control messages (docs/protocol.md): ``FETCH {"req", "path", "offset", "size"}`` is answered by
``DATA {"req", "offset", "total"} <bytes>``, ``LIST {"req", "files": [...]}`` for a folder, or
``NOFILE {"req", "reason"}``.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import uuid
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

from .errors import MeshError

__all__ = ["CHUNK", "FETCHERS_GROUP", "FileServer", "TransferError", "fetcher_for", "parse_uri"]

CHUNK = 256 * 1024
CREDIT = 8  # chunks in flight per transfer
TIMEOUT = 15.0  # seconds without an answer before a transfer fails


class TransferError(MeshError):
    """A file could not be fetched from a node."""


#: The entry-point group of readers for URI schemes other than ``meshdcm://`` and ``file://`` (pyproject.toml):
#: ``scheme = "module:function"``, a function ``(uri, dest_dir) -> list[Path]`` (the pacs package reads ``http``,
#: ``https`` and ``dicom`` URIs from a PACS).
FETCHERS_GROUP = "meshdcm.fetchers"


@functools.cache
def fetcher_for(scheme: str) -> Callable[[str, Path], list[Path]] | None:
    """The registered reader of ``scheme`` URIs, or None (looked up once per scheme: reading the installed
    distributions' entry points costs milliseconds, and every ``Node.fetch`` asks)."""
    for ep in entry_points(group=FETCHERS_GROUP, name=scheme):
        return ep.load()
    return None


def parse_uri(uri: str) -> tuple[str, str]:
    """``meshdcm://NODE/root/path`` -> (node id, "root/path")."""
    parsed = urlparse(uri)
    if parsed.scheme != "meshdcm" or not parsed.netloc:
        raise TransferError(f"not a meshdcm:// URI: {uri}")
    return parsed.netloc, unquote(parsed.path.lstrip("/"))


class FileServer:
    """The folders a node serves; resolves requests safely (no way out of a served folder)."""

    def __init__(self):
        self.roots: dict[str, Path] = {}

    def add(self, name: str, root: str | os.PathLike) -> None:
        if not name or "/" in name:
            raise ValueError(f"a served folder's name is one path segment, got {name!r}")
        self.roots[name] = Path(root).resolve()

    def uri(self, node_id: str, path: str | os.PathLike) -> str:
        target = Path(path).resolve()
        for name, root in self.roots.items():
            if target == root or root in target.parents:
                rel = target.relative_to(root).as_posix()
                return f"meshdcm://{node_id}/{quote(name)}/{quote(rel)}".rstrip("/")
        raise ValueError(f"{path} is not under a folder this node serves")

    def resolve(self, rel: str) -> Path:
        name, _, rest = rel.partition("/")
        root = self.roots.get(name)
        if root is None:
            raise FileNotFoundError(f"this node serves no folder called {name!r}")
        target = (root / rest).resolve()
        if target != root and root not in target.parents:
            raise PermissionError("the path leaves the served folder")
        if not target.exists():
            raise FileNotFoundError(f"{rel} does not exist (any more) on this node")
        return target

    def answer(self, payload: bytes) -> list[bytes]:
        """The reply frames (kind, header[, data]) for a FETCH payload: NOFILE with the reason for any bad one."""
        request = None
        try:
            request = json.loads(payload)
            req = str(request["req"])[:64]
            rel = request["path"]
            offset = int(request.get("offset", 0))
            size = max(1, min(int(request.get("size", CHUNK)), 4 * CHUNK))
            if not isinstance(rel, str) or "\x00" in rel or len(rel) > 4096 or offset < 0:
                raise ValueError("path must be text without NUL, at most 4096 characters; offset >= 0")
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
            req = request.get("req", "") if isinstance(request, dict) else ""
            return [b"NOFILE", json.dumps({"req": str(req)[:64], "reason": f"unreadable FETCH request: {exc}"}).encode()]
        try:
            target = self.resolve(rel)
            if target.is_dir():
                files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
                return [b"LIST", json.dumps({"req": req, "files": files}).encode()]
            with open(target, "rb") as fh:
                total = os.fstat(fh.fileno()).st_size
                fh.seek(offset)
                data = fh.read(size)
            return [b"DATA", json.dumps({"req": req, "offset": offset, "total": total}).encode(), data]
        except (OSError, ValueError) as exc:  # ValueError: a path the file system cannot take
            return [b"NOFILE", json.dumps({"req": req, "reason": str(exc)}).encode()]


class Transfers:
    """Client side: requests waiting for answers, by request id (answers arrive on the engine thread)."""

    def __init__(self):
        self._waiting: dict[str, queue.SimpleQueue] = {}

    def open(self) -> tuple[str, queue.SimpleQueue]:
        req = uuid.uuid4().hex
        q: queue.SimpleQueue = queue.SimpleQueue()
        self._waiting[req] = q
        return req, q

    def close(self, req: str) -> None:
        self._waiting.pop(req, None)

    def deliver(self, kind: bytes, header: bytes, data: bytes) -> None:
        try:
            info = json.loads(header)
        except ValueError:
            return
        q = self._waiting.get(str(info.get("req", "")))
        if q is not None:
            q.put((kind, info, data))
