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
from wsd_jax.train import population as population_lib
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


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One run to train: the arguments of ``train_and_evaluate``."""
  config: ml_collections.ConfigDict
  workdir: str
  start: Start | None = None
  lineage_info: dict | None = None


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
  schedule = config_lib.validate(config, mesh=mesh,
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


def make_eval_fn(s: Setup, population: bool = False):
  """Jitted ``params, batch -> (loss sums, token counts)`` per entropy group
  (one group unless the data is the bigram corpus); vmapped over a population
  of params when ``population``."""
  groups = jnp.asarray(s.groups)
  num_groups = int(s.groups.max()) + 1

  def fn(params, batch):
    loss_BxT = eval_step(params, batch, graphdef=s.graphdef)
    seg = groups[batch["inputs"]].reshape(-1)
    return (jax.ops.segment_sum(loss_BxT.reshape(-1), seg, num_groups),
            jax.ops.segment_sum(jnp.ones_like(loss_BxT).reshape(-1), seg,
                                num_groups))
  return jax.jit(jax.vmap(fn, in_axes=(0, None)) if population else fn)


def _eval_rows(sums: np.ndarray, counts: np.ndarray) -> dict:
  out = {"eval_loss": float(sums.sum() / counts.sum())}
  if len(sums) > 1:
    out.update({f"eval_loss_group{g}": float(sums[g] / counts[g])
                for g in range(len(sums))})
  return out


def evaluate(s: Setup, params, eval_fn=None, population: bool = False):
  """Mean held-out loss (and per entropy group on the bigram data); a list
  of such dicts, one per member, for a population of params."""
  eval_fn = eval_fn or make_eval_fn(s, population)
  sums = counts = 0.0
  bsh = sharding.batch_sharding(s.mesh)
  for batch in s.eval_ds:
    g_sum, g_count = jax.device_get(
        eval_fn(params, sharding.global_batch(batch, bsh)))
    sums, counts = sums + g_sum, counts + g_count
  if population:
    return [_eval_rows(a, b) for a, b in zip(sums, counts)]
  return _eval_rows(sums, counts)


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


@dataclasses.dataclass
class _Member:
  """One run of a (possibly one-member) population, prepared to train."""
  config: ml_collections.ConfigDict
  workdir: str
  setup: Setup
  ckpt: Checkpointer
  data_iter: Any
  state: Any
  step: int                     # the step training starts from
  schedule: schedules.Schedule  # effective schedule (run.json)

  @property
  def remaining(self) -> int:
    return int(self.config.train.steps) - self.step

  def group_key(self) -> str:
    """Members with equal keys train as one vmapped program."""
    c = self.config.to_dict()
    for k in ("seed", "schedule"):
      c.pop(k)
    c["train"].pop("steps")
    return f"{c}|{jax.tree.structure(self.schedule)}|{self.remaining}"


def _prepare(config, workdir, start, lineage_info) -> _Member:
  """Validates, builds, restores (or starts) and records one run."""
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
  return _Member(config, workdir, s, ckpt, data_iter, state, step, schedule)


def _stack(trees):
  """Stacks pytrees on the host (no per-shape device programs to compile)."""
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                      *trees)


def _member_slice(tree, i):
  return jax.tree.map(lambda x: np.asarray(x)[i], tree)


def _train(members: list[_Member]) -> list[dict]:
  """Trains members of equal shape together: one program, vmapped if > 1."""
  first, n = members[0], len(members)
  population = n > 1
  t, s = first.config.train, first.setup
  shared_data = not population or (
      len({m.config.seed for m in members}) == 1 and
      all(m.data_iter.get_state() == first.data_iter.get_state()
          for m in members))
  tokens_per_step = int(first.config.data.batch_size) * int(
      first.config.data.seq_len)
  if population:
    state = _stack([m.state for m in members])
    schedule = _stack([m.schedule for m in members])
    state_sh = jax.tree.map(lambda _: sharding.replicated(s.mesh), state)
    state = jax.device_put(state, state_sh)  # as the step will return it
    bsh = sharding.batch_sharding(s.mesh)
    if not shared_data:  # [member, batch, ...]: members unsharded
      bsh = jax.sharding.NamedSharding(s.mesh, jax.sharding.PartitionSpec(
          None, *bsh.spec))
  else:
    state, schedule = first.state, first.schedule
    state_sh = sharding.state_sharding(s.mesh, state, first.config.mesh)
    bsh = sharding.batch_sharding(s.mesh)
  step_fn = jit_train_step(graphdef=s.graphdef, tx=s.tx,
                           grad_clip=float(t.grad_clip) or None,
                           tokens_per_step=tokens_per_step,
                           state_sharding=state_sh, batch_sharding=bsh,
                           population=population, shared_batch=shared_data)
  eval_fn = make_eval_fn(s, population)
  writers = [metrics_lib.RunWriters(m.workdir, m.step, t.fingerprints)
             for m in members]
  label = (os.path.basename(os.path.abspath(first.workdir)) if n == 1 else
           f"{n} members")
  progress = metrics_lib.Progress(first.remaining, 0,
                                  t.progress and jax.process_index() == 0,
                                  label)
  summaries = [{"workdir": m.workdir, "start_step": m.step} for m in members]
  logging.info("training %s: %d steps from step %s", label, first.remaining,
               sorted({m.step for m in members}))
  pending, clock = None, [time.perf_counter(), 0]

  def check_finite(first_nonfinite) -> None:
    if t.skip_nonfinite:
      return
    for m, bad in zip(members, np.atleast_1d(first_nonfinite)):
      if bad >= 0:
        raise NonFiniteLossError(
            f"non-finite loss or gradient at step {int(bad)} in {m.workdir}; "
            f"the last checkpoint is step {m.ckpt.latest_step()} and was not "
            "overwritten. Set config.train.skip_nonfinite=True to skip such "
            "steps instead.")

  def flush(pending) -> None:
    done, m, extras = pending
    m = jax.device_get(m)
    check_finite(m["first_nonfinite"])
    now = time.perf_counter()
    dt = (now - clock[0]) / max(done - clock[1], 1)
    clock[:] = [now, done]
    for i, member in enumerate(members):
      if extras[i] is None:
        continue
      at = member.step + done
      get = lambda k: float(np.asarray(m[k]).reshape(-1)[i])
      row = {"step": at, "tokens": at * tokens_per_step, "lr": get("lr"),
             "loss": get("loss"), "grad_norm": get("grad_norm"),
             "step_time_s": dt, **extras[i]}
      writers[i].row(row)
      summaries[i].update(row)
    row0 = summaries[0]
    progress.update(done, dict(row0, tokens_per_s=n * tokens_per_step / dt))

  def next_batch() -> dict:
    batches = ([next(first.data_iter)] * n if shared_data else
               [next(m.data_iter) for m in members])
    if t.fingerprints:
      for m, w, b in zip(members, writers, batches):
        w.fingerprint(m.step + done + 1, data_lib.fingerprint(b))
    batch = batches[0] if shared_data else _stack(batches)
    return sharding.global_batch(batch, bsh)

  done = 0
  with _Preemption() as preempt:
    try:
      while done < first.remaining:
        state, metrics = step_fn(state, next_batch(), schedule)
        done += 1
        if pending is not None:  # the previous log step's metrics, now that
          flush(pending)         # the next step is already dispatched
          pending = None
        last = done == first.remaining
        at = [m.step + done for m in members]
        evals = [a % t.eval_every == 0 or last for a in at]
        extras = [None] * n
        if any(evals):
          results = evaluate(s, state.params, eval_fn, population)
          results = results if population else [results]
          extras = [r if e else None for r, e in zip(results, evals)]
        extras = [{} if (e is None and (a % t.log_every == 0 or last))
                  else e for e, a in zip(extras, at)]
        if any(e is not None for e in extras):
          pending = (done, metrics, extras)
        saves = [a % t.checkpoint_every == 0 or last or preempt.requested
                 for a in at]
        if any(saves):
          if pending is not None:
            flush(pending)
            pending = None
          check_finite(jax.device_get(state.first_nonfinite))  # never save
          host = jax.device_get(state) if population else None  # bad state
          for i, (m, save) in enumerate(zip(members, saves)):
            if save:
              m.ckpt.save(at[i], _member_slice(host, i) if population
                          else state,
                          first.data_iter if shared_data else m.data_iter)
        if preempt.requested:
          logging.warning("SIGTERM: saved %s at step %s; rerun to resume",
                          label, at)
          for summary in summaries:
            summary["preempted"] = True
          break
      if pending is not None:
        flush(pending)
    finally:
      for m in members:
        m.ckpt.close()
      for w in writers:
        w.close()
      progress.close()
  for i, (m, summary) in enumerate(zip(members, summaries)):
    summary.update(step=m.step + done, schedule=m.schedule,
                   state=_member_slice(state, i) if population else state)
    if t.plots and jax.process_index() == 0:
      plots.run_curves(m.workdir)
  return summaries


def train_population(configs: list[ml_collections.ConfigDict],
                     workdirs: list[str], *,
                     starts: list[Start | None] | None = None,
                     lineage_infos: list[dict | None] | None = None
                     ) -> list[dict]:
  """Trains several runs; ``workdirs[i]`` is an ordinary run directory.

  Members that differ only in schedule numbers and seed (and have as many
  steps left) are stacked and trained as ONE jitted, vmapped program: one
  compilation for the whole group, every member's state and schedule a slice
  of a stacked pytree. Members whose schedules differ in a static choice
  (e.g. the decay shape) or in anything else are split into such groups,
  trained one group after another. Members with the same seed share the
  batches; otherwise each member reads its own data stream, exactly as its
  own run would.
  """
  n = len(configs)
  if len(workdirs) != n:
    raise ValueError(f"{n} configs but {len(workdirs)} workdirs")
  if len(set(map(os.path.abspath, workdirs))) != n:
    raise ValueError(f"workdirs must be distinct, got {workdirs}")
  starts = starts or [None] * n
  lineage_infos = lineage_infos or [None] * n
  members = [_prepare(c, w, st, li) for c, w, st, li in
             zip(configs, workdirs, starts, lineage_infos)]
  groups: dict[str, list[int]] = {}
  for i, m in enumerate(members):
    groups.setdefault(m.group_key(), []).append(i)
  if len(groups) > 1:
    logging.info("population of %d runs splits into %d groups that differ in "
                 "static choices, length or config: sizes %s", n, len(groups),
                 [len(g) for g in groups.values()])
  results: list[dict] = [{}] * n
  for idx in groups.values():
    todo = [i for i in idx if members[i].remaining > 0]
    for i in sorted(set(idx) - set(todo)):  # already complete
      m = members[i]
      m.ckpt.close()
      rows = rundir.read_metrics(m.workdir)
      results[i] = dict(rows[-1] if rows else {}, workdir=m.workdir,
                        step=m.step, start_step=m.step, state=m.state,
                        schedule=m.schedule)
    if todo:
      for i, r in zip(todo, _train([members[i] for i in todo])):
        results[i] = r
  return results


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
    A summary: final step, eval loss, the final state, the effective schedule;
    for a config with a ``population``, ``{"members": [summary, ...]}``.
  """
  if population_lib.is_population(config):
    configs, workdirs = population_lib.expand(config, workdir)
    summaries = train_population(configs, workdirs)
    if jax.process_index() == 0:
      population_lib.report(workdir, summaries)
    return {"workdir": workdir, "members": summaries}
  return train_population([config], [workdir], starts=[start],
                          lineage_infos=[lineage_info])[0]


def train_specs(specs: list[RunSpec]) -> list[dict]:
  """``train_population`` over a list of ``RunSpec``s."""
  return train_population([r.config for r in specs], [r.workdir for r in specs],
                          starts=[r.start for r in specs],
                          lineage_infos=[r.lineage_info for r in specs])
