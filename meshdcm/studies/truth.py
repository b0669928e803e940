"""The ground truth beside each study: NIfTI masks and maps on the series' own grids, and ``truth.json``.

Layout (``<study>/truth/``)::

    truth.json
    <grid>/<name>.nii.gz     masks (uint8 0/1) and maps (float32) on the grid of series <grid> (dsc, dwi, t1, ct)

NIfTI arrays are (column, row, slice) with the RAS affine ``diag(-1, -1, 1, 1) @ affine_lps`` of the DICOM series,
the layout of the perfusion node's own NIfTI maps (meshdcm/perfusion/nifti.py): a truth map and a computed map of
the same series compare voxel by voxel. A mask's volume is its voxel count times ``prod(zooms)`` (pixel area times
the distance between slice centres).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import replacing
from .geometry import Grid
from .layout import uid
from .physiology import ADC, KH, PERFUSION, RHO
from .protocol import acquisitions
from .tissues import truth_masks

__all__ = ["LPS_TO_RAS", "grid_entry", "read_truth", "study_truth", "write_json", "write_nifti"]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def write_nifti(volume: np.ndarray, grid: Grid, path: Path, description: str = "") -> Path:
    """Write a (slices, rows, columns) array of ``grid`` as a NIfTI-1 file (masks as uint8, maps as float32)."""
    import nibabel as nib

    dtype = np.uint8 if volume.dtype == bool else np.float32
    img = nib.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0), dtype=dtype), LPS_TO_RAS @ grid.affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = description[:79].encode("ascii", "replace")
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        nib.save(img, str(tmp))
    return path


def grid_entry(folder: Path, name: str, grid: Grid, series_uid: str, *, masks: dict[str, np.ndarray],
               maps: dict[str, np.ndarray] | None = None, units: dict[str, str] | None = None) -> dict:
    """Write one grid's masks and maps under ``folder/name`` and say what was written (paths relative to
    ``folder``, mask volumes in ml)."""
    entry = {"series_uid": series_uid, "shape": list(grid.shape), "affine_lps": np.round(grid.affine, 6).tolist(),
             "masks": {}, "maps": {}}
    for key, mask in masks.items():
        write_nifti(mask, grid, folder / name / f"{key}.nii.gz", f"meshdcm truth mask {key}")
        entry["masks"][key] = {"file": f"{name}/{key}.nii.gz", "voxels": int(mask.sum()),
                               "volume_ml": round(float(mask.sum()) * grid.voxel_ml, 3)}
    for key, value in (maps or {}).items():
        write_nifti(value, grid, folder / name / f"{key}.nii.gz", f"meshdcm truth map {key}")
        entry["maps"][key] = {"file": f"{name}/{key}.nii.gz", "unit": (units or {}).get(key, "")}
    return entry


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return path


def read_truth(study_folder: str | Path) -> dict:
    """A study's ``truth/truth.json``."""
    return json.loads((Path(study_folder) / "truth" / "truth.json").read_text())


def study_truth(session, lesion_ml: dict[str, float] | None) -> dict:
    """Write a study's ground truth under ``<study>/truth/`` and return ``truth.json``'s content.

    MR: masks on the DSC, diffusion and T1 grids, the true CBF/CBV/MTT/Tmax and vessel fractions on the DSC grid, the
    DSC facts (timing, relaxivity, signal drops) and the true arterial, venous and tissue curves. CT: masks on the
    5 mm grid.
    """
    folder = session.folder / "truth"
    s, study = session, session.study

    def series_uid(key):
        return uid(s.variant, s.patient.key, study.key, key)

    acq = acquisitions(s.variant)
    grids = {}
    for key, name in (("ct_thick", "ct"), ("dwi", "dwi"), ("t1", "t1")):
        if key in study.series:
            grid = acq[key].grid(study.pose)
            grids[name] = grid_entry(folder, name, grid, series_uid(key), masks=truth_masks(s.view, s.zones, grid))
    out = {
        "format": "meshdcm-studies-truth/1",
        "variant": s.variant,
        "patient": {"key": s.patient.key, "id": s.patient.id, "scale": s.patient.scale, "stroke": s.patient.stroke},
        "study": {"key": study.key, "uid": uid(s.variant, s.patient.key, study.key, "study"),
                  "description": study.description, "accession": study.accession},
        "anatomy_ml": {k: round(v, 2) for k, v in s.anatomy.volumes_ml(s.patient.scale).items()},
        "lesion": None,
        "tissues": [{"tissue": t, "zone": z, "cbf": p.cbf, "cbv": p.cbv, "mtt": round(p.mtt, 4),
                     "tmax": round(p.tmax, 4), "delay_s": p.delay, "dispersion_s": p.dispersion,
                     "adc": ADC[(t, z)]} for (t, z), p in PERFUSION.items() if (t, z) in s.zones],
        "units": {"cbf": "ml/100g/min", "cbv": "ml/100g", "mtt": "s", "tmax": "s", "adc": "10^-6 mm2/s",
                  "volumes": "ml"},
        "constants": {"kH": KH, "rho": RHO},
        "grids": grids,
    }
    if lesion_ml is not None:
        core, penumbra = lesion_ml["core"], lesion_ml["penumbra"]
        out["lesion"] = {"territory": "left middle cerebral artery", "occlusion": "left M1",
                         "volumes_ml": {k: round(v, 2) for k, v in lesion_ml.items()},
                         "mismatch_ratio": round((core + penumbra) / core, 3) if core else None,
                         "core": "restricted diffusion (ADC 65 % of normal) and CBF 20 % of normal",
                         "penumbra": "Tmax > 6 s, CBF 50 % of normal, normal diffusion"}
    dsc = s.made.get("dsc")
    if dsc is not None:
        grid = acq["dsc"].grid(study.pose)
        masks = dict(dsc.masks)
        maps = {**dsc.maps, **{f"{k}_fraction": v for k, v in dsc.vessels.items()}}
        grids["dsc"] = grid_entry(folder, "dsc", grid, series_uid("dsc"), masks=masks, maps=maps,
                                  units={"CBF": "ml/100g/min", "CBV": "ml/100g", "MTT": "s", "Tmax": "s"})
        out["dsc"] = {**dsc.facts, "curves": dsc.curves}
    write_json(folder / "truth.json", out)
    return out
