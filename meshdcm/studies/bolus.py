"""The contrast bolus: the arterial input, the venous output and each tissue's concentration over time.

All curves are computed on a fine clock (``DT`` = 0.05 s) from the start of the DSC series, in mmol/l, then sampled
at each slice's acquisition time.

* Arterial input (the middle cerebral artery): a gamma variate first pass ``A (t - t0)^3 exp(-(t - t0)/1.5 s)``
  (Rempp et al. 1994, Radiology 193:637; alpha and beta of Wu et al. 2003, MRM 50:164) peaking at ``peak`` mmol/l,
  plus recirculation: a second, lower and wider gamma variate 9 s later holding 30 % of the first pass's amount, and
  the steady state the agent settles at once mixed in the blood (7 % of the peak).
* Venous output (the superior sagittal sinus): the arterial input delayed by 5.5 s and dispersed (exponential,
  2.5 s); the dispersion kernel has unit area, so the venous curve's area is the arterial one's (no agent is lost on
  the way), which is what makes the venous output a reference for the arterial input's partial volume.
* Tissue: ``C_t(t) = (rho / kH) CBF (C_in (x) R)(t)`` with ``C_in`` the arterial input delayed and dispersed as the
  zone says and ``R(t) = exp(-t / MTT)`` (Østergaard et al. 1996, MRM 36:715); CBF in ml/g/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .physiology import KH, RHO, Perfusion

__all__ = ["DT", "Bolus", "delayed", "dispersed", "effective_residue", "tissue_curve"]

DT = 0.05  # s


def _gamma(t: np.ndarray, t0: float, alpha: float, beta: float) -> np.ndarray:
    s = np.clip(t - t0, 0.0, None)
    return s**alpha * np.exp(-s / beta)


def delayed(curve: np.ndarray, delay: float) -> np.ndarray:
    """``curve`` (on the fine clock) ``delay`` seconds later (linear interpolation; zero before)."""
    if delay <= 0:
        return curve
    t = np.arange(curve.size) * DT
    return np.interp(t - delay, t, curve, left=0.0)


def dispersed(curve: np.ndarray, tau: float) -> np.ndarray:
    """``curve`` convolved with a unit-area exponential of time constant ``tau`` s (its area is kept)."""
    if tau <= 0:
        return curve
    t = np.arange(curve.size) * DT
    kernel = np.exp(-t / tau)
    kernel /= kernel.sum()
    return np.convolve(curve, kernel)[: curve.size]


def effective_residue(p: Perfusion, n: int) -> np.ndarray:
    """The residue function a tissue shows against the arterial input (delayed, dispersed; 1 at its start when not
    dispersed), ``n`` samples on the fine clock: what deconvolution would ideally recover, divided by CBF."""
    t = np.arange(n) * DT
    return delayed(dispersed(np.exp(-t / p.mtt), p.dispersion), p.delay)


def tissue_curve(arterial: np.ndarray, p: Perfusion) -> np.ndarray:
    """Tissue concentration (mmol/l) of a tissue of perfusion ``p`` fed by ``arterial`` (fine clock)."""
    t = np.arange(arterial.size) * DT
    feed = delayed(dispersed(arterial, p.dispersion), p.delay)
    flow = p.cbf / 6000.0  # ml/g/s
    return (RHO / KH) * flow * np.convolve(feed, np.exp(-t / p.mtt))[: arterial.size] * DT


@dataclass(frozen=True)
class Bolus:
    """The injected bolus as it reaches the brain; times in s from the start of the series."""

    arrival: float = 15.0
    peak: float = 8.0  # mmol/l, first pass in the artery
    alpha: float = 3.0
    beta: float = 1.5
    recirculation: float = 0.3  # amount of the second pass relative to the first
    recirculation_delay: float = 9.0
    recirculation_beta: float = 3.0
    steady_state: float = 0.07  # of the peak
    steady_state_tau: float = 15.0
    vein_delay: float = 5.5
    vein_dispersion: float = 2.5

    def clock(self, duration: float) -> np.ndarray:
        """The fine clock, long enough for ``duration`` s plus a margin."""
        return np.arange(0.0, duration + 20.0, DT)

    def arterial(self, t: np.ndarray) -> np.ndarray:
        """Arterial concentration (mmol/l) at ``t``."""
        first = _gamma(t, self.arrival, self.alpha, self.beta)
        first_peak = (self.alpha * self.beta) ** self.alpha * math.exp(-self.alpha)
        first = first / first_peak
        first_area = math.gamma(self.alpha + 1) * self.beta ** (self.alpha + 1) / first_peak
        second = _gamma(t, self.arrival + self.recirculation_delay, self.alpha, self.recirculation_beta)
        second_area = math.gamma(self.alpha + 1) * self.recirculation_beta ** (self.alpha + 1)
        second = second * (self.recirculation * first_area / second_area)
        mixed = self.steady_state * (1.0 - np.exp(-np.clip(t - self.arrival - 4.0, 0.0, None) / self.steady_state_tau))
        return self.peak * (first + second + mixed)

    def venous(self, arterial: np.ndarray) -> np.ndarray:
        """Venous output (mmol/l) on the fine clock: the arterial curve delayed and dispersed, area kept."""
        return delayed(dispersed(arterial, self.vein_dispersion), self.vein_delay)
