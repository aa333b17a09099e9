"""Decay branches forked from a main run's checkpoints, and WSD-S.

A branch restores the main checkpoint at ``S`` (params, optimizer state, step,
tokens, data position) into ``MAIN/branches/NAME/`` and trains a decay with
``schedules.branch(main_schedule, S, D)``; the main run's files are only read.
WSD-S continues the main run from a branch's decayed state.
"""

from __future__ import annotations

import os
import shutil

import ml_collections

from wsd_jax import schedules
from wsd_jax.runs import rundir
from wsd_jax.runs.checkpoint import Checkpointer
from wsd_jax.train.loop import RunSpec, Start, train_and_evaluate, train_specs


def _config(workdir: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(rundir.read_config(workdir))


def _checkpoint_steps(workdir: str) -> list[int]:
  return Checkpointer(rundir.checkpoint_dir(workdir), read_only=True).steps()


def branch_name(from_step: int, decay_steps: int, decay_shape: str) -> str:
  return f"{decay_shape}_from{from_step}_d{decay_steps}"


def branch_spec(workdir: str, from_step: int, decay_steps: int,
                decay_shape: str = "linear", final_value: float = 0.0,
                name: str | None = None, overwrite: bool = False,
                train_overrides: dict | None = None) -> RunSpec:
  """Lays out (without training) a decay branch of ``workdir`` forked at
  ``from_step``; ``train_specs`` trains a list of them together.

  A branch of the same spec under ``name`` is resumed; a different one is
  refused unless ``overwrite`` (then it is deleted).
  """
  main_run = rundir.read_run(workdir)
  steps = _checkpoint_steps(workdir)
  if from_step not in steps:
    raise ValueError(f"no checkpoint at step {from_step} in {workdir}; "
                     f"available steps: {steps}")
  main_schedule = schedules.from_config(main_run["schedule"])
  sched = schedules.branch(main_schedule, int(from_step), int(decay_steps),
                           decay_shape, float(final_value))
  name = name or branch_name(from_step, decay_steps, decay_shape)
  bdir = rundir.branch_dir(workdir, name)
  if rundir.is_run(bdir):
    same = (rundir.read_run(bdir)["fork_step"] == from_step and
            schedules.from_config(rundir.read_config(bdir)["schedule"]) == sched)
    if overwrite:
      shutil.rmtree(bdir)
    elif not same:
      raise ValueError(f"branch {name!r} already exists in {workdir} with "
                       "another fork step or decay; choose another --name or "
                       "pass --overwrite")
  config = _config(workdir)
  config.schedule = ml_collections.ConfigDict(schedules.to_config(sched))
  config.train.steps = int(from_step) + int(decay_steps)
  config.train.update(train_overrides or {})
  return RunSpec(config, bdir,
                    Start(rundir.checkpoint_dir(workdir), int(from_step)),
                    {"parent": os.path.join("..", ".."),
                     "fork_step": int(from_step)})


def branch(workdir: str, from_step: int, decay_steps: int,
           decay_shape: str = "linear", final_value: float = 0.0,
           name: str | None = None, overwrite: bool = False,
           train_overrides: dict | None = None) -> dict:
  """Forks a decay from ``workdir``'s checkpoint at ``from_step`` and trains it.

  Rerunning the same branch resumes it; a different branch under an existing
  name is refused unless ``overwrite``.
  """
  return train_specs([branch_spec(workdir, from_step, decay_steps,
                                  decay_shape, final_value, name, overwrite,
                                  train_overrides)])[0]


def continue_from_branch(config: ml_collections.ConfigDict, workdir: str,
                         name: str) -> dict:
  """WSD-S: the main run continues from branch ``name``'s decayed state.

  The main run must have stopped at the branch's fork step (its latest
  checkpoint); it then goes on from the branch's last step at the LR its own
  schedule gives there, with no re-warmup. Rerunning resumes as usual.
  """
  bdir = rundir.branch_dir(workdir, name)
  brun = rundir.read_run(bdir)
  bsched = schedules.from_config(brun["schedule"])
  end = bsched.at_step + bsched.decay_steps
  bsteps = _checkpoint_steps(bdir)
  if end not in bsteps:
    raise ValueError(f"branch {name!r} has not finished its decay (needs a "
                     f"checkpoint at step {end}, has {bsteps}); rerun it first")
  latest = max(_checkpoint_steps(workdir), default=None)
  resumed = any(r.get("branch") == name
                for r in rundir.read_run(workdir).get("resumes", []))
  if latest is not None and latest > brun["fork_step"] and not resumed:
    raise ValueError(
        f"the main run in {workdir} has trained past the fork step "
        f"{brun['fork_step']} of branch {name!r} (latest checkpoint {latest});"
        " WSD-S continues a main run stopped at the fork step")
  return train_and_evaluate(
      config, workdir,
      start=Start(rundir.checkpoint_dir(bdir), end, schedule=bsched,
                  replace_own=True),
      lineage_info={"resumed_from": {"branch": name, "branch_step": end}})
