"""``meshdcm perfusion DSC_SERIES_DIR OUT_DIR [--method model|osvd|csvd|ssvd] [--no-vof] [--no-normalise] [--json]``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .deconvolution import DEFAULT_METHOD, METHODS
from .errors import PerfusionError

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshdcm perfusion",
                                description="DSC-MRI perfusion maps (CBV, CBF, MTT, Tmax, TTP) by SVD deconvolution")
    p.add_argument("series_dir", help="folder holding the DSC series (DICOM files, searched recursively)")
    p.add_argument("out_dir", help="folder for derived DICOM series, NIfTI and PNG outputs")
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD, help=f"deconvolution (default: {DEFAULT_METHOD}; docs/perfusion.md)")
    p.add_argument("--series-uid", help="SeriesInstanceUID to analyse when the folder holds several DSC series")
    p.add_argument("--leakage", action="store_true", help="Boxerman-Schmainda-Weisskoff leakage correction")
    p.add_argument("--normalise", action=argparse.BooleanOptionalAction, default=True,
                   help="write rCBV/rCBF/rMTT relative to normal-appearing white matter (default: yes)")
    p.add_argument("--no-vof", dest="vof", action="store_false",
                   help="do not scale the AIF by the venous output function (partial-volume correction)")
    p.add_argument("--adc", help="folder of the session's ADC series: stroke core by ADC instead of rCBF")
    p.add_argument("--xp", choices=("auto", "numpy", "cupy"), default="auto", help="array module (default: auto)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from .pipeline import analyse_series

    try:
        result = analyse_series(args.series_dir, args.out_dir, method=args.method, xp=args.xp,
                                series_uid=args.series_uid, leakage_correction=args.leakage, normalise=args.normalise,
                                vof_correction=args.vof, adc=args.adc)
    except (PerfusionError, ValueError, RuntimeError) as exc:
        print(f"meshdcm perfusion: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        s = result.summary
        pvc = result.partial_volume_correction or {}
        scaled = (f"scaled x{result.aif_scale:.2f} by a VOF of {len(result.vof_voxels)} voxels" if pvc.get("applied")
                  else f"not scaled: {pvc.get('reason')}")
        print(f"series {result.source_series_uid}: {args.method}, AIF {result.aif_method} "
              f"({len(result.aif_voxels)} voxels, {scaled}), {result.brain_voxels} brain voxels")
        print(f"  {s['region']}: mean CBF {s['mean_CBF']:.1f} ml/100g/min, CBV {s['mean_CBV']:.2f} ml/100g, "
              f"MTT {s['mean_MTT']:.2f} s, Tmax {s['mean_Tmax']:.2f} s")
        for label, t in (s.get("tissues") or {}).items():
            if t["voxels"]:
                print(f"  {label} (median, {t['voxels']} voxels): CBF {t['CBF']:.1f} ml/100g/min, CBV {t['CBV']:.2f} "
                      f"ml/100g, MTT {t['MTT']:.2f} s, Tmax {t['Tmax']:.2f} s"
                      + (f", {t['volume_ml']:.1f} ml" if t["volume_ml"] is not None else ""))
        for note in result.notes:
            print(f"  note: {note}")
        for name, mo in result.outputs.items():
            print(f"  {name}: series {mo.series_uid}  {mo.nifti}  {mo.png}")
        st = result.stroke or {}
        print(f"  stroke: {st['error']}" if "error" in st else f"  stroke: core {st['core_ml']} ml ({st['core_method']}), "
              f"Tmax>6 {st['tmax6_ml']} ml, Tmax>10 {st['tmax10_ml']} ml, mismatch {st['mismatch_ml']} ml")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
