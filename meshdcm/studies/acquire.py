"""Each series of a study acquired: its pixels synthesised (mr, ct, dsc) and its instances written, one function per
series kind (:data:`ACQUIRE`)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..imagewriter import diffusion, to_stored, window
from .anatomy import Anatomy, HeadView
from .ct import ct_image
from .dsc import DSCSeries, dsc_series
from .headers import ct_header, mr_header, series_start
from .instances import mr_window, write_volume
from .layout import PatientSpec, StudySpec, uid
from .mr import adc_map, diffusion_images, flair_image, magnitude, t1_image, t2_image
from .protocol import Acquisition

__all__ = ["ACQUIRE", "Session"]


@dataclass
class Session:
    """One study being acquired: who, where the head lies, the lesion's zone fields and where files go. Series
    that later ones need (the diffusion images for the ADC map, the DSC series for the truth) are kept in ``made``."""

    variant: str
    patient: PatientSpec
    study: StudySpec
    anatomy: Anatomy
    view: HeadView
    zones: dict
    vessels: dict[str, np.ndarray]
    folder: Path
    made: dict = field(default_factory=dict)

    def rng(self, key: str) -> np.random.Generator:
        """A generator of its own for each series (the same noise on every run)."""
        seed = [ord(c) for c in f"{self.patient.key}/{self.study.key}/{key}"]
        return np.random.default_rng(seed)

    def sop_uid(self, key: str):
        return lambda number: uid(self.variant, self.patient.key, self.study.key, key, number)

    def times(self, key: str, seconds_per_slice: float):
        start = series_start(self.study, key)
        return lambda k: start + _dt.timedelta(seconds=k * seconds_per_slice)


def _mr_volume(s: Session, a: Acquisition, image: np.ndarray, *, header=None, first: int = 1,
               extra=None, windowed: bool = True) -> list[Path]:
    grid = a.grid(s.study.pose)
    stored = np.clip(np.rint(image), 0, 4095).astype(np.uint16)
    header = header if header is not None else mr_header(s.variant, s.patient, s.study, a)
    if windowed:
        window(header, *mr_window(stored))
    return write_volume(header, grid, stored, s.folder / a.key, sop_uid=s.sop_uid(a.key), first_number=first,
                        acquired=s.times(a.key, a.mr["tr"] / 1000.0 / max(1, grid.shape[0])), extra=extra,
                        bits_stored=12)


def acquire_t1(s: Session, a: Acquisition) -> list[Path]:
    grid = a.grid(s.study.pose)
    image = magnitude(t1_image(s.view, s.zones, grid), 10.0, s.rng(a.key))
    return _mr_volume(s, a, image)


def acquire_t2(s: Session, a: Acquisition) -> list[Path]:
    grid = a.grid(s.study.pose)
    return _mr_volume(s, a, magnitude(t2_image(s.view, s.zones, a, grid), 12.0, s.rng(a.key)))


def acquire_flair(s: Session, a: Acquisition) -> list[Path]:
    grid = a.grid(s.study.pose)
    return _mr_volume(s, a, magnitude(flair_image(s.view, s.zones, a, grid), 14.0, s.rng(a.key)))


def acquire_dwi(s: Session, a: Acquisition) -> list[Path]:
    grid = a.grid(s.study.pose)
    rng = s.rng(a.key)
    images = {b: magnitude(image, 10.0, rng) for b, image in diffusion_images(s.view, s.zones, a, grid).items()}
    s.made["dwi"] = images
    header = mr_header(s.variant, s.patient, s.study, a)
    window(header, *mr_window(np.clip(images[0], 0, 4095)))
    paths = []
    for index, (b, image) in enumerate(images.items()):

        def weighting(ds, k, b=b, index=index):
            diffusion(ds, b)
            ds.SequenceName = f"*ep_b{b}t" if b else "*ep_b0"
            ds.ImageType = list(a.image_type[:3]) + (["TRACEW"] if b else ["NONE"]) + list(a.image_type[4:])
            ds.AcquisitionNumber = index + 1

        paths += _mr_volume(s, a, image, header=header, first=index * grid.shape[0] + 1, extra=weighting,
                            windowed=False)
    return paths


def acquire_adc(s: Session, a: Acquisition) -> list[Path]:
    images = s.made["dwi"]
    b0, b1 = sorted(images)[:2]
    value = adc_map(images[b0], images[b1], b=float(b1))
    header = mr_header(s.variant, s.patient, s.study, a)
    window(header, "1200", "2400")  # an ADC display window (10^-6 mm2/s)
    return _mr_volume(s, a, value, header=header, windowed=False)


def acquire_dsc(s: Session, a: Acquisition) -> list[Path]:
    grid = a.grid(s.study.pose)
    series: DSCSeries = dsc_series(s.view, s.zones, a, grid, s.vessels, stroke=s.patient.stroke, rng=s.rng(a.key))
    s.made["dsc"] = series
    header = mr_header(s.variant, s.patient, s.study, a)
    header.NumberOfTemporalPositions = a.timepoints
    header.TemporalResolution = a.mr["tr"]
    window(header, *mr_window(series.pixels[: max(1, a.timepoints // 6)]))
    start = series_start(s.study, a.key)
    nz = grid.shape[0]
    paths = []
    for t in range(a.timepoints):

        def frame(ds, k, t=t):
            ds.AcquisitionNumber = t + 1
            ds.TemporalPositionIdentifier = t + 1

        def acquired(k, t=t):
            return start + _dt.timedelta(seconds=float(series.times[t, k]))

        paths += write_volume(header, grid, series.pixels[t], s.folder / a.key, sop_uid=s.sop_uid(a.key),
                              first_number=t * nz + 1, acquired=acquired, extra=frame, bits_stored=12)
    return paths


def acquire_ct(s: Session, a: Acquisition) -> list[Path]:
    grid = a.grid(s.study.pose)
    clot = 75.0 if s.patient.stroke else 45.0
    vessels = [(s.vessels["mca_right"], 45.0), (s.vessels["mca_left"], clot), (s.vessels["sagittal_sinus"], 55.0)]
    hu = ct_image(s.view, s.zones, grid, vessels, s.rng(a.key))
    stored = to_stored(np.maximum(hu, -1024.0), 1.0, -1024.0, np.int16)
    header = ct_header(s.variant, s.patient, s.study, a)
    return write_volume(header, grid, stored, s.folder / a.key, sop_uid=s.sop_uid(a.key),
                        acquired=s.times(a.key, 0.05 * grid.thickness))


#: Series key -> the function that acquires it (in protocol order: the ADC map needs the diffusion images).
ACQUIRE = {"t1": acquire_t1, "t2": acquire_t2, "flair": acquire_flair, "dwi": acquire_dwi, "adc": acquire_adc,
           "dsc": acquire_dsc, "ct_thick": acquire_ct, "ct_thin": acquire_ct}
