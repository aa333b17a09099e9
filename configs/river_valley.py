r"""The river-valley study (Wen et al., arXiv 2410.05192) on the bigram corpus.

  python -m experiments.river_valley --workdir=/tmp/rv [--quick]

Full: < 5 min on 2 CPU cores; ``--quick`` (``get_config("quick")``): < 90 s.

Why this setup (chosen on first principles and one short look at the curves,
not tuned to make any claim hold):

* Vocabulary 128 in 4 entropy groups (support sizes 1, 5, 25, 128 next
  tokens): large enough that the uncertain groups need many samples, small
  enough for a CPU.
* A bigram logit table is the exact model class, so every excess loss above
  the known optimum is optimisation error, not capacity.
* Plain SGD at a high constant LR with a small batch (8 x 32 tokens): SGD's
  stationary excess loss grows with ``lr x gradient-noise``, which is zero for
  deterministic first tokens and largest for uncertain ones -- the "hill" --
  while a deterministic token's logit margin keeps growing slowly along a
  flat direction -- the "river". With Adam (tried first, lr 0.01-0.05) the
  per-coordinate normalisation turns the uncertain rows into a slow random
  walk that a short decay cannot undo, so Adam gives no clean hill here.
* Budgets 1:2:4 and decays of 10% of each budget to 0.1 x peak, as in the
  paper's configs; cyclic cosine re-warms over 0.16 x the first budget (their
  2,000 steps for a 12.5k budget).
"""

import ml_collections

from wsd_jax.train import base_config


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """``arg="quick"``: budgets 0.4x, 2 seeds instead of 3, a smaller eval."""
  quick = arg == "quick"
  c = ml_collections.ConfigDict()
  c.quick = quick
  run = base_config()
  run.model.name = "bigram"
  run.data.update(name="bigram", vocab_size=128, num_groups=4, seq_len=32,
                  batch_size=8, eval_batches=32)
  run.optimizer.update(name="sgd", b1=None, b2=None, weight_decay=None)
  run.train.update(grad_clip=0.0, progress=False, plots=False, keep_last=1)
  if quick:
    run.data.eval_batches = 16
  c.run = run                    # every run of the study starts from this
  c.peak_value = 120.0           # SGD LR (per-row gradients are ~1/V small)
  c.final_fraction = 0.1         # decays end at 0.1 x peak (paper's configs)
  c.warmup_fraction = 0.05       # warmup = 5% of the first budget
  c.budgets = (160, 320, 640) if quick else (400, 800, 1600)
  c.decay_fraction = 0.1         # WSD / WSD-S decay = 10% of the budget
  c.rewarm_fraction = 0.16       # cyclic cosine re-warm, x first budget
  c.hill_every = 160  # a short decay branch every N steps
  c.hill_decay_steps = 16 if quick else 40
  c.seeds = (0, 1) if quick else (0, 1, 2)
  c.valley_pairs = 1 if quick else 2            # cross-sections of consecutive checkpoints
  c.valley_points = 7 if quick else 13  # alphas in [-0.25, 1.25]
  return c
