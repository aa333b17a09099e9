r"""WSD vs WSD-S vs cyclic cosine at equal compute (Wen et al., arXiv 2410.05192).

  python -m experiments.wsd_s --config=configs/wsd_s.py:size=nano \
      --workdir=/tmp/wsd_s                               # CPU, a few minutes
  python -m experiments.wsd_s --config=configs/wsd_s.py:size=124m \
      --workdir=/tmp/wsd_s_124m                          # one 80 GB GPU
  python -m experiments.wsd_s --config=configs/wsd_s.py:size=124m_short \
      --workdir=/tmp/wsd_s_124m_short                    # one GPU, minutes
  python -m experiments.wsd_s --config=configs/wsd_s.py:quick \
      --workdir=/tmp/wsd_s_quick                         # CI, < 60 s

Budgets B, 2B, 4B; every decay is 10% of its budget, linear to 0.1 x peak
(the paper's configs); cyclic cosine decays to 0.1 x peak at each checkpoint
and re-warms over ``rewarm_fraction * B`` steps. Text: ``nano`` and
``quick`` read the bytes of the standard-library docstring corpus
(``wsd_jax.data.corpus``) unless ``train_config.data.paths`` is set;
``124m`` and ``124m_short`` read byte-level BPE tokens (``wsd_jax.data.bpe``,
32,768 tokens) of the docstrings of the standard library and every installed
package, plus ``train_config.data.paths`` if set, built offline into the
workdir.

``124m`` on one 80 GB GPU: batch 512 x 1024 tokens as 8 microbatches of 64
rows (``train.grad_accum_steps``), no rematerialisation. Activation memory
per microbatch, an ESTIMATE (not measured): about 36 x d_model bytes per token
per layer kept for the backward pass in bf16 (block input, norms, q/k/v,
RoPE, attention output, MLP pre- and post-GELU; cuDNN flash attention keeps
no T x T scores), 28 KB x 12 layers = 330 KB per token, plus the float32
logits and their gradient, 2 x 4 x 32768 = 260 KB per token: about 600 KB x
65,536 tokens = 39 GB, with 2 GB of parameters, Adam moments and gradient
sums. (Microbatches of 64 x 1024 ran without remat on an H100 before:
README, Performance.) If memory is short: ``model.remat=dots`` keeps only the
matmul outputs (about 20 x d bytes per token per layer: 450 KB per token
with the logits), ``block`` only each block's input; the logits are outside
the blocks, so ``model.logits_dtype=bfloat16`` halves their share.
``bench/gpu_suite.sh`` measures step time and peak memory of these choices.
``124m_short`` runs the same study at budget 20 steps (258 steps in all),
batch 32 = 2 microbatches with ``remat=block`` and an 8 MB corpus, for the
GPU suite.
"""

import ml_collections

from configs import gpt

# variant: (gpt size, budget B, warmup, eval every, batch, seq_len,
#           grad_accum_steps, remat)
_VARIANTS = {
    "quick": ("nano", 20, 4, 2, 4, 32, 1, "none"),
    "nano": ("nano", 200, 20, 20, 16, 128, 1, "none"),
    "124m": ("124m", 5000, 500, 250, 512, 1024, 8, "none"),
    "124m_short": ("124m", 20, 4, 2, 32, 1024, 2, "block"),
}
_SHORT_CORPUS_BYTES = 8_000_000  # 124m_short: tokenizer and tokens in seconds


def get_config(arg: str = "size=nano"):
  variant = "quick" if arg == "quick" else dict(
      kv.split("=", 1) for kv in arg.split(",") if kv).get("size", "nano")
  if variant not in _VARIANTS:
    raise ValueError(f"unknown variant {arg!r}; known: size=nano, size=124m, "
                     "size=124m_short, quick")
  (size, budget, warmup, eval_every, batch, seq_len, accum,
   remat) = _VARIANTS[variant]
  bpe = size == "124m"
  t = gpt.get_config(f"size={size},data={'bpe' if bpe else 'text'}")
  t.model.remat = remat
  t.train.grad_accum_steps = accum
  t.data.update(batch_size=batch, seq_len=seq_len,
                eval_batches=2 if variant == "quick" else 8)
  if bpe:  # evaluation in microbatch-sized batches
    t.data.update(eval_batch_size=batch // accum,
                  eval_batches=2 if variant == "124m_short" else 16)
  if variant == "124m_short":
    t.data.corpus_max_bytes = _SHORT_CORPUS_BYTES
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
