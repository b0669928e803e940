"""Where each image lies: a series' voxel grid in scanner coordinates, the head's pose in the scanner, resampling.

Coordinates are DICOM patient coordinates (LPS, mm). A :class:`Grid` is the geometry of one image series as the
Image Plane module (PS3.3 C.7.6.2) writes it: voxel (i = column, j = row, k = slice) lies at
``origin + i * dc * row_dir + j * dr * col_dir + k * step * normal``. A :class:`Pose` places the patient's head in a
scanner (each session its own: the head lies a little differently on each table). :func:`resample` samples a
volume given in any other frame on a grid, averaging over each output voxel (a 5 mm slice is the mean of 5 mm of
tissue: partial volume).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["AXIAL", "SAGITTAL", "Grid", "Pose", "resample"]

#: Direction cosines (row direction, column direction) of the usual planes.
AXIAL = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
SAGITTAL = ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0))


@dataclass(frozen=True)
class Grid:
    """The voxel grid of one series: ``shape`` (slices, rows, columns), spacing between rows ``dr`` and columns
    ``dc``, between slice centres ``step``, slice ``thickness`` (all mm), direction cosines and the position of the
    first voxel of the first slice."""

    shape: tuple[int, int, int]
    dr: float
    dc: float
    step: float
    thickness: float
    row_dir: tuple[float, float, float]
    col_dir: tuple[float, float, float]
    origin: tuple[float, float, float]

    @classmethod
    def centred(cls, shape, *, pixel: float, step: float, thickness: float | None = None, plane=AXIAL,
                centre=(0.0, 0.0, 0.0)) -> Grid:
        """A grid of square pixels centred on ``centre``; slices ordered along the plane's normal (feet to head for
        axial, right to left for sagittal)."""
        nz, ny, nx = shape
        row, col = (np.asarray(v, dtype=np.float64) for v in plane)
        normal = np.cross(row, col)
        origin = (np.asarray(centre, dtype=np.float64) - row * pixel * (nx - 1) / 2 - col * pixel * (ny - 1) / 2
                  - normal * step * (nz - 1) / 2)
        return cls(tuple(int(n) for n in shape), float(pixel), float(pixel), float(step),
                   float(thickness if thickness is not None else step), tuple(map(float, row)), tuple(map(float, col)),
                   tuple(float(round(v, 4)) for v in origin))

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)

    @property
    def affine(self) -> np.ndarray:
        """4x4: (column i, row j, slice k, 1) -> LPS mm (the perfusion reader's ``affine_lps``)."""
        a = np.eye(4)
        a[:3, 0] = np.asarray(self.row_dir) * self.dc
        a[:3, 1] = np.asarray(self.col_dir) * self.dr
        a[:3, 2] = self.normal * self.step
        a[:3, 3] = self.origin
        return a

    @property
    def voxel_ml(self) -> float:
        """The volume a voxel stands for (pixel area times the distance between slice centres), in ml."""
        return self.dr * self.dc * self.step / 1000.0

    def position(self, k: int) -> list[float]:
        """ImagePositionPatient of slice ``k``."""
        return [round(float(v), 4) for v in np.asarray(self.origin) + self.normal * self.step * k]

    def slice_location(self, k: int) -> float:
        return round(float(np.dot(self.position(k), self.normal)), 4)

    def coarser(self, factor: int) -> Grid:
        """The same field of view with ``factor`` times fewer rows and columns (the same slices)."""
        nz, ny, nx = self.shape
        row, col = np.asarray(self.row_dir), np.asarray(self.col_dir)
        centre = np.asarray(self.origin) + row * self.dc * (nx - 1) / 2 + col * self.dr * (ny - 1) / 2
        shape = (nz, ny // factor, nx // factor)
        new_dr, new_dc = self.dr * ny / shape[1], self.dc * nx / shape[2]
        origin = centre - row * new_dc * (shape[2] - 1) / 2 - col * new_dr * (shape[1] - 1) / 2
        return Grid(shape, new_dr, new_dc, self.step, self.thickness, self.row_dir, self.col_dir,
                    tuple(float(v) for v in origin))


@dataclass(frozen=True)
class Pose:
    """How the head lies in a scanner: rotations (degrees) about the left-right (pitch: chin down is positive),
    anterior-posterior (roll) and foot-head (yaw) axes, then a shift (mm), from head to scanner coordinates."""

    pitch: float = 0.0
    roll: float = 0.0
    yaw: float = 0.0
    shift: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def matrix(self) -> np.ndarray:
        """4x4 head -> scanner (LPS mm)."""
        a, b, c = np.radians([self.pitch, self.roll, self.yaw])
        rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
        ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
        rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
        m = np.eye(4)
        m[:3, :3] = rz @ ry @ rx
        m[:3, 3] = self.shift
        return m


#: scipy.ndimage wants (k, j, i) output order; our grid affines take (i, j, k).
_KJI_TO_IJK = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def resample(volume: np.ndarray, to_volume: np.ndarray, grid: Grid, *, order: int = 1, average: bool = True,
             fill: float = 0.0) -> np.ndarray:
    """``volume`` sampled on ``grid``: a float32 (slices, rows, columns) array.

    ``to_volume`` (4x4) maps scanner LPS mm to ``volume``'s array indices. With ``average`` the volume is first
    smoothed by a box as large as an output voxel (its slice thickness across), so that a coarse voxel holds the
    mean of the tissue it covers rather than a point sample.
    """
    m = to_volume @ grid.affine @ _KJI_TO_IJK
    size = np.ones(3, dtype=int)
    if average:
        extent = np.abs(m[:3, :3]) @ np.array([grid.thickness / grid.step, 1.0, 1.0])
        size = 2 * np.rint(np.maximum(extent - 1, 0) / 2).astype(int) + 1  # odd: a box centred on the voxel
    # only the part of the volume the grid covers (and the box's margin) is smoothed and read
    corners = np.array([[k, j, i, 1.0] for k in (0, grid.shape[0] - 1) for j in (0, grid.shape[1] - 1)
                        for i in (0, grid.shape[2] - 1)])
    reach = corners @ m[:3].T
    lo = np.clip(np.floor(reach.min(0)).astype(int) - size - 1, 0, volume.shape)
    hi = np.clip(np.ceil(reach.max(0)).astype(int) + size + 2, 0, volume.shape)
    if np.any(hi <= lo):
        return np.full(grid.shape, fill, dtype=np.float32)
    data = np.asarray(volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=np.float32)
    if (size > 1).any():
        data = ndimage.uniform_filter(data, size=tuple(size), mode="constant", cval=fill)
    matrix, offset = m[:3, :3], m[:3, 3] - lo
    # read the volume in the output's order (its columns fastest): ten times faster than striding across memory
    order_in = [int(np.argmax(np.abs(matrix[:, d]))) for d in range(3)]
    if sorted(order_in) == [0, 1, 2] and order_in != [0, 1, 2]:
        data = np.ascontiguousarray(data.transpose(order_in))
        matrix, offset = matrix[order_in], offset[order_in]
    return ndimage.affine_transform(data, matrix, offset=offset, output_shape=grid.shape, order=order,
                                    mode="constant", cval=fill, output=np.float32)
