"""Physiological constants of DSC quantification (Rempp et al. 1994, Radiology 193:637).

``KH = (1 - Hct_large) / (1 - Hct_small) = (1 - 0.45) / (1 - 0.25)`` corrects for the different
haematocrit of large and small vessels; ``RHO`` is brain tissue density in g/ml.
"""

KH = (1.0 - 0.45) / (1.0 - 0.25)
RHO = 1.04

__all__ = ["KH", "RHO"]
