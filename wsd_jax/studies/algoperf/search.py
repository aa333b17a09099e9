"""Search spaces in AlgoPerf's JSON format and quasirandom points from them.

A space maps each hyperparameter to ``{"min", "max", "scaling"}``
(``scaling`` ``"linear"`` or ``"log"``) or to ``{"feasible_points": [...]}``.
Points come from a scrambled, seeded Halton sequence
(``scipy.stats.qmc.Halton``; Bousquet et al., arXiv 1706.03200), one
dimension per hyperparameter in sorted-name order; a feasible-points
dimension picks point ``floor(u * n)``.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np
from scipy.stats import qmc

SCALINGS = ("linear", "log")


def check_space(space: Mapping[str, Mapping[str, Any]]) -> None:
  """Refuses a malformed search space.

  Raises:
    ValueError: naming the hyperparameter and what is wrong.
  """
  if not space:
    raise ValueError("a search space needs at least one hyperparameter")
  for name, d in space.items():
    if "feasible_points" in d:
      if not list(d["feasible_points"]):
        raise ValueError(f"{name}: feasible_points is empty")
      continue
    if not {"min", "max"} <= set(d):
      raise ValueError(f"{name}: needs min and max, or feasible_points; "
                       f"got {dict(d)}")
    scaling = d.get("scaling", "linear")
    if scaling not in SCALINGS:
      raise ValueError(f"{name}: scaling {scaling!r} is not one of "
                       f"{SCALINGS}")
    lo, hi = float(d["min"]), float(d["max"])
    if not lo <= hi or (scaling == "log" and lo <= 0):
      raise ValueError(f"{name}: bad range [{lo}, {hi}] for {scaling} scaling")


def load_space(path: str) -> dict:
  """A search space from a JSON file (checked)."""
  with open(path) as f:
    space = json.load(f)
  check_space(space)
  return space


def _value(d: Mapping[str, Any], u: float) -> Any:
  if "feasible_points" in d:
    points = list(d["feasible_points"])
    return points[min(int(u * len(points)), len(points) - 1)]
  lo, hi = float(d["min"]), float(d["max"])
  if d.get("scaling", "linear") == "log":
    return float(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))))
  return float(lo + u * (hi - lo))


def points(space: Mapping[str, Mapping[str, Any]], num: int, seed: int
           ) -> list[dict[str, Any]]:
  """``num`` quasirandom hyperparameter points of ``space``: the first
  ``num`` points of a Halton sequence scrambled with ``seed``.

  The same ``(space, num, seed)`` gives the same points.
  """
  check_space(space)
  names = sorted(space)
  u = qmc.Halton(d=len(names), scramble=True, seed=int(seed)).random(int(num))
  return [{n: _value(space[n], float(row[j])) for j, n in enumerate(names)}
          for row in np.asarray(u)]
