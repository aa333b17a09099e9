"""The best schedule for a budget under a fitted law (Luo et al., §5)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wsd_jax.laws.fitting import Law

WSD_SHAPES = ("linear", "cosine", "1-sqrt", "square")


def optimize_schedule(law: Law, total_steps: int, peak_value: float,
                      family: str = "wsd", *, warmup_steps: int = 0,
                      final_value: float = 0.0,
                      shapes: Sequence[str] = WSD_SHAPES, num_knots: int = 64,
                      num_iters: int = 300, learning_rate: float = 0.1):
  """The schedule that minimises ``law``'s predicted loss at ``total_steps``.

  Every candidate has the same linear warmup from 0 and is bounded by
  ``peak_value``: under the annealing law a larger LR always predicts a lower
  loss (Tissue et al., arXiv 2408.11029), so the peak must be a constraint.

  Args:
    law: a fitted ``AnnealingLaw`` or ``MultiPowerLaw``.
    total_steps: the budget; the loss after ``total_steps`` updates is
      minimised.
    peak_value: the LR of the stable phase and the upper bound.
    family: "wsd": WSD over the decay fraction in (0, 1] of the
      post-warmup steps and the decay ``shapes`` (a grid, then every step
      count between the best grid point's neighbours); returns
      ``schedules.wsd(...)``. "free": per-step LRs, non-increasing after
      warmup, in ``[0, peak_value]``, parametrised on ``num_knots`` knots
      (decrements are a softmax over the knots plus a slack, so their
      cumulative sum is <= 1) interpolated linearly to steps, and optimised
      with Adam on the predicted final loss as in Luo et al. (arXiv
      2503.12811); returns ``schedules.tabulated(values)``.
    warmup_steps: linear warmup length.
    final_value: final LR of the "wsd" family.
    shapes: decay shapes of the "wsd" family.
    num_knots, num_iters, learning_rate: the "free" family's optimisation.

  Returns:
    The schedule (``wsd_jax.schedules``).
  """
  from wsd_jax import schedules  # pylint: disable=g-import-not-at-top

  if total_steps <= warmup_steps or warmup_steps < 0:
    raise ValueError(f"total_steps={total_steps} must exceed warmup_steps="
                     f"{warmup_steps} >= 0")
  if not np.isfinite(peak_value) or peak_value <= 0:
    raise ValueError(f"peak_value must be positive and finite; got {peak_value}")
  if family not in ("wsd", "free"):
    raise ValueError(f"family must be 'wsd' or 'free'; got {family!r}")
  steps = np.arange(total_steps + 1)
  with jax.enable_x64(True):
    final_loss = jax.jit(lambda lrs: law.predict_jax(lrs, [total_steps])[0])
    if family == "wsd":
      span = total_steps - warmup_steps

      def build(shape, decay_steps):
        return schedules.wsd(peak_value=peak_value, total_steps=total_steps,
                             decay_steps=int(decay_steps),
                             warmup_steps=warmup_steps, decay_shape=shape,
                             final_value=final_value)

      def loss(shape, decay_steps):
        lrs = np.asarray(build(shape, decay_steps)(steps), np.float64)
        return float(final_loss(jnp.asarray(lrs)))

      grid = np.unique(np.clip(np.round(np.linspace(0, 1, 41)[1:] * span),
                               1, span)).astype(int)
      best = min((loss(shape, d), shape, d) for shape in shapes for d in grid)
      _, shape, d = best
      i = int(np.searchsorted(grid, d))
      lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
      fine = np.unique(np.linspace(lo, hi, 41).round().astype(int))
      best = min((loss(shape, d), shape, d) for d in fine)
      return build(best[1], best[2])

    knots = np.linspace(warmup_steps, total_steps, num_knots + 1)
    warm = peak_value * np.minimum(steps / max(warmup_steps, 1), 1.0)

    def lrs_from(logits):
      fraction = 1.0 - jnp.cumsum(jax.nn.softmax(logits))[:-1]
      knot_values = peak_value * jnp.concatenate([jnp.ones(1), fraction])
      decayed = jnp.interp(steps.astype(np.float64), knots, knot_values)
      return jnp.where(steps < warmup_steps, warm, decayed)

    optimizer = optax.adam(learning_rate)

    @jax.jit
    def update(logits, state):
      value, grad = jax.value_and_grad(lambda z: final_loss(lrs_from(z)))(
          logits)
      updates, state = optimizer.update(grad, state)
      return optax.apply_updates(logits, updates), state, value

    logits = jnp.zeros(num_knots + 1, jnp.float64)
    state = optimizer.init(logits)
    for _ in range(num_iters):
      logits, state, _ = update(logits, state)
    values = np.clip(np.asarray(lrs_from(logits), np.float64), 0, peak_value)
  return schedules.tabulated(values)
