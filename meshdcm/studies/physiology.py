"""What the tissue does: perfusion and diffusion of grey and white matter, normal and in each zone of the stroke.

Perfusion (indicator dilution; Østergaard 2005, J Cereb Blood Flow Metab 25:2):

* normal grey matter CBF 60 ml/100 g/min, CBV 4.5 ml/100 g; white matter 25 and 2.0 (PET and DSC consensus values,
  e.g. Leenders et al. 1990, Brain 113:27; Helenius et al. 2003, Acta Radiol 44:538); MTT = 60 CBV / CBF s
  (central volume theorem);
* oligaemia (the territory's collateral-fed rest): flow 85 %, volume 105 %, 2 s late, dispersed over 1 s;
* penumbra: flow 50 %, volume 110 % (autoregulatory vasodilation), 4.5 s late, dispersed over 2 s: Tmax > 6 s,
  the DEFUSE 3 / EXTEND definition of tissue at risk (Albers et al. 2018, NEJM 378:708);
* core: flow 20 % (below the 30 % threshold of RAPID's core; Campbell et al. 2011, Stroke 42:3435), volume 50 %,
  5 s late, dispersed over 3 s.

A zone's tissue sees the arterial input delayed by ``delay`` and spread by an exponential of time constant
``dispersion`` (a collateral path; Calamante et al. 2006, MRM 55:1180), and keeps it with an exponential residue
exp(-t/MTT). Its true Tmax is then the time of the maximum of that dispersed, delayed residue: the delay plus
``tau * MTT / (MTT - tau) * ln(MTT / tau)``.

Diffusion: apparent diffusion coefficients (10^-6 mm^2/s) of grey matter 800, white matter 720, CSF 3000; the core's
tissue 65 % of normal (520 and 468; Schlaug et al. 1997, Neurology 49:113), the penumbra's normal.

The haematocrit correction and brain density are the analysis' own (:mod:`meshdcm.perfusion.constants`), so that a
perfect analysis finds these values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..perfusion.constants import KH, RHO

__all__ = ["ADC", "KH", "PERFUSION", "RHO", "Perfusion", "TISSUES", "ZONES", "adc"]

TISSUES = ("gm", "wm")
ZONES = ("normal", "oligaemia", "penumbra", "core")


@dataclass(frozen=True)
class Perfusion:
    """One tissue's perfusion: CBF (ml/100 g/min), CBV (ml/100 g), delay and dispersion of its input (s)."""

    cbf: float
    cbv: float
    delay: float = 0.0
    dispersion: float = 0.0

    @property
    def mtt(self) -> float:
        """Mean transit time, s (central volume theorem)."""
        return 60.0 * self.cbv / self.cbf

    @property
    def tmax(self) -> float:
        """Time to the maximum of the tissue's residue function as seen from the arterial input, s."""
        tau, mtt = self.dispersion, self.mtt
        if tau <= 0:
            return self.delay
        if math.isclose(tau, mtt):
            return self.delay + tau
        return self.delay + tau * mtt / (mtt - tau) * math.log(mtt / tau)


_NORMAL = {"gm": Perfusion(60.0, 4.5), "wm": Perfusion(25.0, 2.0)}
#: Changes of each zone: (flow factor, volume factor, delay s, dispersion s).
_ZONE_CHANGE = {"normal": (1.0, 1.0, 0.0, 0.0), "oligaemia": (0.85, 1.05, 2.0, 1.0),
                "penumbra": (0.5, 1.1, 4.5, 2.0), "core": (0.2, 0.5, 5.0, 3.0)}

#: (tissue, zone) -> its true perfusion.
PERFUSION = {(tissue, zone): Perfusion(round(_NORMAL[tissue].cbf * f, 3), round(_NORMAL[tissue].cbv * v, 3), d, s)
             for tissue in TISSUES for zone, (f, v, d, s) in _ZONE_CHANGE.items()}

_ADC_NORMAL = {"gm": 800.0, "wm": 720.0, "csf": 3000.0}
_ADC_CORE = 0.65


def adc(tissue: str, zone: str = "normal") -> float:
    """Apparent diffusion coefficient of a tissue in a zone, 10^-6 mm^2/s."""
    value = _ADC_NORMAL[tissue]
    return value * _ADC_CORE if zone == "core" and tissue in TISSUES else value


#: (tissue, zone) -> ADC, 10^-6 mm^2/s (CSF only as ("csf", "normal")).
ADC = {**{(t, z): adc(t, z) for t in TISSUES for z in ZONES}, ("csf", "normal"): adc("csf")}
