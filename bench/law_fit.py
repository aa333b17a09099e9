"""Seconds to fit each loss-curve law to one 20k-step curve.

    python -m bench.law_fit [--steps=20000] [--eval_every=100]

The curve is a cosine schedule (the worst case for the multi-power law:
the LR changes at every step) generated from the 25M-parameter fit of Luo
et al. (arXiv 2503.12811) with 1e-4 relative noise. Times include jit
compilation (first fit) and are also shown for a second, warm fit.
"""

import time

from absl import app
from absl import flags
import numpy as np

from wsd_jax import laws

_STEPS = flags.DEFINE_integer("steps", 20_000, "Steps of the curve.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 100, "Steps between points.")

LUO_25M = dict(L0=3.040, A=0.525, alpha=0.508, B=363.8, C=2.066, beta=0.583,
               gamma=0.641)
TISSUE_LIKE = dict(L0=2.9, A=0.45, alpha=0.45, C=0.8)


def cosine_curve(law: laws.Law, steps: int, eval_every: int) -> laws.Curve:
  peak = 3e-4
  i = np.arange(steps + 1)
  lrs = 0.1 * peak + 0.9 * peak * (1 + np.cos(np.pi * i / steps)) / 2
  observed = np.arange(eval_every, steps + 1, eval_every)
  losses = law.predict(lrs, observed)
  noise = 1 + 1e-4 * np.random.default_rng(0).standard_normal(len(observed))
  return laws.Curve(lrs, observed, losses * noise)


def main(argv):
  del argv
  for cls, truth in ((laws.AnnealingLaw, TISSUE_LIKE),
                     (laws.MultiPowerLaw, LUO_25M)):
    curve = cosine_curve(cls(truth), _STEPS.value, _EVAL_EVERY.value)
    for label in ("cold", "warm"):
      start = time.perf_counter()
      law = cls.fit([curve])
      seconds = time.perf_counter() - start
      print(f"{cls.__name__:14s} {label}: {seconds:6.2f} s  "
            f"({_STEPS.value} steps, {len(curve)} points, "
            f"R^2={law.fit_info['r2']:.6f})")


if __name__ == "__main__":
  app.run(main)
