"""The stroke: a left middle cerebral artery (MCA) territory with an ischaemic core and a penumbra around it.

Everything is drawn in MNI space (RAS mm) on the anatomy's grid, as a label per voxel (:data:`LABELS`), so that every
series of the patient (any scanner, any pose) sees the same lesion.

* **MCA territory** (after the vascular territory atlases of Tatu et al. 1998, Neurology 50:1699, simplified): the
  left hemisphere lateral of 10 mm from the midline, without the anterior cerebral artery's parasagittal strip (within
  16 mm of the midline above the basal ganglia, and the medial orbitofrontal cortex), the posterior cerebral
  artery's occipital lobe and inferomedial temporal lobe, the cerebellum and the brainstem. Borders wander by a few
  millimetres (smooth noise), as real watersheds do.
* **core** (label 3): an irregular ellipsoid over the insula, the frontal operculum and the lentiform nucleus, the
  usual first victims of a proximal M1 occlusion: tissue with restricted diffusion and CBF below 30 % of normal.
* **penumbra** (label 2): a larger ellipsoid around it over the frontal, parietal and temporal convexity: delayed
  (Tmax > 6 s) and hypoperfused, normal diffusion.
* **oligaemia** (label 1): the rest of the territory, fed late through collaterals (Tmax 2-4 s) but not at risk.

The labels say nothing of tissue: a voxel's grey and white matter carry its label, its CSF does not (the tissue
values are :mod:`meshdcm.studies.physiology`'s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import Anatomy, smooth_noise

__all__ = ["LABELS", "Lesion", "MCA_STROKE", "lesion_labels", "lesion_volumes_ml"]

#: Label values of the lesion field, and their names in the ground truth.
LABELS = {0: "normal", 1: "oligaemia", 2: "penumbra", 3: "core"}


@dataclass(frozen=True)
class Lesion:
    """Where the core and the penumbra lie: centres (MNI RAS mm, x < 0 is the left hemisphere) and radii (mm),
    and how far their borders wander (mm)."""

    core_centre: tuple[float, float, float] = (-33.0, 2.0, 9.0)
    core_radii: tuple[float, float, float] = (15.0, 24.0, 20.0)
    penumbra_centre: tuple[float, float, float] = (-40.0, -10.0, 16.0)
    penumbra_radii: tuple[float, float, float] = (28.0, 46.0, 36.0)
    wander: float = 4.0


#: The stroke of the realistic studies: a left M1 occlusion.
MCA_STROKE = Lesion()


def _inside(x, y, z, centre, radii, wander_mm, noise) -> np.ndarray:
    """An ellipsoid whose surface moves in and out by up to ``wander_mm`` with ``noise``."""
    r = np.sqrt(((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((z - centre[2]) / radii[2]) ** 2)
    return r <= 1.0 + noise * (wander_mm / min(radii))


def mca_territory(anatomy: Anatomy, noise: np.ndarray, wander: float) -> np.ndarray:
    """The left MCA territory (boolean, on the anatomy's grid)."""
    x, y, z = anatomy.mni_points()
    lateral = -x  # mm left of the midline
    w = wander * noise
    aca = ((y > -70) & (z > 0) & (lateral < 16 + w)) | ((y > 20) & (z < 0) & (lateral < 15 + w))
    pca = (y < -68 + w) | ((z < -8) & (y < -20) & (lateral < 38 + w))
    hindbrain = ((y < -40) & (z < -15)) | ((lateral < 12) & (z < -10))
    return (lateral > 10) & ~aca & ~pca & ~hindbrain & (z > -45)


def lesion_labels(anatomy: Anatomy, lesion: Lesion = MCA_STROKE, *, seed: int = 0) -> np.ndarray:
    """The lesion field (uint8 :data:`LABELS`) on the anatomy's grid."""
    rng = np.random.default_rng(seed)
    shape = anatomy.fields["gm"].shape
    noise = [smooth_noise(shape, rng, cells=6) for _ in range(3)]  # borders wander over some 4 cm
    x, y, z = anatomy.mni_points()
    territory = mca_territory(anatomy, noise[0], 2 * lesion.wander)  # watersheds wander more
    core = territory & _inside(x, y, z, lesion.core_centre, lesion.core_radii, lesion.wander, noise[1])
    penumbra = territory & ~core & _inside(x, y, z, lesion.penumbra_centre, lesion.penumbra_radii, lesion.wander,
                                           noise[2])
    labels = np.zeros(shape, dtype=np.uint8)
    labels[territory] = 1
    labels[penumbra] = 2
    labels[core] = 3
    return labels


def lesion_volumes_ml(anatomy: Anatomy, labels: np.ndarray, scale: float) -> dict[str, float]:
    """Brain tissue (grey + white matter) volume of each lesion label in a head of ``scale`` (ml)."""
    brain = anatomy.fields["gm"].astype(np.float32) + anatomy.fields["wm"]
    voxel = (anatomy.spacing * scale) ** 3 / 1000.0 / 255.0
    return {name: float(brain[labels == value].sum(dtype=np.float64) * voxel)
            for value, name in LABELS.items() if value}
