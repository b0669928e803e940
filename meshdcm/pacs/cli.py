"""``meshdcm pacs echo|find|get|store|scp|serve`` -- standalone PACS commands, no mesh needed."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.datadict import tag_for_keyword

from .config import Pacs
from .errors import PacsError
from .retry import with_retry

__all__ = ["main"]


def _pacs(a) -> Pacs:
    return Pacs("cli", ae_title=a.aec, host=a.host, port=a.port, dicomweb_url=a.url, calling_ae=a.aet,
                move_destination=a.move_dest, retrieve=a.method if getattr(a, "method", None) in ("move", "get", "wado")
                else ("wado" if a.url and not a.port else "move"), timeout=a.timeout)


def _keys(items: list[str]) -> Dataset:
    ds = Dataset()
    for item in items:
        kw, _, value = item.partition("=")
        if tag_for_keyword(kw) is None:
            raise SystemExit(f"unknown DICOM keyword {kw!r} in -k {item!r} (use e.g. -k PatientName=DOE*)")
        setattr(ds, kw, value)
    return ds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="meshdcm pacs", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, need_host=True):
        sp.add_argument("--host", default="127.0.0.1")
        sp.add_argument("--port", type=int, default=4242)
        sp.add_argument("--aec", default="ORTHANC", help="called AE title (the PACS)")
        sp.add_argument("--aet", default="MESHDCM", help="our AE title")
        sp.add_argument("--url", default=None, help="DICOMweb base URL (for --method wado / stow)")
        sp.add_argument("--move-dest", default=None, help="C-MOVE destination AE (default: --aet)")
        sp.add_argument("--timeout", type=float, default=30)
        sp.add_argument("--retries", type=int, default=3)

    common(sub.add_parser("echo", help="C-ECHO"))
    f = sub.add_parser("find", help="C-FIND; -k Keyword=value (empty value = return key)")
    common(f)
    f.add_argument("--level", default="STUDY", choices=["PATIENT", "STUDY", "SERIES", "IMAGE"])
    f.add_argument("-k", action="append", default=[], dest="keys")
    g = sub.add_parser("get", help="retrieve a study (or series) into a folder")
    common(g)
    g.add_argument("study_uid")
    g.add_argument("--series", default=None)
    g.add_argument("--method", default="get", choices=["move", "get", "wado"])
    g.add_argument("--out", default=".", help="destination folder")
    g.add_argument("--scp-port", type=int, default=11112, help="our storage SCP port for C-MOVE")
    g.add_argument("--scp-host", default="127.0.0.1")
    s = sub.add_parser("store", help="upload files/folders by C-STORE or STOW-RS")
    common(s)
    s.add_argument("paths", nargs="+")
    s.add_argument("--method", default="c-store", choices=["c-store", "stow"])
    r = sub.add_parser("scp", help="run a storage SCP until interrupted")
    r.add_argument("--out", required=True)
    r.add_argument("--aet", default="MESHDCM")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, default=11112)
    e = sub.add_parser("serve", help="run the embedded PACS until interrupted")
    e.add_argument("--dir", required=True)
    e.add_argument("--aet", default="MESHPACS")
    e.add_argument("--host", default="127.0.0.1")
    e.add_argument("--port", type=int, default=4242)
    e.add_argument("--dest", action="append", default=[], help="C-MOVE destination AE=host:port")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return _run(a)
    except PacsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()


def _run(a) -> int:
    from . import scu

    if a.cmd == "scp":
        from .storage import StorageSCP

        with StorageSCP(a.out, ae_title=a.aet, host=a.host, port=a.port,
                        on_stored=lambda i: print(i.path, flush=True)):
            _wait_for_interrupt()
        return 0
    if a.cmd == "serve":
        from .embedded import EmbeddedPacs

        dests = {}
        for d in a.dest:
            ae, _, hp = d.partition("=")
            h, _, pt = hp.rpartition(":")
            dests[ae] = (h, int(pt))
        with EmbeddedPacs(a.dir, ae_title=a.aet, host=a.host, port=a.port, destinations=dests) as srv:
            print(f"embedded PACS {srv.ae_title} on {srv.host}:{srv.port}", flush=True)
            _wait_for_interrupt()
        return 0
    pacs = _pacs(a)
    if a.cmd == "echo":
        rtt = with_retry(lambda: scu.echo(pacs), attempts=a.retries)
        print(f"C-ECHO {pacs}: ok ({rtt * 1000:.1f} ms)")
        return 0
    if a.cmd == "find":
        for ds in with_retry(lambda: list(scu.find(pacs, a.level, _keys(a.keys))), attempts=a.retries):
            print(ds)
            print("-" * 40)
        return 0
    if a.cmd == "get":
        def bar(series, done, total):
            print(f"\r{done}/{total}", end="", file=sys.stderr, flush=True)

        if a.method == "move":
            from .storage import StorageSCP

            with StorageSCP(a.out, ae_title=a.move_dest or a.aet, host=a.scp_host, port=a.scp_port) as scp:
                res = with_retry(lambda: scu.retrieve(pacs, a.study_uid, series_uid=a.series, method="move", scp=scp,
                                                      on_progress=bar), attempts=a.retries)
        else:
            res = with_retry(lambda: scu.retrieve(pacs, a.study_uid, a.out, series_uid=a.series, method=a.method,
                                                  on_progress=bar), attempts=a.retries)
        print(f"\n{res.done}/{res.total} instances in {res.seconds:.2f} s under {Path(a.out).resolve()}")
        return 0
    if a.cmd == "store":
        files = []
        for x in a.paths:
            x = Path(x)
            files.extend(sorted(q for q in x.rglob("*") if q.is_file()) if x.is_dir() else [x])
        res = with_retry(lambda: scu.store(pacs, files, method=a.method), attempts=a.retries)
        print(f"stored {len(res.stored)}, failed {len(res.failed)}")
        for uid, why in res.failed.items():
            print(f"  {uid}: {why}")
        return 0 if res.ok else 1
    return 2
