r"""The default: a bigram table on the synthetic bigram corpus (CPU, < 1 min).

  python -m experiments.train --config=configs/bigram.py --workdir=/tmp/r

The corpus (``wsd_jax.data.bigram``) has 4 groups of first tokens whose
next-token distributions go from deterministic to near uniform, so the best
possible loss is known exactly and written to ``run.json``.
"""

from wsd_jax.train import base_config


def get_config():
  c = base_config()
  c.model.name = "bigram"
  c.data.update(name="bigram", vocab_size=64, num_groups=4, seq_len=32,
                batch_size=64, eval_batches=4)
  # WSD over train.steps (800: warmup 40, decay 160 from step 640).
  c.schedule.update(name="wsd", peak_value=0.05, warmup_fraction=0.05,
                    decay_fraction=0.2)
  c.optimizer.update(name="adamw", b1=0.9, b2=0.95, weight_decay=0.0)
  c.train.update(steps=800, log_every=20, eval_every=100, checkpoint_every=100,
                 keep_every=200)
  return c
