r"""WSD vs WSD-S vs cyclic cosine at equal compute (Wen et al., arXiv 2410.05192).

  python -m experiments.wsd_s --config=configs/wsd_s.py:size=nano \
      --workdir=/tmp/wsd_s                               # CPU, a few minutes
  python -m experiments.wsd_s --config=configs/wsd_s.py:size=124m \
      --workdir=/tmp/wsd_s_124m                          # a GPU (not run here)
  python -m experiments.wsd_s --config=configs/wsd_s.py:quick \
      --workdir=/tmp/wsd_s_quick                         # CI, < 60 s

Budgets B, 2B, 4B; every decay is 10% of its budget, linear to 0.1 x peak
(the paper's configs); cyclic cosine decays to 0.1 x peak at each checkpoint
and re-warms over ``rewarm_fraction * B`` steps. Text: the standard-library
docstring corpus (``wsd_jax.data.corpus``) unless ``train_config.data.paths``
is set.
"""

import ml_collections

from configs import gpt

# variant: (gpt size, budget B, warmup, eval every, batch, seq_len)
_VARIANTS = {
    "quick": ("nano", 20, 4, 2, 4, 32),
    "nano": ("nano", 200, 20, 20, 16, 128),
    "124m": ("124m", 5000, 500, 250, 512, 1024),
}


def get_config(arg: str = "size=nano"):
  variant = "quick" if arg == "quick" else dict(
      kv.split("=", 1) for kv in arg.split(",") if kv).get("size", "nano")
  if variant not in _VARIANTS:
    raise ValueError(f"unknown variant {arg!r}; known: size=nano, size=124m, "
                     "quick")
  size, budget, warmup, eval_every, batch, seq_len = _VARIANTS[variant]
  t = gpt.get_config(f"size={size}")
  t.data.update(batch_size=batch, seq_len=seq_len,
                eval_batches=2 if variant == "quick" else 8)
  t.train.update(log_every=eval_every, eval_every=eval_every, progress=False,
                 plots=False, async_checkpoint=variant != "quick")
  c = ml_collections.ConfigDict()
  c.train_config = t
  c.study = ml_collections.ConfigDict(dict(
      budgets=(budget, 2 * budget, 4 * budget),
      decay_fraction=0.1,     # every decay is 10% of its budget
      final_fraction=0.1,     # decays end at 0.1 x peak
      rewarm_fraction=0.1,    # cyclic cosine re-warm, x the first budget
      warmup_steps=warmup,
      peak_value=float(t.schedule.peak_value),
  ))
  c.corpus_max_bytes = 300_000 if variant == "quick" else None
  return c
