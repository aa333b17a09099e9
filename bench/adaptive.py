r"""Costs of the adaptive methods.

    python -m bench.adaptive [--size=nano] [--steps=30] [--repeats=3]

1. Step time of the library's GPT train step (``train_step`` jitted as the
   trainer does: grad clipping, the schedule as an argument, the state
   donated; synthetic batch on the device) with Adam and with Adam-HD
   (``wsd_jax.adaptive.adam_hd`` by config name). The two are timed in
   alternating windows of ``--steps`` steps: the best window of each, and
   the median ratio of adjacent windows (robust to a shared, loaded
   machine). Goal: Adam-HD <= 3% slower.
2. ``refined_values`` of a 1M-step norm sequence with the default 10%
   median filter. Goal: < 1 s.
"""

from __future__ import annotations

import functools
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags
from flax import nnx

from wsd_jax import adaptive, models, schedules
from wsd_jax.train import state as state_lib
from wsd_jax.train.step import make_optimizer, train_step

_SIZE = flags.DEFINE_string("size", "nano", "GPT preset.")
_SEQ = flags.DEFINE_integer("seq_len", 128, "Sequence length.")
_BATCH = flags.DEFINE_integer("batch", 16, "Batch size.")
_VOCAB = flags.DEFINE_integer("vocab", 256, "Vocabulary (bytes).")
_STEPS = flags.DEFINE_integer("steps", 30, "Steps per timed window.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Windows per optimizer.")

OPTIMIZERS = {
    "adam": (dict(name="adam", b1=0.9, b2=0.95), schedules.constant(1e-3)),
    "adam_hd": (dict(name="adam_hd", b1=0.9, b2=0.95, learning_rate=1e-3,
                     hypergrad_lr=1e-7), schedules.constant(1.0)),
}


def build(opt: dict):
  """``(step, state, batch)`` of the GPT step with optimizer ``opt``."""
  model = models.build(
      ml_collections.ConfigDict(dict(name="gpt", size=_SIZE.value,
                                     dtype="float32", max_seq_len=_SEQ.value)),
      vocab_size=_VOCAB.value, max_seq_len=_SEQ.value, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  tx = make_optimizer(ml_collections.ConfigDict(opt))
  state = state_lib.create(params, tx, 0)
  tokens = np.random.default_rng(0).integers(
      0, _VOCAB.value, (_BATCH.value, _SEQ.value + 1), dtype=np.int32)
  batch = jax.device_put({"inputs": tokens[:, :-1], "targets": tokens[:, 1:]})
  step = jax.jit(functools.partial(
      train_step, graphdef=graphdef, tx=tx, grad_clip=1.0,
      tokens_per_step=_BATCH.value * _SEQ.value), donate_argnums=(0,))
  return step, state, batch


def window(step, state, batch, schedule, n: int):
  start = time.perf_counter()
  for _ in range(n):
    state, _ = step(state, batch, schedule)
  jax.block_until_ready(state)
  return state, time.perf_counter() - start


def main(argv):
  del argv
  built = {k: build(opt) for k, (opt, _) in OPTIMIZERS.items()}
  states = {}
  for k, (step, state, batch) in built.items():   # compile and warm up
    states[k], _ = window(step, state, batch, OPTIMIZERS[k][1], 3)
  best = {k: float("inf") for k in built}
  ratios = []
  for r in range(_REPEATS.value):
    pair = {}
    order = list(built) if r % 2 == 0 else list(built)[::-1]
    for k in order:  # alternating which goes first
      step, _, batch = built[k]
      states[k], s = window(step, states[k], batch, OPTIMIZERS[k][1],
                            _STEPS.value)
      best[k] = min(best[k], s / _STEPS.value)
      pair[k] = s
    ratios.append(pair["adam_hd"] / pair["adam"])
  for k, s in best.items():
    print(f"{k:8s} step {1e3 * s:8.2f} ms  (GPT {_SIZE.value}, batch "
          f"{_BATCH.value} x {_SEQ.value}, {jax.default_backend()})")
  print(f"adam_hd vs adam: best {100 * (best['adam_hd'] / best['adam'] - 1):+.1f}"
        f"%, median of adjacent windows {100 * (np.median(ratios) - 1):+.1f}% "
        "(goal <= +3%)")
  g = np.abs(np.random.default_rng(0).normal(size=1_000_000)) + 1.0
  start = time.perf_counter()
  adaptive.refined_values(g, peak_value=1.0)
  print(f"refined_values of 1M norms (10% median filter): "
        f"{time.perf_counter() - start:.3f} s (goal < 1 s)")


if __name__ == "__main__":
  app.run(main)
