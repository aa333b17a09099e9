"""The multi-power law of Luo et al. (arXiv 2503.12811).

    L(t)  = L0 + A * (S1(t) + S_W)^(-alpha) - LD(t)
    LD(t) = B * sum_{k=1..t} (eta_{k-1} - eta_k) * G(eta_k^(-gamma) * S_k(t))
    G(x)  = 1 - (C * x + 1)^(-beta)
    S_k(t) = sum_{tau=k..t} eta_tau

with ``eta_tau = lrs[tau - 1]``, ``eta_0 = eta_1`` and ``S_W`` the sum of
the warmup LRs (as run by default; ``count_warmup_at_peak=True`` counts them
at the peak). LR changes during warmup do not enter ``LD``. All seven
parameters are positive.

Evaluation: ``LD`` is needed only at the observed steps and only steps ``k``
where the LR changes contribute, so ``predict`` is one (num_observed x
num_changes) masked array op; for WSD most drops are zero and are dropped
before jitting. A cosine curve changes the LR at every step, which makes
that matrix too big for a fit's hundreds of evaluations, so the fit
objective merges drops (see ``_blocked_terms``): for each observed step
``t`` the ``N_NEAR`` most recent drops are kept exactly and older ones are
merged into blocks whose LR area grows geometrically (by ``1 + RHO``) with
their LR-area distance to ``t``; a block carries its total drop at its
|drop|-weighted mean ``S_k(t)`` and ``eta_k``. That is a midpoint rule on
the smooth far part of ``G``: the tests check it against the exact sum
(relative error of the loss below 1e-6), and the fit costs
O(num_observed x log T) per evaluation.

Fitting (``wsd_jax.laws.fitting``): by default a grid over
``(alpha, beta, gamma, C)`` with ``(L0, A, B)`` from linear least squares at
each grid point, then L-BFGS-B on all seven parameters (log coordinates,
bounded) from the best few grid points; Huber loss (delta 1e-3) on log
residuals as in the paper. ``method="adamw"`` is Luo et al.'s own code
instead: L-BFGS-B on a surrogate (``_paper_start``), then at most 200 AdamW
steps on the natural parameters. The prior (``prior_weight``) pulls
``alpha`` toward 0.5 (Luo et al.'s fits: 0.43-0.51) and ``C, beta, gamma``
toward the values their code starts from (1, 0.5, 0.5). ``B, C, beta, gamma`` describe the response to an LR decrease, so a
fit on curves without one (a constant run alone) raises ``FitError``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats

from wsd_jax.laws import solvers
from wsd_jax.laws.curve import Curve
from wsd_jax.laws.fitting import HUBER_DELTA, Law, effective_lrs, lr_drops


class MultiPowerLaw(Law):
  """The multi-power law (Luo et al., arXiv 2503.12811); see module doc.

  ``MultiPowerLaw.fit(curves, warmup_steps=0, count_warmup_at_peak=False)``.
  """

  param_names = ("L0", "A", "alpha", "B", "C", "beta", "gamma")
  linear_names = ("L0", "A", "B")
  positive_bounds = {"A": (1e-8, 1e4), "alpha": (1e-3, 5.0),
                     "B": (1e-6, 1e8), "C": (1e-6, 1e6), "beta": (1e-3, 10.0),
                     "gamma": (1e-4, 3.0)}
  start_grid = {"alpha": (0.3, 0.6), "C": (0.5, 2.0, 8.0),
                "beta": (0.3, 0.6, 1.0), "gamma": (0.3, 0.6, 0.9)}
  default_options = {"warmup_steps": 0, "count_warmup_at_peak": False}
  law_name = "multi-power law"
  decay_params = ("B", "C", "beta", "gamma")  # LD = 0 without an LR decrease
  requires_decrease = True
  # Luo et al.'s published alpha (0.43-0.51 for 25M-400M) and their AdamW
  # start for C, beta, gamma.
  prior = {"alpha": 0.5, "C": 1.0, "beta": 0.5, "gamma": 0.5}
  exponent_names = ("alpha", "beta", "gamma")

  @classmethod
  def _paper_start(cls, curves: Sequence[Curve], options: Mapping[str, Any],
                   starts: np.ndarray) -> np.ndarray:
    """Luo et al.'s ``initialize_params`` and ``generate_init_params``.

    The surrogate ``L0 + A * S1^-alpha - B * (eta_max - eta_t)`` (an LR
    decrease fully realised at once) is fitted by L-BFGS-B (parameters >= 0,
    numerical gradients) on the summed Huber loss of the log residuals from
    their grid: ``L0`` in ``min loss +- 0.2`` (5), ``A`` and ``alpha`` from a
    log-log regression of ``loss - min loss + 0.01`` on ``S1`` +- 0.1 (3
    each), ``B`` in ``[100, 1000] * 3e-4 / eta_max`` (3; their grid was for
    peak 3e-4). Then ``C = 1, beta = 0.5, gamma = 0.5``.
    """
    del starts
    s1, eta, ys = [], [], []
    for c in curves:
      eff = np.asarray(effective_lrs(c.lrs, options["warmup_steps"],
                                     options["count_warmup_at_peak"]))
      s1.append(np.cumsum(eff)[c.steps - 1])
      eta.append(eff[c.steps - 1])
      ys.append(c.losses)
    l0, a, alpha, b = _surrogate_fit(*map(np.concatenate, (s1, eta, ys)),
                                     max(float(np.max(c.lrs)) for c in curves))
    return np.asarray([l0, a, alpha, b, 1.0, 0.5, 0.5])

  @classmethod
  def _terms(cls, lrs: jax.Array, steps: np.ndarray,
             options: Mapping[str, Any], mode: str) -> dict[str, jax.Array]:
    drops = lr_drops(lrs, options["warmup_steps"])
    if mode == "blocked":
      return _blocked_terms(np.asarray(lrs), np.asarray(drops), steps)
    csum = jnp.cumsum(lrs)
    index = np.arange(lrs.shape[0])
    if mode == "sparse":  # keep only the steps where the LR changes
      index = np.flatnonzero(np.asarray(drops))
      index = index[index < np.max(steps)]
      if index.size == 0:
        index = np.zeros(1, np.int64)
    mask = index[None, :] <= (steps - 1)[:, None]
    span = csum[steps - 1][:, None] - (csum - lrs)[index][None, :]
    return {"s1": csum[steps - 1],
            "span": jnp.where(mask, span, 0.0),  # S_k(t), 0 where k > t
            "log_eta": jnp.log(jnp.maximum(lrs[index], 1e-30))[None, :],
            "drop": jnp.where(mask, drops[index][None, :], 0.0)}

  @staticmethod
  def _loss(p: Mapping[str, jax.Array], terms: Mapping[str, jax.Array]
            ) -> jax.Array:
    x = jnp.exp(-p["gamma"] * terms["log_eta"]) * terms["span"]  # eta^-gamma S
    g = -jnp.expm1(-p["beta"] * jnp.log1p(p["C"] * x))  # 1 - (Cx + 1)^-beta
    ld = p["B"] * jnp.sum(terms["drop"] * g, axis=-1)
    return p["L0"] + p["A"] * terms["s1"]**(-p["alpha"]) - ld


RHO = 0.1  # relative LR-area width of a merged block
N_NEAR = 16  # most recent drops kept exactly at each observed step


def _blocked_terms(lrs: np.ndarray, drops: np.ndarray, steps: np.ndarray
                   ) -> dict[str, np.ndarray]:
  """``LD`` terms with old drops merged into geometric blocks (see module)."""
  csum = np.cumsum(lrs)
  before = csum - lrs
  changes = np.flatnonzero(drops)
  tiny = 1e-12 * max(float(lrs.max()), 1e-30)
  rows = []
  for t in steps:
    k = changes[changes <= t - 1]
    lag = t - 1 - k
    span = csum[t - 1] - before[k]
    ref = max(csum[t - 1] - before[max(t - 1 - N_NEAR, 0)], tiny)
    far = np.floor(np.log(np.maximum(span, ref) / ref) / np.log1p(RHO))
    block = np.where(lag < N_NEAR, lag, N_NEAR + far).astype(np.int64)
    _, inverse = np.unique(block, return_inverse=True)
    weight = np.abs(drops[k])
    total = np.bincount(inverse, weight)
    safe = np.where(total > 0, total, 1.0)
    rows.append((np.bincount(inverse, drops[k]),
                 np.bincount(inverse, weight * span) / safe,
                 np.where(total > 0, np.bincount(inverse, weight * lrs[k]) / safe,
                          1.0)))
  width = max(1, max(len(r[0]) for r in rows))
  out = np.zeros((3, len(steps), width))
  out[2] = 1.0
  for j, row in enumerate(rows):
    for i in range(3):
      out[i, j, :len(row[i])] = row[i]
  return {"s1": csum[steps - 1], "drop": out[0], "span": out[1],
          "log_eta": np.log(np.maximum(out[2], 1e-30))}


def _surrogate_fit(s1: np.ndarray, eta: np.ndarray, y: np.ndarray,
                   peak: float) -> np.ndarray:
  """Luo et al.'s surrogate fit (``MultiPowerLaw._paper_start``): the best
  ``(L0, A, alpha, B)`` over their grid of L-BFGS-B starts.

  Their code uses numerical gradients; here the gradient is exact (the same
  minimiser, found faster).
  """
  floor = float(y.min())
  fit = scipy.stats.linregress(np.log(s1), np.log(y - floor + 0.01))
  a0, alpha0 = float(np.exp(fit.intercept)), float(-fit.slope)
  log_s1, drop = np.log(s1), peak - eta

  def objective(q):
    l0, a, alpha, b = q
    power = s1**(-alpha)
    pred = l0 + a * power - b * drop
    if np.any(pred <= 0) or not np.all(np.isfinite(pred)):
      return 1e30, np.zeros(4)
    r = np.log(pred) - np.log(y)
    dr = np.clip(r, -HUBER_DELTA, HUBER_DELTA) / pred  # d huber / d pred
    grad = [np.sum(dr), np.sum(dr * power), np.sum(-dr * a * power * log_s1),
            np.sum(-dr * drop)]
    return float(np.sum(scipy.special.huber(HUBER_DELTA, r))), np.asarray(grad)

  best = None
  with solvers.single_threaded_blas():
    for q in itertools.product(np.linspace(floor - 0.2, floor + 0.2, 5),
                               np.linspace(a0 - 0.1, a0 + 0.1, 3),
                               np.linspace(alpha0 - 0.1, alpha0 + 0.1, 3),
                               np.linspace(100, 1000, 3) * 3e-4 / peak):
      res = scipy.optimize.minimize(
          objective, np.asarray(q), jac=True, method="L-BFGS-B",
          bounds=[(0, None)] * 4,
          options={"maxiter": 100000, "ftol": 1e-9, "gtol": 1e-6})
      if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
        best = res
  return best.x
