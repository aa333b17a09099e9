r"""A GPT decoder on byte-level text, sized by a variant string.

  python -m experiments.train --config=configs/gpt.py:size=nano \
      --workdir=/tmp/gpt --config.data.paths=/path/to/*.txt
  python -m experiments.train --config=configs/gpt.py:size=124m \
      --workdir=/tmp/gpt124m --config.data.paths=...      # a GPU

Variants: ``size=nano|micro|mini|124m`` (``wsd_jax.models.GPTConfig.preset``);
``nano`` runs on a laptop CPU, ``124m`` is GPT-2 small at sequence 1024 in
bf16 with cuDNN attention on a GPU.
"""

from wsd_jax.train import base_config

_SIZES = {
    # size: (seq_len, batch, steps, peak lr, dtype, attention)
    "nano": (128, 16, 1000, 3e-3, "float32", None),
    "micro": (256, 16, 2000, 2e-3, "float32", None),
    "mini": (512, 32, 5000, 1e-3, "bfloat16", None),
    "124m": (1024, 512, 20000, 6e-4, "bfloat16", "cudnn"),
}


def _parse(arg: str) -> dict:
  out = dict(kv.split("=", 1) for kv in arg.split(",") if kv)
  return out


def get_config(arg: str = "size=nano"):
  size = _parse(arg).get("size", "nano")
  if size not in _SIZES:
    raise ValueError(f"unknown size {size!r}; known sizes: {sorted(_SIZES)}")
  seq_len, batch, steps, peak, dtype, attention = _SIZES[size]
  c = base_config()
  c.model = c.model.__class__(dict(
      name="gpt", size="small" if size == "124m" else size, dtype=dtype,
      attention_impl=attention))
  c.data = c.data.__class__(dict(name="text", paths="", seq_len=seq_len,
                                 batch_size=batch, eval_batches=8,
                                 eval_fraction=0.05))
  # WSD over train.steps: warmup 2%, decay the last 20%.
  c.schedule.update(name="wsd", peak_value=peak, warmup_fraction=0.02,
                    decay_fraction=0.2)
  c.optimizer.update(name="adamw", b1=0.9, b2=0.95, weight_decay=0.1)
  c.train.update(steps=steps, log_every=max(steps // 100, 10),
                 eval_every=max(steps // 10, 50), checkpoint_every=steps // 10,
                 keep_every=steps // 5)
  return c
