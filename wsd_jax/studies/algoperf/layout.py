"""AlgoPerf's directory layout (DESIGN.md) and the files of a trial::

  DIR/submissions/SUB/study_K/WORKLOAD_jax/
      clock.json              which seconds each trial's ``score`` holds, the
                              study's best trial, the device
      trial_I/                a run directory (``refined_on_the_clock``: the
                              runs are ``refined_oracle``'s), plus
          eval_measurements.csv   global_step, score (training seconds), metric
          hparams.json            the trial's point (and derived values)
  DIR/alone/SUB/study_K/WORKLOAD_jax/trial_I/   the best trial rerun alone
"""

from __future__ import annotations

import csv
import io
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from etils import epath

from wsd_jax import runs
from wsd_jax.runs import rundir
from wsd_jax.studies.algoperf import scoring
from wsd_jax.studies.algoperf.workloads import Workload

MEASUREMENTS = "eval_measurements.csv"
CLOCK = "clock.json"


def study_dir(root: str, submission: str, study: int, workload: str,
              under: str = "submissions") -> str:
  return rundir.join(root, under, submission, f"study_{study}",
                     f"{workload}_jax")


def trial_dir(root: str, submission: str, study: int, workload: str,
              trial: int, under: str = "submissions") -> str:
  return rundir.join(study_dir(root, submission, study, workload, under),
                     f"trial_{trial}")


def device() -> dict[str, Any]:
  """The device the seconds come from: ``jax.devices()[0]``'s kind and
  platform, and how many there are."""
  d = jax.devices()[0]
  return {"device_kind": getattr(d, "device_kind", d.platform),
          "platform": d.platform, "device_count": jax.device_count()}


def measurements(w: Workload, run_dir: str, steps_col: str | None = None
                 ) -> dict[str, np.ndarray]:
  """The AlgoPerf columns of a finished run: every evaluation's
  ``global_step``, ``score`` (training seconds there) and metric.

  ``steps_col``: a logged column that replaces the trainer's step as
  ``global_step`` (AutoLRS's ``compute_steps``, exploration included),
  interpolated at the evaluations.
  """
  run = runs.Run(run_dir)
  total = int(run.config["train"]["steps"])
  if run.last_step < total:  # a stopped run must never count as a trial
    raise ValueError(f"{run_dir}: the run stopped at step {run.last_step} "
                     f"of {total}; rerun the command to resume it")
  steps, losses = run.eval_curve()
  t_steps, t = run.column("train_time_s")
  seconds = np.interp(steps, t_steps, t) if t_steps.size else steps * np.nan
  values = (np.asarray(w.error_rate(run_dir, steps), np.float64)
            if w.error_rate else losses)
  global_step = steps
  if steps_col is not None:
    c_steps, c = run.column(steps_col)
    global_step = np.round(np.interp(steps, c_steps, c)).astype(np.int64)
  return {"global_step": global_step, "score": seconds, w.metric: values}


def trial_seed(study: int, trial: int) -> int:
  return 1000 * study + trial


def write_trial(w: Workload, run_dir: str, point: Mapping[str, Any],
                steps_col: str | None = None, **derived) -> None:
  """A finished trial's ``hparams.json`` (its point, and ``derived``
  values) and ``eval_measurements.csv``."""
  rundir.write_json(rundir.join(run_dir, "hparams.json"),
                    dict(point) | derived)
  write_csv(rundir.join(run_dir, MEASUREMENTS),
            measurements(w, run_dir, steps_col))


def write_csv(path: str, columns: Mapping[str, Sequence[Any]]) -> None:
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  names = list(columns)
  writer.writerow(names)
  for row in zip(*(columns[n] for n in names)):
    writer.writerow([_cell(v) for v in row])
  rundir.write_text(path, out.getvalue())


def _cell(v: Any) -> Any:
  if isinstance(v, (float, np.floating)):
    return repr(float(v))
  return v.item() if hasattr(v, "item") else v


def read_csv(path: str) -> dict[str, np.ndarray]:
  """A CSV written by :func:`write_csv` as float columns."""
  rows = list(csv.reader(io.StringIO(epath.Path(path).read_text())))
  return {n: np.asarray([float(r[j]) for r in rows[1:]], np.float64)
          for j, n in enumerate(rows[0])}


def read_trial(root: str, sub: str, study: int, w: str, trial: int
               ) -> dict[str, np.ndarray]:
  return read_csv(rundir.join(trial_dir(root, sub, study, w, trial),
                              MEASUREMENTS))


def load_trials(root: str, sub: str, study: int, w: str, num_trials: int
                ) -> list[dict[str, np.ndarray]]:
  return [read_trial(root, sub, study, w, i) for i in range(num_trials)]


def best_trial(trials: Sequence[Mapping[str, np.ndarray]], metric: str,
               target: float, minimize: bool = True) -> int:
  """The study's best trial: the one reaching ``target`` at the earliest
  evaluation (ties: the first trial); if none does, the best value."""
  idx = [scoring.first_reached(t[metric], target, minimize) for t in trials]
  hits = [(j, i) for i, j in enumerate(idx) if j >= 0]
  if hits:
    return min(hits)[1]
  best = [np.nanmin(np.where(np.isfinite(t[metric]), t[metric], np.inf))
          if minimize else -np.nanmax(np.where(np.isfinite(t[metric]),
                                               t[metric], -np.inf))
          for t in trials]
  return int(np.argmin(best))


def read_clock(root: str, sub: str, study: int, w: str) -> dict | None:
  path = rundir.join(study_dir(root, sub, study, w), CLOCK)
  return rundir.read_json(path) if rundir.exists(path) else None


def write_clock(root: str, sub: str, study: int, w: str, clock: dict
                ) -> None:
  rundir.write_json(rundir.join(study_dir(root, sub, study, w), CLOCK),
                    clock | {"device": device()})
