"""Run specs: what to train, into which directory, starting from where.

A ``RunSpec`` is everything ``wsd_jax.train.train_specs`` needs to train a
run; this module only lays specs out (it never trains). A decay branch is a
spec whose state starts at a main run's checkpoint and whose schedule is
``schedules.branch(main, S, D)``; WSD-S is a spec that continues the main run
from a branch's decayed state.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np
from etils import epath

from wsd_jax import schedules
from wsd_jax.runs import processes, rundir
from wsd_jax.runs.checkpoint import Checkpointer


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
  """One run to train.

  Attributes:
    config: the run's config (``wsd_jax.train.base_config`` layout).
    workdir: its run directory (created or resumed).
    start: where the state comes from if not from ``workdir`` itself.
    lineage_info: ``run.json`` fields of a new run (parent, fork_step) or a
      ``resumed_from`` event.
    allow_changes: config keys that may differ from the run's on resume
      besides ``lineage.RESUMABLE`` (e.g. ``("schedule",)``).
  """
  config: ml_collections.ConfigDict
  workdir: str
  start: Start | None = None
  lineage_info: dict | None = None
  allow_changes: tuple[str, ...] = ()


def checkpoint_steps(workdir: str) -> list[int]:
  """The committed checkpoint steps of a run, ascending."""
  if not epath.Path(rundir.checkpoint_dir(workdir)).exists():
    return []
  return Checkpointer(rundir.checkpoint_dir(workdir), read_only=True).steps()


def branch_name(from_step: int, decay_steps: int, decay_shape: str) -> str:
  return f"{decay_shape}_from{from_step}_d{decay_steps}"


def _dependents(workdir: str, name: str) -> list[str]:
  """What relies on branch ``name`` of ``workdir``: WSD-S resumes of the main
  run that continued from it, and branches of the branch itself."""
  out = [f"the main run continued from it at step {r['step']} (WSD-S)"
         for r in rundir.read_run(workdir).get("resumes", [])
         if r.get("branch") == name]
  out += [f"its own branch {b!r}" for b in
          rundir.branches(rundir.branch_dir(workdir, name))]
  return out


def _same_branch(bdir: str, from_step: int, sched: schedules.Branch) -> bool:
  """Whether the run in ``bdir`` is the branch ``sched`` forked at
  ``from_step``: the same decay, and a base schedule that agrees with the
  main run's up to the fork (the main run's effective schedule may have
  changed after the fork, e.g. by WSD-S)."""
  if rundir.read_run(bdir).get("fork_step") != from_step:
    return False
  old = schedules.from_config(rundir.read_run(bdir)["schedule"])
  if not isinstance(old, schedules.Branch):
    return False
  if (old.at_step, old.decay_steps, old.decay_shape, old.final_value) != (
      sched.at_step, sched.decay_steps, sched.decay_shape, sched.final_value):
    return False
  if old.base == sched.base:
    return True
  return bool(np.array_equal(schedules.values(old.base, from_step + 1),
                             schedules.values(sched.base, from_step + 1)))


def branch_spec(workdir: str, from_step: int, decay_steps: int,
                decay_shape: str = "linear", final_value: float = 0.0,
                name: str | None = None, overwrite: bool = False,
                train_overrides: dict | None = None) -> RunSpec:
  """Lays out a decay branch of ``workdir`` forked at ``from_step``.

  A branch of the same spec under ``name`` is resumed; a different one is
  refused unless ``overwrite`` (then it is deleted) — and never deleted while
  other runs depend on it. ``train_overrides`` sets ``config.train`` fields
  of the branch (eval_every, log_every, ...).
  """
  main_run = rundir.read_run(workdir)
  steps = checkpoint_steps(workdir)
  if from_step not in steps:
    raise ValueError(f"no checkpoint at step {from_step} in {workdir}; "
                     f"available steps: {steps}")
  main_schedule = schedules.from_config(main_run["schedule"])
  sched = schedules.branch(main_schedule, int(from_step), int(decay_steps),
                           decay_shape, float(final_value))
  name = name or branch_name(from_step, decay_steps, decay_shape)
  bdir = rundir.branch_dir(workdir, name)
  if rundir.is_run(bdir) and _same_branch(bdir, from_step, sched):
    # Resumed as it was laid out (the main run may have moved on since).
    sched = schedules.from_config(rundir.read_run(bdir)["schedule"])
  elif rundir.is_run(bdir):
    if not overwrite:
      raise ValueError(f"branch {name!r} already exists in {workdir} with "
                       "another fork step or decay; choose another --name or "
                       "pass --overwrite")
    if deps := _dependents(workdir, name):
      raise ValueError(f"branch {name!r} of {workdir} cannot be overwritten: "
                       f"other runs depend on it ({'; '.join(deps)}). "
                       "Choose another --name")
    processes.barrier(f"overwrite {bdir}")  # all have read it
    if processes.is_writer():
      epath.Path(bdir).rmtree()
    processes.barrier(f"overwritten {bdir}")
  config = ml_collections.ConfigDict(rundir.read_config(workdir))
  config.schedule = ml_collections.ConfigDict(schedules.to_config(sched))
  config.train.steps = sched.end_step
  config.train.update(train_overrides or {})
  return RunSpec(config, bdir,
                 Start(rundir.checkpoint_dir(workdir), int(from_step)),
                 {"parent": "../..", "fork_step": int(from_step)},
                 allow_changes=tuple(f"train.{k}" for k in
                                     (train_overrides or {})))


def wsd_s_spec(config: ml_collections.ConfigDict, workdir: str, name: str
               ) -> RunSpec:
  """WSD-S: the main run in ``workdir`` continues from branch ``name``'s
  decayed state.

  The main run must have stopped at the branch's fork step (its latest
  checkpoint); it then goes on from the branch's last step at the LR its own
  schedule gives there, with no re-warmup. Rerunning resumes as usual.
  """
  bdir = rundir.branch_dir(workdir, name)
  brun = rundir.read_run(bdir)
  bsched = schedules.from_config(brun["schedule"])
  end = bsched.end_step
  bsteps = checkpoint_steps(bdir)
  if end not in bsteps:
    raise ValueError(f"branch {name!r} has not finished its decay (needs a "
                     f"checkpoint at step {end}, has {bsteps}); rerun it first")
  latest = max(checkpoint_steps(workdir), default=None)
  resumed = any(r.get("branch") == name
                for r in rundir.read_run(workdir).get("resumes", []))
  if latest is not None and latest > brun["fork_step"] and not resumed:
    raise ValueError(
        f"the main run in {workdir} has trained past the fork step "
        f"{brun['fork_step']} of branch {name!r} (latest checkpoint {latest});"
        " WSD-S continues a main run stopped at the fork step")
  return RunSpec(config, workdir,
                 Start(rundir.checkpoint_dir(bdir), end, schedule=bsched,
                       replace_own=True),
                 {"resumed_from": {"branch": name, "branch_step": end}})
