"""How each series is acquired: the stroke protocol's sequences, matrices, slices and timing, per variant.

``full`` is what a 3 T MR scanner and a 64-row CT scanner of a stroke centre acquire; ``small`` keeps every series
and its parameters but with coarse matrices and few slices (and a 2 mm brain), for tests that need speed.

| series | full | small |
|---|---|---|
| 3D T1 MPRAGE, sagittal | 176 x 256 x 256, 1 mm | 44 x 64 x 64, 4 mm |
| T2 TSE, axial | 25 slices of 384 x 384 (0.6 mm), 5 mm, 1 mm gap | 10 of 64 x 64, 10 mm, 4 mm gap |
| FLAIR, axial | 25 of 256 x 256 (0.9 mm), 5 mm, 1 mm gap | as T2 |
| DWI b0 + b1000 trace, ADC | 25 of 192 x 192 (1.2 mm), 5 mm, 1 mm gap | as T2 |
| DSC EPI | 20 of 128 x 128 (1.7 mm), 5 mm, 1.5 mm gap, 60 x 1.5 s | 8 of 32 x 32, 10 mm, 6 mm gap, 40 x 1.5 s |
| CT | 512 x 512 (0.47 mm): 32 x 5 mm and 160 x 1 mm | 128 x 128: 16 x 10 mm and 40 x 4 mm |
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .geometry import AXIAL, SAGITTAL, Grid, Pose

__all__ = ["VARIANTS", "Acquisition", "Variant", "acquisitions", "variant"]


@dataclass(frozen=True)
class Acquisition:
    """One series of the protocol: geometry (matrix, field of view, slices; ``centre`` in head coordinates, mm) and
    the acquisition attributes its header carries."""

    key: str
    description: str
    plane: str
    matrix: int
    fov: float
    slices: int
    thickness: float
    step: float
    centre: tuple[float, float, float] = (0.0, 0.0, 0.0)
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "ND", "NORM")
    mr: dict = field(default_factory=dict)
    ct: dict = field(default_factory=dict)
    timepoints: int = 1
    b_values: tuple[int, ...] = ()

    @property
    def pixel(self) -> float:
        return self.fov / self.matrix

    def grid(self, pose: Pose) -> Grid:
        """The series' grid in a scanner where the head lies as ``pose`` says: centred on the slab's centre, the
        slices along the scanner's axes (not angled to the head)."""
        centre = pose.matrix @ np.append(self.centre, 1.0)
        plane = SAGITTAL if self.plane == "sagittal" else AXIAL
        return Grid.centred((self.slices, self.matrix, self.matrix), pixel=self.pixel, step=self.step,
                            thickness=self.thickness, plane=plane, centre=centre[:3])


_EPI_DSC = dict(scanning_sequence=["GR", "EP"], sequence_variant=["SK"], scan_options="FS", acquisition="2D",
                sequence_name="*epfid2d1_128", tr=1500.0, te=30.0, fa=90.0, etl=128, bandwidth=1346)

_FULL = (
    Acquisition("t1", "t1_mprage_sag_p2_iso", "sagittal", 256, 256.0, 176, 1.0, 1.0, centre=(0.0, 0.0, -10.0),
                mr=dict(scanning_sequence=["GR", "IR"], sequence_variant=["SK", "SP", "MP"], scan_options="IR",
                        acquisition="3D", sequence_name="*tfl3d1_16ns", tr=2300.0, te=2.32, ti=900.0, fa=8.0,
                        etl=1, bandwidth=200)),
    Acquisition("t2", "t2_tse_tra_p2_5mm", "axial", 384, 230.0, 25, 5.0, 6.0,
                mr=dict(scanning_sequence=["SE"], sequence_variant=["SK", "SP", "OSP"], scan_options="",
                        acquisition="2D", sequence_name="*tse2d1_15", tr=6000.0, te=99.0, fa=150.0, etl=15,
                        bandwidth=220)),
    Acquisition("flair", "t2_tirm_tra_dark-fluid_5mm", "axial", 256, 230.0, 25, 5.0, 6.0,
                mr=dict(scanning_sequence=["SE", "IR"], sequence_variant=["SK", "SP", "MP", "OSP"], scan_options="IR",
                        acquisition="2D", sequence_name="*tir2d1_16", tr=9000.0, te=81.0, ti=2500.0, fa=150.0,
                        etl=16, bandwidth=287)),
    Acquisition("dwi", "ep2d_diff_3scan_trace_p2", "axial", 192, 230.0, 25, 5.0, 6.0,
                image_type=("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE", "ND", "NORM"),
                mr=dict(scanning_sequence=["EP"], sequence_variant=["SK", "SP"], scan_options=["PFP", "FS"],
                        acquisition="2D", sequence_name="*ep_b1000t", tr=5400.0, te=72.0, fa=90.0, etl=1,
                        bandwidth=1000), b_values=(0, 1000)),
    Acquisition("adc", "ep2d_diff_3scan_trace_p2_ADC", "axial", 192, 230.0, 25, 5.0, 6.0,
                image_type=("DERIVED", "PRIMARY", "DIFFUSION", "ADC", "ND", "NORM"),
                mr=dict(scanning_sequence=["EP"], sequence_variant=["SK", "SP"], scan_options=["PFP", "FS"],
                        acquisition="2D", sequence_name="*ep_b0_1000", tr=5400.0, te=72.0, fa=90.0, etl=1,
                        bandwidth=1000)),
    Acquisition("dsc", "ep2d_perf", "axial", 128, 220.0, 20, 5.0, 6.5, centre=(0.0, 0.0, 8.0),
                image_type=("ORIGINAL", "PRIMARY", "PERFUSION", "NONE", "ND", "NORM"), mr=_EPI_DSC, timepoints=60),
    Acquisition("ct_thick", "Head 5.0 H30s", "axial", 512, 240.0, 32, 5.0, 5.0, centre=(0.0, 0.0, -2.0),
                image_type=("ORIGINAL", "PRIMARY", "AXIAL"), ct=dict(kernel="H30s", kvp=120, ma=320)),
    Acquisition("ct_thin", "Head 1.0 H30s", "axial", 512, 240.0, 160, 1.0, 1.0, centre=(0.0, 0.0, -2.0),
                image_type=("ORIGINAL", "PRIMARY", "AXIAL"), ct=dict(kernel="H30s", kvp=120, ma=320)),
)


def _small(a: Acquisition) -> Acquisition:
    if a.key == "t1":
        return replace(a, matrix=64, slices=44, thickness=4.0, step=4.0)
    if a.key == "dsc":
        return replace(a, matrix=32, slices=8, thickness=10.0, step=16.0, timepoints=40)
    if a.key == "ct_thick":
        return replace(a, matrix=128, slices=16, thickness=10.0, step=10.0)
    if a.key == "ct_thin":
        return replace(a, matrix=128, slices=40, thickness=4.0, step=4.0)
    return replace(a, matrix=64, slices=10, thickness=10.0, step=14.0)


@dataclass(frozen=True)
class Variant:
    """A size of the study set: its series, and the grid the brain is built on (``downsample`` x 1 mm)."""

    name: str
    downsample: int
    acquisitions: dict[str, Acquisition]


VARIANTS = {
    "full": Variant("full", 1, {a.key: a for a in _FULL}),
    "small": Variant("small", 2, {a.key: _small(a) for a in _FULL}),
}


def variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {name!r}")
    return VARIANTS[name]


def acquisitions(name: str) -> dict[str, Acquisition]:
    return variant(name).acquisitions
