"""The LR-annealing scaling law of Tissue et al. (arXiv 2408.11029).

    L(s) = L0 + A * S1(s)^(-alpha) - C * S2(s)

    S1(s) = sum_{i=1..s} eta_i                      (forward area)
    m_i   = lambda * m_{i-1} + (eta_{i-1} - eta_i)  (annealing momentum)
    S2(s) = sum_{i=1..s} m_i                        (annealing area)

with ``eta_i = lrs[i - 1]`` (the loss at step ``s`` has seen ``s`` updates),
``eta_0 = eta_1`` and ``m_0 = 0``. ``lambda`` defaults to 0.999. Warmup
steps are counted at the peak LR as in the paper's script
(``count_warmup_at_peak=True``) or as run; either way LR changes during
warmup do not enter ``S2``. Parameters ``L0, A, alpha, C >= 0``.

Known failure (noted by the authors): scaling the whole schedule up always
lowers the predicted loss, so schedule optimisation must bound the peak.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wsd_jax.laws.fitting import Law, effective_lrs, lr_drops


def annealing_areas(lrs: jax.typing.ArrayLike, steps: Any = None,
                    lam: float = 0.999, warmup_steps: int = 0,
                    count_warmup_at_peak: bool = True
                    ) -> tuple[jax.Array, jax.Array]:
  """``S1`` and ``S2`` at ``steps`` (default: every step ``1..len(lrs)``).

  Computed with a cumulative sum and a ``lax.scan`` for the momentum, so it
  is O(len(lrs)) and differentiable in ``lrs``; jitted once per shape.
  """
  lrs = jnp.asarray(lrs)
  steps = (np.arange(1, lrs.shape[0] + 1) if steps is None
           else np.asarray(steps, np.int64))
  return _areas(lrs, jnp.asarray(steps), lam, int(warmup_steps),
                bool(count_warmup_at_peak))


@functools.partial(jax.jit, static_argnums=(3, 4))
def _areas(lrs: jax.Array, steps: jax.Array, lam: float, warmup_steps: int,
           count_warmup_at_peak: bool) -> tuple[jax.Array, jax.Array]:
  eff = effective_lrs(lrs, warmup_steps, count_warmup_at_peak)
  drops = lr_drops(eff, warmup_steps)

  def step(m, d):
    m = lam * m + d
    return m, m

  _, momentum = jax.lax.scan(step, jnp.zeros((), eff.dtype), drops)
  return jnp.cumsum(eff)[steps - 1], jnp.cumsum(momentum)[steps - 1]


class AnnealingLaw(Law):
  """``L = L0 + A * S1^-alpha - C * S2`` (Tissue et al., arXiv 2408.11029).

  ``AnnealingLaw.fit(curves, lam=0.999, warmup_steps=0,
  count_warmup_at_peak=True)``: Huber (delta 1e-3) on log residuals,
  L-BFGS-B from a grid over ``alpha`` with ``L0, A, C`` from least squares
  (see ``wsd_jax.laws.fitting``).
  """

  param_names = ("L0", "A", "alpha", "C")
  linear_names = ("L0", "A", "C")
  positive_bounds = {"A": (1e-8, 1e4), "alpha": (1e-3, 5.0),
                     "C": (1e-10, 1e6)}
  start_grid = {"alpha": tuple(np.geomspace(0.05, 2.0, 16))}
  default_options = {"lam": 0.999, "warmup_steps": 0,
                     "count_warmup_at_peak": True}
  law_name = "LR-annealing law"
  exponent_names = ("alpha",)
  # The multi-power law's alpha (Luo et al.: 0.43-0.51); Tissue et al. do not
  # publish theirs.
  prior = {"alpha": 0.5}
  decay_params = ("C",)  # S2 = 0 without an LR decrease: C is then free

  @classmethod
  def _terms(cls, lrs: jax.Array, steps: np.ndarray,
             options: Mapping[str, Any], mode: str) -> dict[str, jax.Array]:
    del mode  # exact in every mode: two numbers per observed step
    s1, s2 = annealing_areas(lrs, steps, options["lam"],
                             options["warmup_steps"], count_warmup_at_peak=False)
    return {"s1": s1, "s2": s2}

  @staticmethod
  def _loss(p: Mapping[str, jax.Array], terms: Mapping[str, jax.Array]
            ) -> jax.Array:
    return p["L0"] + p["A"] * terms["s1"]**(-p["alpha"]) - p["C"] * terms["s2"]
