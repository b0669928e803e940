"""The fetch client: what a ``meshdcm://`` URI names, asked of the node that serves it in chunks over the control
sockets (the FETCH verb, docs/protocol.md; :mod:`meshdcm.transfer` is the serving side and the wire format).
``file://`` URIs and plain paths are used in place; other schemes go to the reader registered for them
(:func:`meshdcm.transfer.fetcher_for`). ``Node.fetch`` and ``Node.fetch_folder`` are this class's methods."""

from __future__ import annotations

import json
import logging
import os
import queue
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import unquote, urlparse

from .errors import MeshError
from .transfer import CHUNK, CREDIT, TIMEOUT, Transfers, TransferError, fetcher_for, parse_uri

__all__ = ["FetchClient"]

log = logging.getLogger("meshdcm.node")


class FetchClient:
    """Fetches for one node: ``send`` hands a command to its engine, ``peers`` lists the mesh as the node sees it,
    ``former_name`` names the node of a former node id (a stream it heard), or None."""

    def __init__(self, transfers: Transfers, send: Callable[[bytes], None], peers: Callable[[], list[dict]],
                 former_name: Callable[[str], str | None]):
        self._transfers, self._send, self._peers, self._former_name = transfers, send, peers, former_name

    def fetch(self, uri: str, dest_dir: str | os.PathLike, timeout: float = TIMEOUT) -> list[Path]:
        """What ``uri`` names, as local paths (``Node.fetch``)."""
        parsed = urlparse(uri)
        if parsed.scheme in ("", "file"):
            path = Path(unquote(parsed.path))
            if not path.exists():
                raise TransferError(f"{path} does not exist on this machine")
            return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        fetcher = fetcher_for(parsed.scheme) if parsed.scheme else None
        if fetcher is not None:  # e.g. WADO-RS or C-GET from a PACS (meshdcm.pacs.fetch)
            return fetcher(uri, dest_dir)
        node_id, rel = parse_uri(uri)
        node_id = self.holder(node_id, uri)
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        kind, info, data = self._ask(node_id, rel, 0, CHUNK, timeout)
        if kind == b"LIST":
            out = []
            for name in info["files"]:
                target = (dest / name).resolve()
                if dest.resolve() not in target.parents:
                    raise TransferError(f"{uri} lists a file outside the folder: {name!r}")
                out.append(self._fetch_file(node_id, f"{rel}/{name}", target, timeout))
            return out
        return [self._fetch_file(node_id, rel, dest / Path(rel).name, timeout, first=(kind, info, data))]

    def holder(self, node_id: str, uri: str) -> str:
        """The id of the peer that serves a URI naming ``node_id``: that node, or, when it restarted (a new id), the
        node of the same name now in the mesh (a restarted node serves the same folders; replayed messages carry
        the URIs of its former run)."""
        peers = self._peers()
        if any(p["id"] == node_id for p in peers):
            return node_id
        name = self._former_name(node_id)
        successor = next((p["id"] for p in peers if name and p["name"] == name and p["role"] != "tool"), None)
        if successor is not None:
            log.info("%s names node %s, which restarted as %s: fetching from there", uri, node_id[:12], successor[:12])
            return successor
        raise TransferError(f"node {node_id[:12]}{f' ({name})' if name else ''} that holds {uri} is not in the mesh "
                            "(stopped, or not reachable from here); ask for the data again once it is back")

    def fetch_folder(self, uris: Iterable[str], dest_dir: str | os.PathLike, timeout: float = TIMEOUT) -> Path:
        """A local folder holding what ``uris`` name (``Node.fetch_folder``)."""
        errors = []
        for uri in sorted(uris, key=lambda u: not u.startswith("file:")):
            parsed = urlparse(uri)
            try:
                if parsed.scheme == "file":
                    folder = Path(unquote(parsed.path))
                    if folder.is_dir():
                        return folder
                    raise TransferError(f"{folder} is not a folder on this machine")
                self.fetch(uri, dest_dir, timeout)
                return Path(dest_dir)
            except MeshError as exc:
                errors.append(f"{uri}: {exc}")
        raise TransferError("nothing could be fetched: " + ("; ".join(errors) or "the message names no URI"))

    def _ask(self, node_id: str, rel: str, offset: int, size: int, timeout: float, q=None, req=None):
        own = q is None
        if own:
            req, q = self._transfers.open()
        try:
            request = b"\x00fetch " + json.dumps(
                {"node": node_id, "req": req, "path": rel, "offset": offset, "size": size}).encode()
            self._send(request)
            if not own:
                return None
            deadline = time.monotonic() + timeout
            while True:
                kind, info, data = self._answer(q, rel, max(0.1, deadline - time.monotonic()), raise_refusal=False)
                # a peer that just joined: our connection to it may not be up yet, so ask again until the deadline
                if kind == b"NOFILE" and info.get("unreachable") and time.monotonic() < deadline - 0.1:
                    time.sleep(0.1)
                    self._send(request)
                    continue
                if kind == b"NOFILE":
                    raise TransferError(f"{rel}: {info.get('reason', 'refused')}")
                return kind, info, data
        finally:
            if own:
                self._transfers.close(req)

    @staticmethod
    def _answer(q, rel: str, timeout: float, raise_refusal: bool = True):
        try:
            kind, info, data = q.get(timeout=timeout)
        except queue.Empty:
            raise TransferError(f"no answer for {rel} within {timeout:.0f} s; the node may be overloaded or gone") \
                from None
        if kind == b"NOFILE" and raise_refusal:
            raise TransferError(f"{rel}: {info.get('reason', 'refused')}")
        return kind, info, data

    def _fetch_file(self, node_id: str, rel: str, target: Path, timeout: float, first=None) -> Path:
        req, q = self._transfers.open()
        try:
            if first is None:
                self._ask(node_id, rel, 0, CHUNK, timeout, q, req)
                first = self._answer(q, rel, timeout)
            kind, info, data = first
            total = int(info["total"])
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            with open(partial, "wb") as fh:
                fh.write(data)
                received = len(data)
                asked = len(data)
                while asked < total and asked < CREDIT * CHUNK:  # credit: several chunks in flight
                    self._ask(node_id, rel, asked, CHUNK, timeout, q, req)
                    asked += CHUNK
                while received < total:
                    kind, info, data = self._answer(q, rel, timeout)
                    fh.seek(int(info["offset"]))
                    fh.write(data)
                    received += len(data)
                    if asked < total:
                        self._ask(node_id, rel, asked, CHUNK, timeout, q, req)
                        asked += CHUNK
            os.replace(partial, target)
            return target
        finally:
            self._transfers.close(req)
