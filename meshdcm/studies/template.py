"""The real brain the studies are made of: the MNI ICBM152 2009a symmetric template shipped in the nilearn wheel.

Three volumes of 197 x 233 x 189 voxels of 1 mm in MNI space (RAS), stored as 8-bit integers:

* ``t1``: the T1-weighted average of 152 young adults, brain-extracted (zero outside the intracranial volume);
* ``gm``, ``wm``: grey and white matter probability maps (0-255 for 0-1).

nilearn is installed without its dependencies, as a data package (``pip install --no-deps nilearn==0.14.1``, which
``make python-deps`` runs); it is never imported: its folder is found with :func:`importlib.util.find_spec`, and the
files are read with nibabel. Copyright and permission notice: docs/third-party.md.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import StudiesError

__all__ = ["INSTALL_HINT", "Template", "load_template", "template_files"]

#: The command that installs the template (the pin is constraints.txt's).
INSTALL_HINT = "pip install --no-deps nilearn==0.14.1"
_NAMES = {key: f"mni_icbm152_{key}_tal_nlin_sym_09a_converted.nii.gz" for key in ("t1", "gm", "wm")}


@dataclass(frozen=True)
class Template:
    """The template's volumes (uint8, index order x, y, z) and their voxel -> MNI RAS mm affine."""

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    affine: np.ndarray


def template_files() -> dict[str, Path]:
    """The three NIfTI files in the installed nilearn wheel; a :class:`StudiesError` naming the install command
    when nilearn or one of its files is missing."""
    spec = importlib.util.find_spec("nilearn")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        data = Path(folder) / "datasets" / "data"
        files = {key: data / name for key, name in _NAMES.items()}
        if all(p.is_file() for p in files.values()):
            return files
    where = f" (nilearn at {', '.join(folders)} lacks them)" if folders else ""
    raise StudiesError(f"the MNI ICBM152 brain template the realistic studies are made of is not installed{where}; "
                       f"install it into this Python with  {INSTALL_HINT}  (make python-deps does), or serve the "
                       "small synthetic studies instead (embedded_size = \"small\")")


def load_template() -> Template:
    """Read the template (about 0.2 s)."""
    import nibabel as nib

    files = template_files()
    images = {key: nib.load(str(path)) for key, path in files.items()}
    affine = images["t1"].affine
    volumes = {key: np.asarray(img.dataobj, dtype=np.uint8) for key, img in images.items()}
    if any(not np.allclose(img.affine, affine) for img in images.values()):
        raise StudiesError(f"the template files in {files['t1'].parent} are not on one grid; reinstall with "
                           f"{INSTALL_HINT}")
    return Template(volumes["t1"], volumes["gm"], volumes["wm"], np.asarray(affine, dtype=np.float64))
