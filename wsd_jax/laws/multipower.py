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

Fitting: Luo et al. start L-BFGS-B on a simplified surrogate and finish with
AdamW on all seven parameters. Here instead: a grid over
``(alpha, beta, gamma, C)`` with ``(L0, A, B)`` from linear least squares at
each grid point, then L-BFGS-B on all seven parameters (log coordinates,
bounded) from the best few grid points; Huber loss (delta 1e-3) on log
residuals as in the paper. There is no AdamW stage, so ``fit_info`` is
L-BFGS-B's alone. ``B, C, beta, gamma`` describe the response to an LR
decrease, so a fit on curves without one (a constant run alone) raises
``FitError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wsd_jax.laws.fitting import Law, lr_drops


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
            "eta": lrs[index][None, :],
            "drop": jnp.where(mask, drops[index][None, :], 0.0)}

  @staticmethod
  def _loss(p: Mapping[str, jax.Array], terms: Mapping[str, jax.Array]
            ) -> jax.Array:
    eta = jnp.maximum(terms["eta"], 1e-30)
    x = eta**(-p["gamma"]) * terms["span"]
    g = -jnp.expm1(-p["beta"] * jnp.log1p(p["C"] * x))  # 1 - (Cx + 1)^-beta
    ld = p["B"] * jnp.sum(terms["drop"] * g, axis=-1)
    return p["L0"] + p["A"] * terms["s1"]**(-p["alpha"]) - ld


RHO = 0.05  # relative LR-area width of a merged block
N_NEAR = 32  # most recent drops kept exactly at each observed step


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
          "eta": out[2]}
