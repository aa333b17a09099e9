"""``config.json`` and ``run.json`` of a run: what it is and where it came from.

``run.json`` holds the run's *effective* schedule: the one that gives the LR
of every step the run's state has seen, the parent's prefix included. When a
run resumes under another schedule (or, in WSD-S, continues from a branch's
decayed state) the effective schedule becomes a ``splice`` of the old one and
the new one at the resume step, so laws and plots read the true LR sequence.
"""

from __future__ import annotations

import os
import time

import jax
import ml_collections
from absl import logging

from wsd_jax import schedules
from wsd_jax.runs import rundir

# Config sections that may change when a run resumes.
_MUTABLE = ("train", "schedule")


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
  import json
  return json.loads(config.to_json_best_effort())


def _continues(effective: schedules.Schedule, schedule: schedules.Schedule,
               step: int) -> bool:
  """Whether ``effective`` already equals ``schedule`` from ``step`` on."""
  if effective == schedule:
    return True
  return (isinstance(effective, schedules.Splice) and
          effective.at_step <= step and effective.second == schedule)


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
  new_cfg = _json_config(config)
  run_path = os.path.join(workdir, rundir.RUN)
  if not rundir.is_run(workdir):
    effective = schedule if prefix is None else schedules.splice(
        prefix, step, schedule)
    run = {"name": os.path.basename(os.path.abspath(workdir)),
           "parent": info.get("parent"), "fork_step": info.get("fork_step"),
           "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "resumes": [],
           "data": data_info}
  else:
    run = rundir.read_run(workdir)
    old_cfg = rundir.read_json(os.path.join(workdir, rundir.CONFIG))
    fixed = {k: v for k, v in old_cfg.items() if k not in _MUTABLE}
    if diff := _differences(fixed, {k: v for k, v in new_cfg.items()
                                    if k not in _MUTABLE}):
      raise ValueError(
          f"{workdir} holds a run with another config; only train.* and the "
          f"schedule may change on resume. Differences: {'; '.join(diff)}")
    old = schedules.from_config(run["schedule"])
    base = prefix or old
    effective = base if _continues(base, schedule, step) else (
        schedules.splice(base, step, schedule))
    if effective != old:
      logging.warning("%s: schedule from step %d is now %s", workdir, step,
                      schedules.to_config(schedule))
  if info.get("resumed_from"):
    event = dict(info["resumed_from"], step=step)
    if event not in run["resumes"]:  # a rerun after a failed start
      run["resumes"].append(event)
  run["schedule"] = schedules.to_config(effective)
  if jax.process_index() == 0:
    rundir.write_json(os.path.join(workdir, rundir.CONFIG), new_cfg)
    rundir.write_json(run_path, run)
  return effective
