"""AlgoPerf's scoring (Dahl et al., arXiv 2306.07179), from its definitions.

Implemented from ``scoring/performance_profile.py`` of
mlcommons/algorithmic-efficiency as read (no code copied):

- time to target of one study: among its trials, the one that reaches the
  target at the earliest *evaluation index* (ties: the first trial), and that
  trial's time (``global_step`` or ``score`` seconds) at that evaluation;
  ``inf`` when no trial reaches it (``get_best_trial_index``);
- a submission's time on a workload: the median over studies (``np.median``,
  so a miss in more than half the studies is ``inf``);
- a time over ``4 x`` the best submission's on that workload is ``inf``;
- performance ratio ``r = t / t_best``; ``rho_s(tau)`` = share of the
  workloads present with ``r <= tau`` on ``num_points`` evenly spaced ``tau``
  in ``[1, r_max]``; score = trapezoid-rule area under ``rho_s`` divided by
  ``r_max - 1``.

AlgoPerf divides ``rho`` by its fixed number of base workloads; here it is
the number of workloads present (DESIGN.md).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

R_MAX = 4.0
NUM_POINTS = 100
INF = float("inf")


def first_reached(values: Sequence[float], target: float,
                  minimize: bool = True) -> int:
  """Index of the first evaluation whose value reaches ``target`` (``<=``
  when minimizing, ``>=`` otherwise); -1 if none does (NaN never does)."""
  v = np.asarray(values, np.float64)
  hit = v <= target if minimize else v >= target
  hit &= ~np.isnan(v)
  return int(np.argmax(hit)) if hit.any() else -1


def study_time(trials: Sequence[Mapping[str, Sequence[float]]], metric: str,
               target: float, time_col: str, minimize: bool = True) -> float:
  """Time to target of one study: the trial that reaches ``target`` at the
  earliest evaluation (the first such trial on a tie), read at that
  evaluation in ``time_col``; ``inf`` if no trial reaches it.

  Args:
    trials: per trial, columns (``global_step``, ``score``, ``metric``) of its
      evaluations in order.
    metric: the metric column.
    target: the workload's target.
    time_col: ``global_step`` or ``score``.
    minimize: whether lower metric values are better.
  """
  best_trial, best_index = -1, -1
  for i, t in enumerate(trials):
    k = first_reached(t[metric], target, minimize)
    if k >= 0 and (best_index < 0 or k < best_index):
      best_trial, best_index = i, k
  if best_trial < 0:
    return INF
  return float(trials[best_trial][time_col][best_index])


def median_over_studies(times: Sequence[float]) -> float:
  """A submission's time on a workload: ``np.median`` over its studies."""
  return float(np.median(np.asarray(times, np.float64)))


def apply_cutoff(times: Mapping[str, Mapping[str, float]],
                 r_max: float = R_MAX) -> dict[str, dict[str, float]]:
  """``times[submission][workload]`` with every time over ``r_max`` times the
  best submission's on that workload set to ``inf`` (a miss)."""
  workloads = sorted({w for row in times.values() for w in row})
  best = {w: min((row.get(w, INF) for row in times.values()), default=INF)
          for w in workloads}
  return {s: {w: (INF if row.get(w, INF) > r_max * best[w] else
                  float(row.get(w, INF))) for w in workloads}
          for s, row in times.items()}


def ratios(times: Mapping[str, Mapping[str, float]],
           r_max: float = R_MAX) -> dict[str, dict[str, float]]:
  """Performance ratios ``t / t_best`` after the ``r_max`` cutoff (``inf``
  for a miss, and for every submission where none reached the target)."""
  cut = apply_cutoff(times, r_max)
  workloads = sorted({w for row in cut.values() for w in row})
  best = {w: min(row[w] for row in cut.values()) for w in workloads}
  return {s: {w: (row[w] / best[w] if np.isfinite(best[w]) and
                  np.isfinite(row[w]) else INF) for w in workloads}
          for s, row in cut.items()}


def taus(r_max: float = R_MAX, num_points: int = NUM_POINTS) -> np.ndarray:
  """The ``tau`` grid: ``num_points`` evenly spaced values in ``[1, r_max]``."""
  return np.linspace(1.0, r_max, num_points)


def profiles(times: Mapping[str, Mapping[str, float]], r_max: float = R_MAX,
             num_points: int = NUM_POINTS) -> dict[str, np.ndarray]:
  """``rho_s(tau)`` on :func:`taus`: the share of the workloads present whose
  ratio is ``<= tau``."""
  r = ratios(times, r_max)
  grid = taus(r_max, num_points)
  out = {}
  for s, row in r.items():
    v = np.asarray([row[w] for w in sorted(row)], np.float64)
    out[s] = (v[None, :] <= grid[:, None]).sum(axis=1) / max(len(v), 1)
  return out


def scores(times: Mapping[str, Mapping[str, float]], r_max: float = R_MAX,
           num_points: int = NUM_POINTS) -> dict[str, float]:
  """The benchmark score: trapezoid area under ``rho_s`` over ``[1, r_max]``
  divided by ``r_max - 1`` (1: fastest on every workload; 0: never within
  ``r_max`` of the fastest)."""
  grid = taus(r_max, num_points)
  return {s: float(np.trapezoid(rho, grid) / (r_max - 1.0))
          for s, rho in profiles(times, r_max, num_points).items()}


def geomean_speedup(times: Mapping[str, Mapping[str, float]], submission: str,
                    baseline: str = "cosine") -> float:
  """Geometric mean over the workloads both reached of ``t_baseline / t``;
  NaN when there are none."""
  a, b = times[submission], times.get(baseline, {})
  pairs = [(b[w], a[w]) for w in a if w in b and np.isfinite(a[w])
           and np.isfinite(b[w]) and a[w] > 0]
  if not pairs:
    return float("nan")
  return float(np.exp(np.mean([np.log(x / y) for x, y in pairs])))
