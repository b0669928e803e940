"""Command-line entry points for ``meshdcm convert``, ``meshdcm register`` and ``meshdcm reformat``.

Each ``main_*`` takes the arguments *after* its subcommand name and returns an exit status:
0 success, 2 bad input (the message says what to do), 1 unexpected failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .._version import __version__
from .errors import ImagingError

__all__ = ["main", "main_convert", "main_reformat", "main_register"]

log = logging.getLogger(__name__)


def _run(fn) -> int:
    try:
        fn()
    except ImagingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main_convert(argv: list[str] | None = None) -> int:
    """``meshdcm convert to-nifti SERIES_DIR OUT_DIR`` / ``meshdcm convert to-dicom IMAGE REFERENCE_DIR OUT_DIR``."""
    p = argparse.ArgumentParser(prog="meshdcm convert", description="DICOM <-> NIfTI with exact geometry")
    sub = p.add_subparsers(dest="direction", required=True)
    a = sub.add_parser("to-nifti", help="one DICOM series -> NIfTI + BIDS JSON sidecar (dcm2niix layout)")
    a.add_argument("series_dir")
    a.add_argument("out_dir")
    a.add_argument("--gz", action="store_true", help="write .nii.gz")
    b = sub.add_parser("to-dicom", help="NIfTI in a reference series' space -> derived DICOM series")
    b.add_argument("image")
    b.add_argument("reference_dir")
    b.add_argument("out_dir")
    b.add_argument("--description", default=None, help="SeriesDescription (default: reference's + ' [nifti]')")
    b.add_argument("--node-name", default="convert")
    b.add_argument("--node-version", default=__version__)
    args = p.parse_args(argv)

    def go():
        if args.direction == "to-nifti":
            from .nifti import series_to_nifti

            res = series_to_nifti(args.series_dir, args.out_dir, compress=args.gz)
            print(json.dumps({"paths": [str(x) for x in res.paths], "sidecars": [str(x) for x in res.sidecar_paths],
                              "warnings": res.warnings}))
        else:
            from .derived import nifti_to_series
            from .series import read_datasets

            desc = args.description
            if desc is None:
                ref = read_datasets(args.reference_dir)[0]
                desc = f"{ref.get('SeriesDescription', '')} [nifti]".strip()
            paths = nifti_to_series(args.image, args.reference_dir, args.out_dir, series_description=desc,
                                    node_name=args.node_name, node_version=args.node_version)
            print(json.dumps({"paths": [str(x) for x in paths]}))

    return _run(go)


def main_register(argv: list[str] | None = None) -> int:
    """``meshdcm register FIXED_DIR MOVING_DIR OUT_DIR [--affine] [--backend B]``."""
    p = argparse.ArgumentParser(prog="meshdcm register", description="register MOVING onto FIXED (mutual information)")
    p.add_argument("fixed_dir")
    p.add_argument("moving_dir")
    p.add_argument("out_dir")
    p.add_argument("--affine", action="store_true", help="affine after rigid (default: rigid only)")
    p.add_argument("--backend", default="auto", choices=["auto", "simpleitk", "cupy", "numpy"])
    args = p.parse_args(argv)

    def go():
        from .register import register_series

        res = register_series(args.fixed_dir, args.moving_dir, args.out_dir,
                              transform="affine" if args.affine else "rigid", backend=args.backend)
        print(json.dumps({"series_uid": res.series_uid, "paths": len(res.paths), "backend": res.backend,
                          "seconds": round(res.seconds, 3), "metric": res.metric,
                          "matrix_lps": [[round(v, 6) for v in row] for row in res.matrix.tolist()]}))

    return _run(go)


def main_reformat(argv: list[str] | None = None) -> int:
    """``meshdcm reformat SERIES_DIR OUT_DIR --plane coronal --thickness 3``."""
    p = argparse.ArgumentParser(prog="meshdcm reformat", description="axial/coronal/sagittal thick-slab reformat")
    p.add_argument("series_dir")
    p.add_argument("out_dir")
    p.add_argument("--plane", default="coronal", choices=["axial", "coronal", "sagittal"])
    p.add_argument("--thickness", type=float, default=3.0, help="slab thickness and spacing in mm")
    args = p.parse_args(argv)

    def go():
        from .reformat import reformat_series

        paths = reformat_series(args.series_dir, args.out_dir, plane=args.plane, thickness_mm=args.thickness)
        print(json.dumps({"paths": len(paths), "out_dir": args.out_dir}))

    return _run(go)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``convert`` / ``register`` / ``reformat`` (for running this module directly)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"convert": main_convert, "register": main_register, "reformat": main_reformat}
    if not argv or argv[0] not in commands:
        print(f"usage: python -m meshdcm.imaging.cli {{{','.join(commands)}}} ...", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
