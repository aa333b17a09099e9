"""``train_and_evaluate``: the library entry point of every training run.

The loop dispatches step t before it pulls step t-1's metrics to the host, so
the device never waits on Python; it syncs only at log, eval and checkpoint
steps. Rerunning on the same workdir resumes from the latest committed
checkpoint (state and data position) and reproduces the uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from wsd_jax import data as data_lib
from wsd_jax import models, plots, schedules
from wsd_jax.runs import lineage
from wsd_jax.runs import rundir
from wsd_jax.runs.checkpoint import Checkpointer
from wsd_jax.train import config as config_lib
from wsd_jax.train import metrics as metrics_lib
from wsd_jax.train import sharding, state as state_lib
from wsd_jax.train.step import eval_step, jit_train_step, make_optimizer


@dataclasses.dataclass(frozen=True)
class Start:
  """Where a run's state comes from when it has no checkpoint of its own.

  With ``replace_own`` the state is taken from there also when the run's own
  latest checkpoint is older than ``step`` (WSD-S: a main branch continues
  from a branch's decayed state).
  """
  checkpoint_dir: str        # another run's checkpoints/ (read only)
  step: int
  schedule: schedules.Schedule | None = None  # what produced that state
  replace_own: bool = False


class NonFiniteLossError(FloatingPointError):
  pass


@dataclasses.dataclass
class Setup:
  """Everything built from a config before the first step (no compilation)."""
  config: ml_collections.ConfigDict
  schedule: schedules.Schedule
  mesh: Any
  graphdef: Any
  state: state_lib.TrainState
  tx: Any
  train_ds: Any
  eval_ds: Any
  groups: np.ndarray      # entropy group of each token id (bigram), else 0s
  data_info: dict


def setup(config: ml_collections.ConfigDict) -> Setup:
  """Validates the config and builds model, data, optimizer and state."""
  mesh = sharding.make_mesh(config.mesh)
  schedule = config_lib.validate(config, num_devices=mesh.devices.size,
                                 process_count=jax.process_count())
  kw = dict(seed=int(config.seed), process_index=jax.process_index(),
            process_count=jax.process_count())
  train_ds = data_lib.make_dataset(config.data, "train", **kw)
  eval_ds = data_lib.make_dataset(config.data, "eval", **kw)
  vocab = data_lib.vocab_size(config.data)
  model = models.build(config.model, vocab_size=vocab,
                       max_seq_len=int(config.data.seq_len),
                       rngs=nnx.Rngs(int(config.seed)))
  graphdef, params = nnx.split(model)
  tx = make_optimizer(config.optimizer)
  state = state_lib.create(params, tx, int(config.seed))
  state = jax.device_put(state, sharding.state_sharding(mesh, state,
                                                        config.mesh))
  groups, data_info = np.zeros(vocab, np.int32), {}
  if config.data.name == "bigram":
    spec = data_lib.bigram.spec_of(config.data)
    groups = np.asarray(spec.group_of_token, np.int32)
    data_info = {"optimal_loss": float(spec.optimal_loss),
                 "optimal_loss_by_group": [
                     float(x) for x in spec.optimal_loss_by_group]}
  return Setup(config, schedule, mesh, graphdef, state, tx, train_ds, eval_ds,
               groups, data_info)


def evaluate(s: Setup, params, eval_fn=None) -> dict:
  """Mean held-out loss, and per entropy group for the bigram data."""
  eval_fn = eval_fn or make_eval_fn(s)
  num_groups = int(s.groups.max()) + 1
  sums, counts = np.zeros(num_groups), np.zeros(num_groups)
  bsh = sharding.batch_sharding(s.mesh)
  for batch in s.eval_ds:
    g_sum, g_count = jax.device_get(
        eval_fn(params, sharding.global_batch(batch, bsh)))
    sums += g_sum
    counts += g_count
  out = {"eval_loss": float(sums.sum() / counts.sum())}
  if num_groups > 1:
    out.update({f"eval_loss_group{g}": float(sums[g] / counts[g])
                for g in range(num_groups)})
  return out


def make_eval_fn(s: Setup):
  groups = jnp.asarray(s.groups)
  num_groups = int(s.groups.max()) + 1

  @jax.jit
  def fn(params, batch):
    loss_BxT = eval_step(params, batch, graphdef=s.graphdef)
    seg = groups[batch["inputs"]].reshape(-1)
    return (jax.ops.segment_sum(loss_BxT.reshape(-1), seg, num_groups),
            jax.ops.segment_sum(jnp.ones_like(loss_BxT).reshape(-1), seg,
                                num_groups))
  return fn


class _Preemption:
  """Turns SIGTERM into a flag the loop checks (single-process runs)."""

  def __init__(self):
    self.requested = False
    self._old = None

  def __enter__(self):
    if jax.process_count() == 1:
      try:
        self._old = signal.signal(signal.SIGTERM, self._handle)
      except ValueError:  # not the main thread
        self._old = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._old is not None:
      signal.signal(signal.SIGTERM, self._old)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       start: Start | None = None,
                       lineage_info: dict | None = None) -> dict:
  """Trains ``config`` in ``workdir`` (resuming if it holds a run).

  Args:
    config: a config as in ``configs/`` (see ``train.config.base_config``).
    workdir: the run directory.
    start: where to take the state from when ``workdir`` has no checkpoint
      yet (a branch's fork point).
    lineage_info: ``run.json`` fields for a new run (parent, fork_step, ...).

  Returns:
    A summary: final step, eval loss, paths.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  s = setup(config)
  t = config.train
  os.makedirs(workdir, exist_ok=True)
  ckpt = Checkpointer(rundir.checkpoint_dir(workdir), keep_last=t.keep_last,
                      keep_every=t.keep_every, keep_steps=tuple(t.keep_steps),
                      async_save=t.async_checkpoint)
  data_iter = iter(s.train_ds)
  step, state = ckpt.restore_latest(s.state, data_iter)
  prefix = None
  if start is not None and (step is None or (start.replace_own and
                                             step < start.step)):
    source = Checkpointer(start.checkpoint_dir, read_only=True)
    if start.step not in source.steps():
      raise ValueError(f"no checkpoint at step {start.step} in "
                       f"{start.checkpoint_dir}; available: {source.steps()}")
    state = source.restore(start.step, s.state, data_iter)
    step, prefix = start.step, start.schedule
  step = int(step or 0)
  info = dict(lineage_info or {})
  if prefix is None:  # the state is the run's own: no resume event to record
    info.pop("resumed_from", None)
  schedule = lineage.record(workdir, config, s.schedule, step, info,
                            s.data_info, prefix)
  logging.info("run %s: step %d -> %d", workdir, step, t.steps)
  logs = rundir.MetricsLog(workdir, step)
  prints = (rundir.MetricsLog(workdir, step, name="fingerprints.jsonl")
            if t.fingerprints else None)
  events = metrics_lib.EventWriter(os.path.join(workdir, "events"))
  progress = metrics_lib.Progress(t.steps, step, t.progress,
                                  os.path.basename(os.path.abspath(workdir)))
  tokens_per_step = int(config.data.batch_size) * int(config.data.seq_len)
  state_sh = sharding.state_sharding(s.mesh, state, config.mesh)
  bsh = sharding.batch_sharding(s.mesh)
  step_fn = jit_train_step(graphdef=s.graphdef, tx=s.tx,
                           grad_clip=float(t.grad_clip) or None,
                           tokens_per_step=tokens_per_step,
                           state_sharding=state_sh, batch_sharding=bsh)
  eval_fn = make_eval_fn(s)
  pending, last_time, last_step = None, time.perf_counter(), step
  summary = {"workdir": workdir, "start_step": step}

  def check_finite(first_nonfinite: int):
    if not t.skip_nonfinite and first_nonfinite >= 0:
      raise NonFiniteLossError(
          f"non-finite loss or gradient at step {first_nonfinite}; the last "
          f"checkpoint is step {ckpt.latest_step()} and was not overwritten. "
          "Set config.train.skip_nonfinite=True to skip such steps instead.")

  def flush(pending):
    nonlocal last_time, last_step
    at, m, extra = pending
    m = jax.device_get(m)
    now = time.perf_counter()
    dt = (now - last_time) / max(at - last_step, 1)
    last_time, last_step = now, at
    row = {"step": at, "tokens": at * tokens_per_step, "lr": float(m["lr"]),
           "loss": float(m["loss"]), "grad_norm": float(m["grad_norm"]),
           "step_time_s": dt, **extra}
    check_finite(int(m["first_nonfinite"]))
    logs.write([row])
    events.scalars(at, row)
    progress.update(at, dict(row, tokens_per_s=tokens_per_step / dt))
    summary.update(row)

  with _Preemption() as preempt:
    try:
      while step < t.steps:
        batch = next(data_iter)
        if prints is not None:
          prints.write([{"step": step + 1,
                         "batch": data_lib.fingerprint(batch)}])
        state, m = step_fn(state, sharding.global_batch(batch, bsh), schedule)
        step += 1
        if pending is not None:       # the previous log step, now that the
          flush(pending)              # next step is already dispatched
          pending = None
        last = step == t.steps
        extra = {}
        if step % t.eval_every == 0 or last:
          extra = evaluate(s, state.params, eval_fn)
        if step % t.log_every == 0 or last or extra:
          pending = (step, m, extra)
        if step % t.checkpoint_every == 0 or last or preempt.requested:
          if pending is not None:
            flush(pending)
            pending = None
          check_finite(int(state.first_nonfinite))  # never save a bad state
          ckpt.save(step, state, data_iter)
        if preempt.requested:
          logging.warning("SIGTERM: saved step %d in %s; rerun to resume",
                          step, workdir)
          summary["preempted"] = True
          break
      if pending is not None:
        flush(pending)
    finally:
      ckpt.close()
      logs.close()
      if prints is not None:
        prints.close()
      events.close()
      progress.close()
  summary.update(step=step, state=state, schedule=schedule)
  if t.plots and jax.process_index() == 0:
    plots.run_curves(workdir)
  return summary


def train_population(configs: list[ml_collections.ConfigDict],
                     workdirs: list[str], *,
                     starts: list[Start | None] | None = None,
                     lineage_infos: list[dict | None] | None = None
                     ) -> list[dict]:
  """Trains several runs; each ``workdirs[i]`` is an ordinary run directory.

  Members that differ only in schedule numbers and seed are meant to be
  trained as one vmapped program (population training).
  """
  n = len(configs)
  starts = starts or [None] * n
  lineage_infos = lineage_infos or [None] * n
  return [train_and_evaluate(c, w, start=st, lineage_info=li)
          for c, w, st, li in zip(configs, workdirs, starts, lineage_infos)]
