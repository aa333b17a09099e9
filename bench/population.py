r"""Population training vs the same runs one after another.

  python -m bench.population --workload=mlp --members=128 --steps=200
  python -m bench.population --workload=gpt_nano --members=16 --steps=50

Two figures per workload, both over P members that differ in peak LR:
  step:  steady-state time of S steps of the vmapped step vs P x S steps of
         the single-run step (the compiled step is reused across members, as a
         sweep over schedule numbers allows; compile time excluded).
  e2e:   ``train_population`` of P runs vs P ``train_and_evaluate`` calls
         (everything: setup, compile, eval, checkpoint at the end, files).
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import tempfile
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags

from wsd_jax import schedules
from wsd_jax.train import (base_config, setup, train_and_evaluate,
                           train_population)
from wsd_jax.train import config as config_lib
from wsd_jax.train import sharding
from wsd_jax.train.step import train_step

_WORKLOAD = flags.DEFINE_enum("workload", "mlp", ["mlp", "gpt_nano"],
                              "What each member trains.")
_MEMBERS = flags.DEFINE_integer("members", 16, "Population size P.")
_STEPS = flags.DEFINE_integer("steps", 100, "Steps per member.")
_E2E = flags.DEFINE_bool("e2e", True, "Also time the end-to-end runs.")


def workload_config(name: str, steps: int) -> ml_collections.ConfigDict:
  c = base_config()
  if name == "mlp":
    c.model = ml_collections.ConfigDict(dict(name="mlp", embed_dim=32,
                                             hidden_dim=64))
    c.data.update(vocab_size=64, seq_len=32, batch_size=32, eval_batches=1)
  else:
    c.model = ml_collections.ConfigDict(dict(name="gpt", size="nano"))
    c.data.update(vocab_size=256, seq_len=128, batch_size=8, eval_batches=1)
  c.schedule = ml_collections.ConfigDict(dict(
      name="wsd", peak_value=1e-2, total_steps=steps,
      decay_steps=steps // 5, warmup_steps=steps // 20))
  c.train.update(steps=steps, log_every=steps, eval_every=steps,
                 checkpoint_every=steps, progress=False, plots=False)
  return c


def _peaks(p: int) -> np.ndarray:
  return np.geomspace(1e-3, 3e-2, p)


def time_steps(config, members: int, steps: int) -> tuple[float, float]:
  """Seconds for ``steps`` vmapped steps of P members, and for P x ``steps``
  single-run steps, steady state."""
  s = setup(config)
  batch = sharding.global_batch(next(iter(s.train_ds)),
                                sharding.batch_sharding(s.mesh))
  tokens = int(config.data.batch_size) * int(config.data.seq_len)
  base = config_lib.resolve_schedule(config)
  scheds = [dataclasses.replace(base, peak_value=float(p))
            for p in _peaks(members)]
  kw = dict(graphdef=s.graphdef, tx=s.tx, grad_clip=1.0,
            tokens_per_step=tokens)

  stacked = jax.tree.map(lambda x: np.stack([np.asarray(x)] * members),
                         s.state)
  fn = functools.partial(train_step, **kw)
  single = jax.jit(fn, donate_argnums=(0,))
  state = s.state
  for _ in range(2):  # compile, and settle the output layout
    state, m = single(state, batch, scheds[0])
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for sched in scheds:
    for _ in range(steps):
      state, m = single(state, batch, sched)
  jax.block_until_ready(m)
  t_seq = time.perf_counter() - t0

  pop = jax.jit(jax.vmap(fn, in_axes=(0, None, 0)), donate_argnums=(0,))
  sched = schedules.stack(scheds)
  stacked = jax.device_put(stacked, sharding.replicated(s.mesh))
  for _ in range(2):  # compile, and settle the output layout
    stacked, m = pop(stacked, batch, sched)
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for _ in range(steps):
    stacked, m = pop(stacked, batch, sched)
  jax.block_until_ready(m)
  return time.perf_counter() - t0, t_seq


def time_e2e(config, members: int) -> tuple[float, float]:
  root = tempfile.mkdtemp()
  configs = []
  for p in _peaks(members):
    c = ml_collections.ConfigDict(config.to_dict())
    c.schedule.peak_value = float(p)
    configs.append(c)
  try:
    t0 = time.perf_counter()
    train_population(configs, [f"{root}/pop/{i}" for i in range(members)])
    t_pop = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i, c in enumerate(configs):
      train_and_evaluate(c, f"{root}/seq/{i}")
    t_seq = time.perf_counter() - t0
  finally:
    shutil.rmtree(root, ignore_errors=True)
  return t_pop, t_seq


def main(argv):
  del argv
  device = jax.devices()[0].device_kind
  p, steps = _MEMBERS.value, _STEPS.value
  config = workload_config(_WORKLOAD.value, steps)
  t_pop, t_seq = time_steps(config, p, steps)
  print(f"device: {device} ({jax.device_count()} device(s))")
  print(f"workload={_WORKLOAD.value} members={p} steps={steps}")
  print(f"step  vmapped: {t_pop:8.3f} s   one after another: {t_seq:8.3f} s"
        f"   speedup: {t_seq / t_pop:6.1f}x")
  if _E2E.value:
    e_pop, e_seq = time_e2e(config, p)
    print(f"e2e   population: {e_pop:8.3f} s  one after another: "
          f"{e_seq:8.3f} s   speedup: {e_seq / e_pop:6.1f}x")


if __name__ == "__main__":
  app.run(main)
