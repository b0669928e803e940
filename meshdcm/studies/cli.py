"""``meshdcm studies make [--variant small|full] [--out DIR]`` and ``meshdcm studies path``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import StudiesError
from .protocol import VARIANTS

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshdcm studies",
                                description="Realistic stroke studies made from the MNI ICBM152 brain, with their "
                                            "ground truth (docs/studies.md)")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    make = sub.add_parser("make", help="make a study set (into the cache unless --out is given) and print its folder")
    make.add_argument("--variant", choices=sorted(VARIANTS), default="full",
                      help="full: clinical matrices (about 1.5 min); small: coarse, for tests (seconds)")
    make.add_argument("--out", metavar="DIR", help="make it in this new folder instead of the cache")
    path = sub.add_parser("path", help="print the cached set's folder (making it first if it is not there)")
    path.add_argument("--variant", choices=sorted(VARIANTS), default="full")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("pydicom").setLevel(logging.WARNING)
    from .cache import studies_folder
    from .make import make_studies

    try:
        if args.action == "make" and args.out:
            out = Path(args.out)
            if out.exists() and any(out.iterdir()):
                print(f"meshdcm studies: error: {out} is not empty; give a new folder", file=sys.stderr)
                return 2
            manifest = make_studies(out, args.variant)
            folder = out
            print(f"{manifest['instances']} instances in {manifest['seconds']} s", file=sys.stderr)
        else:
            folder = studies_folder(args.variant)
    except StudiesError as exc:
        print(f"meshdcm studies: error: {exc}", file=sys.stderr)
        return 2
    print(folder)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
