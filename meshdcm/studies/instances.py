"""A series' instances on disk: one MR or CT Image Storage file per slice (and time point or b-value), with its
place in the volume (Image Plane module), its pixels and its acquisition time."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from ..imagewriter import ds_text, file_meta, image_instance, image_pixels, image_plane, write_instance
from .geometry import Grid

__all__ = ["mr_window", "write_volume"]


def mr_window(stored: np.ndarray) -> tuple[str, str]:
    """A window that shows a series' tissue (centre, width): 0 to its 99.5th percentile."""
    top = float(np.percentile(stored[stored > 0], 99.5)) if (stored > 0).any() else 1.0
    return ds_text(round(top / 2)), ds_text(round(top))


def write_volume(header: Dataset, grid: Grid, stored: np.ndarray, folder: Path, *, sop_uid: Callable[[int], str],
                 first_number: int = 1, acquired: Callable[[int], _dt.datetime],
                 extra: Callable[[Dataset, int], None] | None = None, bits_stored: int | None = None) -> list[Path]:
    """Write ``stored`` (slices, rows, columns) as one instance per slice, numbered from ``first_number``.

    ``sop_uid(number)`` names each instance, ``acquired(k)`` says when slice ``k`` was acquired; ``extra(ds, k)``
    adds what is particular to the series (a b-value, a temporal position).
    """
    orientation = [ds_text(v) for v in (*grid.row_dir, *grid.col_dir)]
    spacing = [ds_text(grid.dr), ds_text(grid.dc)]
    paths = []
    for k in range(grid.shape[0]):
        number = first_number + k
        ds = image_instance(header, sop_instance_uid=sop_uid(number), instance_number=number)
        image_plane(ds, position=[ds_text(v) for v in grid.position(k)], orientation=orientation,
                    pixel_spacing=spacing, slice_thickness=ds_text(grid.thickness),
                    spacing_between_slices=ds_text(grid.step), slice_location=ds_text(grid.slice_location(k)))
        when = acquired(k).strftime("%H%M%S.%f")
        ds.AcquisitionNumber = 1
        ds.AcquisitionTime = ds.ContentTime = when
        if extra is not None:
            extra(ds, k)
        image_pixels(ds, stored[k], bits_stored=bits_stored, pixel_range=True)
        file_meta(ds, implementation_version="MESHDCM_STUDY")
        paths.append(write_instance(ds, folder / f"IM{number:05d}.dcm"))
    return paths

