r"""Byte-level language modelling of local text files with an MLP LM.

  python -m experiments.train --config=configs/text.py --workdir=/tmp/text \
      --config.data.paths=/path/to/*.txt

Any UTF-8 text works (vocab 256, bytes); the last 5% of the bytes is held out.
"""

from wsd_jax.train import base_config


def get_config():
  c = base_config()
  c.model = c.model.__class__(dict(name="mlp", embed_dim=64, hidden_dim=256,
                                   num_layers=2, context=4))
  c.data = c.data.__class__(dict(name="text", paths="", seq_len=64,
                                 batch_size=32, eval_batches=8,
                                 eval_fraction=0.05))
  # WSD over train.steps (2000: warmup 100, decay 400).
  c.schedule.update(name="wsd", peak_value=3e-3, warmup_fraction=0.05,
                    decay_fraction=0.2)
  c.optimizer.update(name="adamw", b1=0.9, b2=0.95, weight_decay=0.1)
  c.train.update(steps=2000, log_every=50, eval_every=250,
                 checkpoint_every=250, keep_every=500)
  return c
