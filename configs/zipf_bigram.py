r"""A context-1 MLP LM trained with AdamW on the Zipfian bigram corpus.

  python -m experiments.train --config=configs/zipf_bigram.py --workdir=/tmp/r

The corpus (``wsd_jax.data.zipf_bigram``): 1,024 tokens with Zipf-like
frequencies (base exponent 1.1) in 4 entropy groups, from deterministic
successors to rows close to the unigram law; its exact optimal loss is
written to ``run.json``. The model embeds the previous token (32 dims), one
gelu layer of 64, an untied output projection to the vocabulary: a
non-convex, LM-shaped model for which the population loss is exact
(``zipf_bigram.population_loss``), used by ``experiments.zipf_regime``.
"""

import ml_collections

from wsd_jax.train import base_config


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  c.model.update(name="mlp", embed_dim=32, hidden_dim=64, num_layers=1,
                 context=1)
  c.data.update(name="zipf_bigram", vocab_size=1024, num_groups=4,
                exponent=1.1, epsilon=1e-2, seq_len=16, batch_size=8,
                eval_batches=8)
  c.schedule.update(name="wsd", peak_value=3e-3, warmup_fraction=0.05,
                    decay_fraction=0.2)
  c.optimizer.update(name="adamw", b1=0.9, b2=0.95, weight_decay=0.1)
  c.train.update(steps=1000, log_every=50, eval_every=100,
                 checkpoint_every=100, keep_every=0, keep_last=1)
  return c
