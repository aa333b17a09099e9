"""``config.json`` and ``run.json`` of a run: what it is and where it came from.

``run.json`` holds the run's *effective* schedule: the one that gives the LR
of every step the run's state has seen, the parent's prefix included. When a
run resumes under another schedule (or, in WSD-S, continues from a branch's
decayed state) the effective schedule becomes a ``splice`` of the old one and
the new one at the resume step, so laws and plots read the true LR sequence.
"""

from __future__ import annotations

import json
import time
from typing import Iterable

import ml_collections
from absl import logging

from wsd_jax import schedules
from wsd_jax.runs import processes, rundir

# Config keys that may change when a run resumes without being asked for:
# how long to train and the bookkeeping, none of which changes the updates
# (gradient accumulation and rematerialisation give the same update, and a
# run may resume on another number of devices: ``mesh``).
RESUMABLE = ("train.steps", "train.log_every", "train.eval_every",
             "train.checkpoint_every", "train.keep_last", "train.keep_every",
             "train.keep_steps", "train.async_checkpoint", "train.progress",
             "train.plots", "train.fingerprints", "train.grad_accum_steps",
             "model.remat", "data.eval_batch_size", "mesh")


class ConfigChangedError(ValueError):
  """A rerun's config differs from the run's in keys it may not change."""


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
  keys = sorted(set(old) | set(new))
  out = []
  for k in keys:
    a, b = old.get(k), new.get(k)
    if isinstance(a, dict) and isinstance(b, dict):
      out += _differences(a, b, f"{prefix}{k}.")
    elif a != b and not (isinstance(a, list) and isinstance(b, tuple)
                         and a == list(b)):
      out.append(f"{prefix}{k}: {a!r} -> {b!r}")
  return out


def _json_config(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort())


def _allowed(diff: str, allowed: Iterable[str]) -> bool:
  key = diff.split(":", 1)[0]
  return any(key == a or key.startswith(a + ".") for a in allowed)


def check_resume(workdir: str, config: ml_collections.ConfigDict,
                 schedule: schedules.Schedule, step: int,
                 allow_changes: Iterable[str] = (),
                 prefix: schedules.Schedule | None = None) -> None:
  """Refuses, before anything is restored, a rerun whose config differs from
  the run's in keys outside ``RESUMABLE`` and ``allow_changes``, or whose
  schedule would change from ``step`` on (unless ``"schedule"`` is allowed
  or the state comes from another run, ``prefix``). No-op for a new run."""
  if not rundir.is_run(workdir):
    return
  allowed = tuple(RESUMABLE) + tuple(allow_changes)
  old_cfg = rundir.read_json(rundir.config_path(workdir))
  diff = [d for d in _differences(old_cfg, _json_config(config))
          if not _allowed(d, allowed + ("schedule",))]
  if diff:
    raise ConfigChangedError(
        f"{workdir} holds a run with another config: {'; '.join(diff)}. Use a "
        "new --workdir (a study's other plan, e.g. --quick, needs its own); "
        "to change a run on purpose, experiments.train takes "
        "--allow_changes=KEY[,KEY] naming the keys")
  if prefix is not None or _allowed("schedule", allowed):
    return
  old = schedules.from_config(rundir.read_run(workdir)["schedule"])
  if not _continues(old, schedule, step):
    raise ConfigChangedError(
        f"{workdir}: the schedule from step {step} on would change from "
        f"{schedules.to_config(old)} to {schedules.to_config(schedule)} (a "
        "schedule whose total_steps follows train.steps changes with it). "
        "Rerun with --allow_changes=schedule to splice the new schedule in at "
        f"step {step}, or set the schedule's numbers explicitly")


def _continues(effective: schedules.Schedule, schedule: schedules.Schedule,
               step: int) -> bool:
  """Whether ``effective`` already equals ``schedule`` from ``step`` on."""
  if schedules.equal(effective, schedule):
    return True
  return (isinstance(effective, schedules.Splice) and
          effective.at_step <= step and
          schedules.equal(effective.second, schedule))


def record(workdir: str, config: ml_collections.ConfigDict,
           schedule: schedules.Schedule, step: int, info: dict,
           data_info: dict, prefix: schedules.Schedule | None = None
           ) -> schedules.Schedule:
  """Writes or updates config.json / run.json; returns the effective schedule.

  Args:
    workdir: the run directory.
    config: the resolved config of this invocation.
    schedule: the schedule of ``config``.
    step: the step training starts from.
    info: lineage fields for a new run (parent, fork_step) or a resume event
      (``resumed_from``) to append.
    data_info: facts about the data (the bigram's optimal loss).
    prefix: the schedule that produced the state at ``step`` when it came from
      another run (WSD-S); default: this run's own effective schedule.
  """
  # config.json holds the resolved schedule (the config's section may give
  # only fractions, or let total_steps follow train.steps).
  new_cfg = dict(_json_config(config), schedule=schedules.to_config(schedule))
  if not rundir.is_run(workdir):
    effective = schedule if prefix is None else schedules.splice(
        prefix, step, schedule)
    run = {"name": rundir.name_of(workdir), "format": rundir.FORMAT,
           "parent": info.get("parent"), "fork_step": info.get("fork_step"),
           "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "resumes": [],
           "data": data_info}
  else:
    run = rundir.read_run(workdir)
    old = schedules.from_config(run["schedule"])
    base = prefix or old
    effective = base if _continues(base, schedule, step) else (
        schedules.splice(base, step, schedule))
    if not schedules.equal(effective, old):
      # Only a change the caller asked for gets here (check_resume refuses
      # the others): INFO, so a controller changing it at every stage
      # (AutoLRS) does not print between the progress bars.
      logging.info("%s: schedule from step %d is now %s", workdir, step,
                   schedules.to_config(schedule))
  if info.get("resumed_from"):
    event = dict(info["resumed_from"], step=step)
    if event not in run["resumes"]:  # a rerun after a failed start
      run["resumes"].append(event)
  run["schedule"] = schedules.to_config(effective)
  run["format"] = rundir.FORMAT
  # Every process has read the files before process 0 replaces them.
  processes.barrier(f"record {workdir}")
  if processes.is_writer():
    rundir.write_json(rundir.config_path(workdir), new_cfg)
    rundir.write_json(rundir.run_path(workdir), run)
  return effective
