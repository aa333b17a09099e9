"""Prediction bands of a fitted law: bootstrap refits and their quantiles.

A bootstrap replicate refits the law (the final stage of its fit, with the
hyperparameters the fit chose) with the fit points reweighted by resampling
counts:

* ``"blocks"`` (the default): a moving-block bootstrap within each curve.
  ``ceil(n / b)`` blocks of ``b = ceil(n ** (1/3))`` consecutive points are
  drawn with replacement (circularly); a point's weight is how often it is
  drawn. Blocks keep the residuals' correlation along a curve.
* ``"curves"``: whole curves drawn with replacement (a curve's weight is its
  count). With a few fit curves many replicates lose the only decaying run
  and cannot be fitted; those are skipped and counted.

The band at a step is the ``(1 -/+ level) / 2`` quantiles of the replicates'
predictions, each multiplied by ``1 + e`` with ``e`` drawn from the fit's
relative residuals (``noise=True``, a prediction band for an observed point)
or not (a band for the law's curve itself).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BOOTSTRAP_KINDS = ("blocks", "curves")
NOISE_DRAWS = 8  # residual draws per replicate and step


def bootstrap_weights(sizes: Sequence[int], kind: str,
                      rng: np.random.Generator) -> list[np.ndarray]:
  """Resampling counts of one replicate, one array per curve."""
  if kind == "curves":
    counts = rng.multinomial(len(sizes), np.full(len(sizes), 1 / len(sizes)))
    return [np.full(n, float(c)) for n, c in zip(sizes, counts)]
  if kind != "blocks":
    raise ValueError(f"bootstrap kind must be one of {BOOTSTRAP_KINDS}; got "
                     f"{kind!r}")
  out = []
  for n in sizes:
    b = int(np.ceil(n ** (1 / 3)))
    starts = rng.integers(0, n, size=int(np.ceil(n / b)))
    idx = (starts[:, None] + np.arange(b)[None, :]).reshape(-1) % n
    out.append(np.bincount(idx, minlength=n).astype(np.float64))
  return out


def band(replicates: np.ndarray, residuals: np.ndarray | None, level: float,
         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Lower and upper band from replicate predictions ``(R, num_steps)``.

  With ``residuals`` (relative, ``obs / pred - 1``) each replicate's
  prediction is multiplied by ``1 + e`` for ``NOISE_DRAWS`` residuals ``e``
  drawn with replacement (a fixed ``seed``: the band is deterministic).
  """
  if not 0 < level < 1:
    raise ValueError(f"level must be in (0, 1); got {level}")
  samples = np.asarray(replicates, np.float64)
  if residuals is not None and len(residuals):
    rng = np.random.default_rng(seed)
    e = rng.choice(np.asarray(residuals, np.float64),
                   size=(NOISE_DRAWS,) + samples.shape)
    samples = (samples[None] * (1 + e)).reshape(-1, samples.shape[-1])
  q = (1 - level) / 2
  return (np.quantile(samples, q, axis=0),
          np.quantile(samples, 1 - q, axis=0))


def coverage(observed: np.ndarray, lower: np.ndarray, upper: np.ndarray
             ) -> float:
  """The fraction of observed points inside ``[lower, upper]``."""
  observed = np.asarray(observed)
  return float(np.mean((observed >= lower) & (observed <= upper)))
