"""Loss-curve laws: the LR-annealing law and the multi-power law.

Fitted on one or a few runs, a law predicts the loss curve of any LR
schedule (Tissue et al., arXiv 2408.11029; Luo et al., arXiv 2503.12811).
"""

from wsd_jax.laws.annealing import AnnealingLaw, annealing_areas
from wsd_jax.laws.curve import Curve
from wsd_jax.laws.fitting import EXTRAPOLATE, FitError, FitWarning, Law, Prediction
from wsd_jax.laws.multipower import MultiPowerLaw
from wsd_jax.laws.optimize import optimize_schedule

__all__ = ["AnnealingLaw", "Curve", "EXTRAPOLATE", "FitError", "FitWarning",
           "Law", "MultiPowerLaw", "Prediction",
           "annealing_areas", "optimize_schedule"]
