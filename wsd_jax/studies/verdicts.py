"""Paired comparisons over seeds and the verdict rule every study uses.

A claim is a one-sided statement ``mean(d) < margin`` about per-seed paired
differences ``d`` (same seed: same data and initialisation for both
methods). :func:`verdict` says *reproduced* when the whole two-sided
interval is below the margin, *refuted* when it is wholly at or above it,
else *inconclusive*: a rule that fails on numbers that violate the claim.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats

LEVEL = 0.95  # two-sided t-interval of a paired mean


def paired(a: Sequence[float], b: Sequence[float], level: float = LEVEL
           ) -> dict:
  """Paired differences ``a - b`` over seeds: per seed, mean and the
  two-sided Student-t interval (infinite for fewer than 2 seeds)."""
  d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  mean, n = float(d.mean()), d.size
  if n < 2 or not np.all(np.isfinite(d)):
    lo, hi = -math.inf, math.inf
  else:
    half = stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / math.sqrt(n)
    lo, hi = mean - half, mean + half
  return {"per_seed": d.tolist(), "mean": mean, "ci": [float(lo), float(hi)],
          "n": int(n), "interval": f"{level:.0%} Student-t, paired"}


def verdict(ci: Sequence[float], margin: float) -> str:
  """The claim ``mean difference < margin``: *reproduced* if the interval
  is wholly below the margin, *refuted* if wholly at or above it, else
  *inconclusive*."""
  lo, hi = ci
  if hi < margin:
    return "reproduced"
  if lo >= margin:
    return "refuted"
  return "inconclusive"


def combine(verdicts: Sequence[str]) -> str:
  """A claim made of parts: refuted if one is, reproduced if all are."""
  if "refuted" in verdicts:
    return "refuted"
  return "reproduced" if all(v == "reproduced" for v in verdicts) else (
      "inconclusive")
