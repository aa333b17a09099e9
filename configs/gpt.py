r"""A GPT decoder on text, sized by a variant string.

  python -m experiments.train --config=configs/gpt.py:size=nano \
      --workdir=/tmp/gpt --config.data.paths=/path/to/*.txt
  python -m experiments.train --config=configs/gpt.py:size=124m,data=bpe \
      --workdir=/tmp/gpt124m                       # one GPU, offline BPE text

Variants: ``size=nano|micro|mini|124m`` (``wsd_jax.models.GPTConfig.preset``);
``nano`` runs on a laptop CPU, ``124m`` is GPT-2 small at sequence 1024 in
bf16 with cuDNN attention on a GPU, its 512-row batch accumulated over 8
microbatches of 64 rows (``train.grad_accum_steps``).
``data=text|bpe``: bytes of ``data.paths`` (default), or byte-level BPE
tokens (``wsd_jax.data.bpe``) of the docstrings of the installed Python code
plus ``data.paths``, with a 32,768-token tokenizer trained offline and
cached in ``data.cache_dir``.
"""

from ml_collections import config_dict

from wsd_jax.train import base_config

_SIZES = {
    # size: (seq_len, batch, steps, peak lr, dtype, attention, grad_accum_steps)
    "nano": (128, 16, 1000, 3e-3, "float32", None, 1),
    "micro": (256, 16, 2000, 2e-3, "float32", None, 1),
    "mini": (512, 32, 5000, 1e-3, "bfloat16", None, 1),
    # 64 rows x 1024 tokens per microbatch ran at 44% MFU on one H100 without
    # remat (README, Performance); configs/wsd_s.py estimates the memory.
    "124m": (1024, 512, 20000, 6e-4, "bfloat16", "cudnn", 8),
}
DATA = ("text", "bpe")
BPE_VOCAB = 32768  # a multiple of 128: the logits' matmuls tile evenly


def _parse(arg: str) -> dict:
  out = dict(kv.split("=", 1) for kv in arg.split(",") if kv)
  return out


def data_config(kind: str, seq_len: int, batch: int, grad_accum_steps: int):
  """The ``config.data`` section of ``kind`` ("text" or "bpe"); evaluation
  runs in batches of one microbatch's rows."""
  c = config_dict.ConfigDict(dict(
      name=kind, paths="", seq_len=seq_len, batch_size=batch, eval_batches=8,
      eval_fraction=0.05))
  c.eval_batch_size = config_dict.placeholder(int)  # None: batch_size
  if grad_accum_steps > 1:
    c.eval_batch_size = batch // grad_accum_steps
    c.eval_batches = 8 * grad_accum_steps
  if kind == "bpe":
    c.update(corpus="python", vocab_size=BPE_VOCAB, tokenizer="",
             cache_dir="")
    c.corpus_max_bytes = config_dict.placeholder(int)  # None: all of it
  return c


def get_config(arg: str = "size=nano"):
  args = _parse(arg)
  size, data = args.get("size", "nano"), args.get("data", "text")
  if size not in _SIZES:
    raise ValueError(f"unknown size {size!r}; known sizes: {sorted(_SIZES)}")
  if data not in DATA:
    raise ValueError(f"unknown data {data!r}; known: {', '.join(DATA)}")
  seq_len, batch, steps, peak, dtype, attention, accum = _SIZES[size]
  c = base_config()
  c.model = c.model.__class__(dict(
      name="gpt", size="small" if size == "124m" else size, dtype=dtype,
      attention_impl=attention, remat="none"))
  c.data = data_config(data, seq_len, batch, accum)
  # WSD over train.steps: warmup 2%, decay the last 20%.
  c.schedule.update(name="wsd", peak_value=peak, warmup_fraction=0.02,
                    decay_fraction=0.2)
  c.optimizer.update(name="adamw", b1=0.9, b2=0.95, weight_decay=0.1)
  c.train.update(steps=steps, log_every=max(steps // 100, 10),
                 eval_every=max(steps // 10, 50), checkpoint_every=steps // 10,
                 keep_every=steps // 5, grad_accum_steps=accum)
  return c
