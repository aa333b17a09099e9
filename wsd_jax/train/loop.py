"""The trainer: executes run specs (``runs.RunSpec``) and writes run files.

``train_specs`` prepares every run (lock, config check, restore, lineage),
groups the runs that can share one program, and hands each group to one
linear step loop. A group of one run trains with the ``Single`` strategy, a
larger group with ``Population`` (states and schedules stacked, the step
vmapped): the loop does not know which.

The loop dispatches step t before it pulls step t-1's metrics to the host, so
the device never waits on Python; it syncs only at log, eval and checkpoint
steps. Rerunning on the same workdir resumes from the latest committed
checkpoint (state and data position) and reproduces the uninterrupted run.

Time accounting (``metrics.jsonl``): ``train_time_s`` is the cumulative time
spent training (compilation included; evaluation, logging and checkpointing
excluded), ``step_time_s`` its mean per step since the previous row, and
``eval_time_s`` the time of the evaluation logged in that row. The trainer
draws nothing: the apps do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import threading
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from wsd_jax import data as data_lib
from wsd_jax import runs, schedules
from wsd_jax.runs import lineage, processes, rundir
from wsd_jax.runs import run as run_lib
from wsd_jax.runs.spec import RunSpec, Start
from wsd_jax.train import config as config_lib
from wsd_jax.train import metrics as metrics_lib
from wsd_jax.train import population as population_lib
from wsd_jax.train import sharding
from wsd_jax.train.evaluation import (accumulate, eval_params_fn, eval_row,
                                      make_eval_fn)
from wsd_jax.train.setup import Setup, setup
from wsd_jax.train.step import step_fn


class NonFiniteLossError(FloatingPointError):
  pass


@dataclasses.dataclass
class _Member:
  """One run, prepared to train: its state restored and its lineage written."""
  spec: RunSpec
  setup: Setup
  ckpt: runs.Checkpointer
  data_iter: Any
  state: Any
  step: int                     # the step training starts from
  schedule: schedules.Schedule  # effective schedule (run.json)
  train_time: float             # train_time_s at ``step``

  @property
  def config(self) -> ml_collections.ConfigDict:
    return self.spec.config

  @property
  def workdir(self) -> str:
    return self.spec.workdir

  @property
  def remaining(self) -> int:
    return int(self.config.train.steps) - self.step

  def group_key(self) -> str:
    """Members with equal keys train as one vmapped program."""
    c = self.config.to_dict()
    for k in ("seed", "schedule"):
      c.pop(k)
    c["train"].pop("steps")
    # Numeric optimizer arguments are leaves of the injected optimizer state.
    c["optimizer"] = {k: v for k, v in c["optimizer"].items() if
                      isinstance(v, bool) or not isinstance(v, (int, float))}
    return f"{c}|{jax.tree.structure(self.schedule)}|{self.remaining}"


def _latest_row_time(workdir: str, step: int) -> float:
  rows = [r for r in rundir.read_metrics(workdir) if r["step"] <= step]
  return float(rows[-1].get("train_time_s") or 0.0) if rows else 0.0


def _prepare(spec: RunSpec) -> _Member:
  """Checks the spec against the run on disk, then restores (or starts) and
  records the run. Nothing is moved or written before the checks pass."""
  config = ml_collections.ConfigDict(spec.config.to_dict())
  spec = dataclasses.replace(spec, config=config)
  s = setup(config)
  t, workdir, start = config.train, spec.workdir, spec.start
  own = runs.checkpoint_steps(workdir) if rundir.is_run(workdir) else []
  from_start = start is not None and (not own or (
      start.replace_own and own[-1] < start.step))
  step = start.step if from_start else (own[-1] if own else 0)
  lineage.check_resume(workdir, config, s.schedule, step, spec.allow_changes,
                       start.schedule if from_start else None)
  ckpt = runs.Checkpointer(rundir.checkpoint_dir(workdir),
                           keep_last=t.keep_last, keep_every=t.keep_every,
                           keep_steps=tuple(t.keep_steps),
                           async_save=t.async_checkpoint)
  data_iter = iter(s.train_ds)
  prefix = None
  if from_start:
    source = runs.Checkpointer(start.checkpoint_dir, read_only=True)
    if start.step not in source.steps():
      raise ValueError(f"no checkpoint at step {start.step} in "
                       f"{start.checkpoint_dir}; available: {source.steps()}")
    state = source.restore(start.step, s.state, data_iter)
    step, prefix = start.step, start.schedule
  else:
    restored, state = ckpt.restore_latest(s.state, data_iter)
    step = int(restored or 0)
  info = dict(spec.lineage_info or {})
  if prefix is None:  # the state is the run's own: no resume event to record
    info.pop("resumed_from", None)
  schedule = lineage.record(workdir, config, s.schedule, step, info,
                            s.data_info, prefix)
  return _Member(spec, s, ckpt, data_iter, state, step, schedule,
                 _latest_row_time(workdir, step))


def _stack(trees):
  """Stacks pytrees on the host (no per-shape device programs to compile)."""
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                      *trees)


class Single:
  """One run: its own state, schedule, data and step program."""

  def __init__(self, members: list[_Member]):
    (m,) = members
    s = m.setup
    self.mesh = s.mesh
    self.state, self.schedule = m.state, m.schedule
    state_sh = sharding.state_sharding(s.mesh, self.state)
    self.batch_sh = sharding.batch_sharding(s.mesh)
    self.step = jax.jit(
        step_fn(m.config, s), donate_argnums=(0,),
        in_shardings=(state_sh, self.batch_sh, None),
        out_shardings=(state_sh, None))
    self._eval = jax.jit(make_eval_fn(s.graphdef, s.token_groups))
    self._eval_params = eval_params_fn(self.state)
    self._member = m

  def next_batches(self) -> list[dict]:
    return [next(self._member.data_iter)]

  def device_batch(self, batches: list[dict]) -> dict:
    return sharding.global_batch(batches[0], self.batch_sh)

  def evaluate(self, state) -> list[dict]:
    return [eval_row(*accumulate(self._eval, self._eval_params(state),
                                 self._member.setup.eval_ds, self.mesh))]

  def save(self, state, steps: list[int], which: list[bool]) -> None:
    if which[0]:
      self._member.ckpt.save(steps[0], state, self._member.data_iter)

  def member_state(self, state, i: int):
    del i
    return state


class Population:
  """Runs of equal shape as one program: states and schedules stacked along
  a leading member axis, the step and the evaluation vmapped. Members with
  one seed and one data position share the batches; otherwise each reads
  its own stream, exactly as its own run would."""

  def __init__(self, members: list[_Member]):
    first, s = members[0], members[0].setup
    self.members, self.mesh = members, s.mesh
    self.shared_data = (
        len({m.config.seed for m in members}) == 1 and
        all(m.data_iter.get_state() == first.data_iter.get_state()
            for m in members))
    self.schedule = _stack([m.schedule for m in members])
    state = _stack([m.state for m in members])
    state_sh = jax.tree.map(lambda _: sharding.replicated(s.mesh), state)
    self.state = jax.device_put(state, state_sh)  # as the step returns it
    bsh = sharding.batch_sharding(s.mesh)
    if not self.shared_data:  # [member, batch, ...]: members unsharded
      bsh = jax.sharding.NamedSharding(s.mesh, jax.sharding.PartitionSpec(
          None, *bsh.spec))
    self.batch_sh = bsh
    fn = jax.vmap(step_fn(first.config, s),
                  in_axes=(0, None if self.shared_data else 0, 0))
    self.step = jax.jit(fn, donate_argnums=(0,),
                        in_shardings=(state_sh, bsh, None),
                        out_shardings=(state_sh, None))
    self._eval = jax.jit(jax.vmap(make_eval_fn(s.graphdef, s.token_groups),
                                  in_axes=(0, None)))
    self._eval_params = eval_params_fn(self.state, vmapped=True)

  def next_batches(self) -> list[dict]:
    if self.shared_data:
      return [next(self.members[0].data_iter)] * len(self.members)
    return [next(m.data_iter) for m in self.members]

  def device_batch(self, batches: list[dict]) -> dict:
    batch = batches[0] if self.shared_data else _stack(batches)
    return sharding.global_batch(batch, self.batch_sh)

  def evaluate(self, state) -> list[dict]:
    sums, counts = accumulate(self._eval, self._eval_params(state),
                              self.members[0].setup.eval_ds, self.mesh)
    return [eval_row(a, b) for a, b in zip(sums, counts)]

  def save(self, state, steps: list[int], which: list[bool]) -> None:
    host = jax.device_get(state)
    for i, (m, save) in enumerate(zip(self.members, which)):
      if save:
        it = self.members[0].data_iter if self.shared_data else m.data_iter
        m.ckpt.save(steps[i], self.member_state(host, i), it)

  def member_state(self, state, i: int):
    return jax.tree.map(lambda x: np.asarray(x)[i], state)


class _Clock:
  """Training time: wall time minus the sections run ``outside`` it. Each
  such section first waits for the dispatched steps, which count as
  training."""

  def __init__(self):
    self.train_s, self._since = 0.0, time.perf_counter()

  def now(self) -> float:
    return self.train_s + time.perf_counter() - self._since

  @contextlib.contextmanager
  def outside(self, state):
    jax.block_until_ready(state)
    self.train_s = self.now()
    begin = time.perf_counter()
    section = {"seconds": 0.0}
    yield section
    section["seconds"] = time.perf_counter() - begin
    self._since = time.perf_counter()


class _Signals:
  """SIGTERM and SIGINT (Ctrl-C) become a request the loop checks: it saves
  and stops. A second Ctrl-C interrupts at once.

  With several processes JAX's preemption service catches SIGTERM (a
  preemption notice) on any host and picks a step every process reaches
  (``multihost_utils.reached_preemption_sync_point``): all save there and
  stop together.
  """

  def __init__(self):
    self.received: int | None = None
    self._old = {}

  def __enter__(self):
    if (jax.process_count() == 1 and
        threading.current_thread() is threading.main_thread()):
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._old[sig] = signal.signal(sig, self._handle)
    return self

  def poll(self, step: int) -> None:
    """Called at every step, with the same steps on every process."""
    if jax.process_count() > 1 and self.received is None:
      from jax.experimental import multihost_utils
      try:
        reached = multihost_utils.reached_preemption_sync_point(step)
      except RuntimeError:  # the preemption service is disabled
        return
      if reached:
        self.received = signal.SIGTERM

  def _handle(self, signum, frame):
    del frame
    if self.received is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.received = signum

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


class _PerStep:
  """``per_step.jsonl`` of each run (``runs.run.PER_STEP``): the LR and the
  gradient norms of every step, not only of log steps. The step's device
  values are kept until the loop fetches metrics anyway (a log or checkpoint
  step), so per-step logging adds no host sync; a resumed run rewrites the
  rows after its checkpoint, as ``metrics.jsonl``."""

  KEYS = ("lr", "grad_norm", "grad_l1")

  def __init__(self, members: list[_Member]):
    self._members, self._pending = members, []
    self.logs = ([rundir.MetricsLog(m.workdir, m.step, name=run_lib.PER_STEP)
                  for m in members] if processes.is_writer() else [])

  def add(self, done: int, metrics: dict) -> None:
    self._pending.append((done, {k: metrics[k] for k in self.KEYS}))

  def write(self, upto: int) -> None:
    """Fetches and writes the steps ``<= upto`` (steps after it may still
    run on the device)."""
    ready = [p for p in self._pending if p[0] <= upto]
    self._pending = self._pending[len(ready):]
    if not ready or not self.logs:
      return
    values = jax.device_get([v for _, v in ready])
    for i, (m, log) in enumerate(zip(self._members, self.logs)):
      log.write([{"step": m.step + done,
                  **{k: np.asarray(v[k]).reshape(-1)[i].item()
                     for k in self.KEYS}}
                 for (done, _), v in zip(ready, values)])


def _check_finite(members, first_nonfinite, skip: bool) -> None:
  if skip:
    return
  for m, bad in zip(members, np.atleast_1d(first_nonfinite)):
    if bad >= 0:
      raise NonFiniteLossError(
          f"non-finite loss or gradient at step {int(bad)} in {m.workdir}; "
          f"the last checkpoint is step {m.ckpt.latest_step()} and was not "
          "overwritten. Set config.train.skip_nonfinite=True to skip such "
          "steps instead.")


def _train(members: list[_Member]) -> list[dict]:
  """Trains members of equal shape together in one linear loop."""
  first, n = members[0], len(members)
  t = first.config.train
  strategy = (Single if n == 1 else Population)(members)
  tokens_per_step = int(first.config.data.batch_size) * int(
      first.config.data.seq_len)
  writers = [metrics_lib.RunWriters(m.workdir, m.step, t.fingerprints)
             for m in members]
  label = rundir.name_of(first.workdir) if n == 1 else f"{n} runs"
  progress = metrics_lib.Progress(first.remaining,
                                  t.progress and processes.is_writer(),
                                  label)
  summaries = [{"workdir": m.workdir, "start_step": m.step} for m in members]
  logging.info("training %s: %d steps from step %s", label, first.remaining,
               sorted({m.step for m in members}))
  state, schedule = strategy.state, strategy.schedule
  clock, last_row = _Clock(), [0, 0.0]  # (done, train seconds) of last row
  per_step = _PerStep(members)

  def flush(pending) -> None:
    done, metrics, extras = pending
    metrics = jax.device_get(metrics)
    per_step.write(done)
    _check_finite(members, metrics["first_nonfinite"], t.skip_nonfinite)
    train_s = clock.now()
    step_s = (train_s - last_row[1]) / max(done - last_row[0], 1)
    last_row[:] = [done, train_s]
    for i, m in enumerate(members):
      if extras[i] is None:
        continue
      get = lambda k: np.asarray(metrics[k]).reshape(-1)[i].item()
      at = m.step + done
      row = {"step": at, "tokens": at * tokens_per_step, "lr": get("lr"),
             "loss": get("loss"), "grad_norm": get("grad_norm"),
             "step_time_s": step_s, "train_time_s": m.train_time + train_s,
             **extras[i]}
      if get("nonfinite"):
        row["nonfinite_steps"] = get("nonfinite")
      writers[i].row(row)
      summaries[i].update(row)
    progress.update(done, dict(summaries[0],
                               tokens_per_s=n * tokens_per_step / step_s))

  done, pending = 0, None
  with _Signals() as signals:
    try:
      while done < first.remaining:
        batches = strategy.next_batches()
        for m, w, b in zip(members, writers, batches):
          if t.fingerprints:
            w.fingerprint(m.step + done + 1, data_lib.fingerprint(b))
        state, metrics = strategy.step(state, strategy.device_batch(batches),
                                       schedule)
        done += 1
        per_step.add(done, metrics)
        if pending is not None:  # the previous log step's metrics, now that
          flush(pending)         # the next step is already dispatched
          pending = None
        last = done == first.remaining
        at = [m.step + done for m in members]
        extras = [None] * n
        if any(a % t.eval_every == 0 or last for a in at):
          with clock.outside(state) as section:
            results = strategy.evaluate(state)
          extras = [dict(r, eval_time_s=section["seconds"])
                    if a % t.eval_every == 0 or last else None
                    for r, a in zip(results, at)]
        extras = [{} if e is None and (a % t.log_every == 0 or last) else e
                  for e, a in zip(extras, at)]
        if any(e is not None for e in extras):
          pending = (done, metrics, extras)
        signals.poll(at[0])
        saves = [a % t.checkpoint_every == 0 or last or bool(signals.received)
                 for a in at]
        if any(saves):
          if pending is not None:
            flush(pending)
            pending = None
          with clock.outside(state):
            # A non-finite state is never saved over the last good one.
            _check_finite(members, jax.device_get(state.first_nonfinite),
                          t.skip_nonfinite)
            strategy.save(state, at, saves)
            per_step.write(done)
            for w in writers + per_step.logs:
              w.flush()
        if signals.received:
          name = signal.Signals(signals.received).name
          logging.warning("%s: saved %s at step %s; rerun to resume", name,
                          label, at[0] if n == 1 else at)
          for summary in summaries:
            summary["stopped_by"] = name
          break
      if pending is not None:
        flush(pending)
      per_step.write(done)
    finally:
      for m in members:
        m.ckpt.close()
      for w in writers + per_step.logs:
        w.close()
      progress.close()
  nonfinite = np.atleast_1d(jax.device_get(state.nonfinite))
  for i, (m, summary) in enumerate(zip(members, summaries)):
    summary.update(step=m.step + done, schedule=m.schedule,
                   state=strategy.member_state(state, i),
                   nonfinite_steps=int(nonfinite[i]))
    if nonfinite[i]:
      logging.warning("%s: skipped %d step(s) with a non-finite loss or "
                      "gradient (train.skip_nonfinite)", m.workdir,
                      int(nonfinite[i]))
  return summaries


def _finished_summary(m: _Member) -> dict:
  m.ckpt.close()
  rows = rundir.read_metrics(m.workdir)
  return dict(rows[-1] if rows else {}, workdir=m.workdir, step=m.step,
              start_step=m.step, state=m.state, schedule=m.schedule)


def _fingerprint(specs: list[RunSpec]) -> dict[str, object]:
  """What every process must be given alike: each run's directory, config
  (seed and schedule section included) and start."""
  out: dict[str, object] = {}
  for i, spec in enumerate(specs):
    run = f"run {i} " if len(specs) > 1 else ""
    flat = _flatten(json.loads(spec.config.to_json_best_effort()))
    out.update({f"{run}config.{k}": v for k, v in flat.items()})
    out[f"{run}workdir"] = str(spec.workdir)
    out[f"{run}start"] = None if spec.start is None else [
        spec.start.checkpoint_dir, spec.start.step]
  return out


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
  out: dict[str, object] = {}
  for k, v in tree.items():
    if isinstance(v, dict) and v:
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _lock_all(specs: list[RunSpec], locks: list[runs.RunLock]) -> None:
  for spec in specs:  # appended one by one: a failure releases the others
    locks.append(runs.RunLock(spec.workdir).acquire())


def train_specs(specs: list[RunSpec]) -> list[dict]:
  """Trains several runs; each ``spec.workdir`` is an ordinary run directory.

  Runs that differ only in schedule numbers and seed (and have as many steps
  left) are stacked and trained as ONE jitted, vmapped program: one
  compilation for the whole group, every run's state and schedule a slice of
  a stacked pytree. Runs whose schedules differ in a static choice (e.g. the
  decay shape) or in anything else are split into such groups, trained one
  group after another. Every run directory is locked while it trains.

  Returns:
    One summary per spec: final step, eval loss, the final state, the
    effective schedule, and ``stopped_by`` if a signal stopped training.
  """
  n = len(specs)
  dirs = [rundir.absolute(s.workdir) for s in specs]
  if len(set(dirs)) != n:
    raise ValueError(f"workdirs must be distinct, got {dirs}")
  # Every process is given the same runs (checked before anything else, so
  # that no process fails alone and leaves the others waiting) ...
  processes.check_same("what to train", _fingerprint(specs))
  for spec in specs:  # bad input fails before anything is created
    config_lib.validate(ml_collections.ConfigDict(spec.config.to_dict()),
                        process_count=jax.process_count())
  locks: list[runs.RunLock] = []
  try:
    processes.on_writer(lambda: _lock_all(specs, locks))
    members = [_prepare(s) for s in specs]
    # ... and restored the same step, under the same resolved schedule.
    # This is also the barrier before process 0 rewrites metrics.jsonl.
    processes.check_same("the state to resume from", {
        m.spec.workdir: {"step": m.step,
                         "schedule": schedules.to_config(m.schedule)}
        for m in members})
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(members):
      groups.setdefault(m.group_key(), []).append(i)
    if len(groups) > 1:
      logging.info("%d runs split into %d groups that differ in static "
                   "choices, length or config: sizes %s", n, len(groups),
                   [len(g) for g in groups.values()])
    results: list[dict] = [{}] * n
    for idx in groups.values():
      todo = [i for i in idx if members[i].remaining > 0]
      for i in sorted(set(idx) - set(todo)):
        results[i] = _finished_summary(members[i])
      if todo:
        for i, r in zip(todo, _train([members[i] for i in todo])):
          results[i] = r
        if any(r.get("stopped_by") for r in results):
          break
    return results
  finally:
    for lock in locks:
      lock.release()


def train_population(configs: list[ml_collections.ConfigDict],
                     workdirs: list[str], *,
                     starts: list[Start | None] | None = None,
                     lineage_infos: list[dict | None] | None = None
                     ) -> list[dict]:
  """``train_specs`` of ``RunSpec(configs[i], workdirs[i], ...)``."""
  if len(workdirs) != len(configs):
    raise ValueError(f"{len(configs)} configs but {len(workdirs)} workdirs")
  n = len(configs)
  return train_specs([RunSpec(c, w, s, li) for c, w, s, li in zip(
      configs, workdirs, starts or [None] * n, lineage_infos or [None] * n)])


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       start: Start | None = None,
                       lineage_info: dict | None = None,
                       allow_changes: tuple[str, ...] = ()) -> dict:
  """Trains ``config`` in ``workdir`` (resuming if it holds a run).

  Args:
    config: a config as in ``configs/`` (see ``train.config.base_config``).
    workdir: the run directory.
    start: where to take the state from when ``workdir`` has no checkpoint
      yet (a branch's fork point).
    lineage_info: ``run.json`` fields for a new run (parent, fork_step, ...).
    allow_changes: config keys that may differ from the run's on resume.

  Returns:
    A summary: final step, eval loss, the final state, the effective schedule;
    for a config with a ``population``, ``{"members": [summary, ...]}``.
  """
  if population_lib.is_population(config):
    configs, workdirs = population_lib.expand(config, workdir)
    return {"workdir": workdir, "members": train_specs(
        [RunSpec(c, w, allow_changes=tuple(allow_changes))
         for c, w in zip(configs, workdirs)])}
  return train_specs([RunSpec(config, workdir, start, lineage_info,
                              tuple(allow_changes))])[0]


def branch(workdir: str, from_step: int, decay_steps: int,
           decay_shape: str = "linear", final_value: float = 0.0,
           name: str | None = None, overwrite: bool = False,
           train_overrides: dict | None = None) -> dict:
  """Forks a decay from ``workdir``'s checkpoint at ``from_step`` and trains
  it (``runs.branch_spec``); rerunning resumes the branch."""
  return train_specs([runs.branch_spec(workdir, from_step, decay_steps,
                                       decay_shape, final_value, name,
                                       overwrite, train_overrides)])[0]


def continue_from_branch(config: ml_collections.ConfigDict, workdir: str,
                         name: str) -> dict:
  """WSD-S: the main run continues from branch ``name``'s decayed state
  (``runs.wsd_s_spec``)."""
  return train_specs([runs.wsd_s_spec(config, workdir, name)])[0]
