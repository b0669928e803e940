"""The thresholds and cleaning rules of the stroke analysis, as one frozen value object (docs/stroke.md says why each).

Defaults are module constants, the published values they come from named beside them; a caller who needs other
values builds ``StrokeRules(...)`` once and passes it along (an invalid value is refused on construction, naming
the argument).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["StrokeRules", "DEFAULT_RULES", "ALGORITHM_NAME", "ALGORITHM_VERSION"]

#: How the algorithm names itself in the SEG (Segmentation Algorithm Identification) and the SR (TID 4019).
ALGORITHM_NAME = "meshdcm stroke"
ALGORITHM_VERSION = "1.1"  # the rules' version: a change of a rule or of any default below makes it 1.2, 2.0, ...
# 1.1: the ADC core is counted on the ADC's own grid (1.0: on the ADC resampled onto the DSC grid)

ADC_CORE = 620.0  # x10^-6 mm^2/s: DEFUSE-3 / RAPID diffusion core (Albers et al. 2018, Purushotham et al. 2015)
ADC_CSF = 2000.0  # x10^-6 mm^2/s: above this a voxel is CSF, never core
RCBF_CORE = 0.30  # CBF < 30 % of normal tissue: RAPID's CT perfusion core (Campbell et al. 2011/2012)
TMAX_HYPOPERFUSION = 6.0  # s: DEFUSE-3 / RAPID critical hypoperfusion (Albers et al. 2018; Olivot et al. 2009)
TMAX_SEVERE = 10.0  # s: severe hypoperfusion; Tmax>10 / Tmax>6 = hypoperfusion intensity ratio (Olivot et al. 2014)
TMAX_NORMAL = 4.0  # s: voxels below this are "normal tissue" for the rCBF reference
RCBV_CSF = 0.20  # CBV < 20 % of normal tissue (no blood) ...
CSF_SIGNAL = 1.2  # ... and a baseline signal >= 1.2 x normal tissue's (T2*-bright): CSF, never core or hypoperfusion
DARK_SIGNAL = 0.5  # ... or < 0.5 x normal tissue's: background, bone, susceptibility drop-out; never either
MIN_CORE_ML = 1.0  # connected components of the core below this are removed
MIN_TMAX_ML = 5.0  # ... of the Tmax>6 and Tmax>10 regions
DEFUSE3_CORE_ML = 70.0  # DEFUSE-3 imaging criteria (Albers et al. 2018): core < 70 ml,
DEFUSE3_RATIO = 1.8  # mismatch ratio >= 1.8,
DEFUSE3_MISMATCH_ML = 15.0  # mismatch volume >= 15 ml


@dataclass(frozen=True)
class StrokeRules:
    """Thresholds (ADC in x10^-6 mm^2/s, Tmax in s, ratios as fractions, volumes in ml) and cleaning sizes."""

    adc_core: float = ADC_CORE
    adc_csf: float = ADC_CSF
    rcbf_core: float = RCBF_CORE
    tmax_hypoperfusion: float = TMAX_HYPOPERFUSION
    tmax_severe: float = TMAX_SEVERE
    tmax_normal: float = TMAX_NORMAL
    rcbv_csf: float = RCBV_CSF
    csf_signal: float = CSF_SIGNAL
    dark_signal: float = DARK_SIGNAL
    min_core_ml: float = MIN_CORE_ML
    min_tmax_ml: float = MIN_TMAX_ML
    defuse3_core_ml: float = DEFUSE3_CORE_ML
    defuse3_ratio: float = DEFUSE3_RATIO
    defuse3_mismatch_ml: float = DEFUSE3_MISMATCH_ML

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not isinstance(value, (int, float)) or value != value or value < 0:
                raise ValueError(f"StrokeRules.{name} must be a number >= 0 (got {value!r})")
        if not 0 < self.rcbf_core < 1:
            raise ValueError(f"StrokeRules.rcbf_core is a fraction of normal CBF, between 0 and 1 (got {self.rcbf_core})")
        if self.tmax_severe <= self.tmax_hypoperfusion:
            raise ValueError("StrokeRules.tmax_severe must be above tmax_hypoperfusion "
                             f"({self.tmax_severe} <= {self.tmax_hypoperfusion})")
        if self.adc_csf <= self.adc_core:
            raise ValueError(f"StrokeRules.adc_csf must be above adc_core ({self.adc_csf} <= {self.adc_core})")

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_RULES = StrokeRules()
