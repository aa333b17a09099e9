"""The benchmark: plans each (submission, study, workload) as one population
of trials, trains it, and writes AlgoPerf's layout (``layout.py``).

``score`` is the trainer's ``train_time_s`` (compilation counts; evaluation,
logging and checkpointing do not). The trials of a study train as one
vmapped program and share its clock; with ``rerun_best`` the study's best
trial is trained again alone and its ``score`` becomes that run's clock
(``clock.json`` says which seconds each trial holds). Each (submission,
study, workload) is resumable: a finished one is skipped, an interrupted one
resumes from its checkpoints.
"""

from __future__ import annotations

import os
import time
import zlib
from typing import Any, Iterable, Mapping, Sequence

import ml_collections
import numpy as np

from wsd_jax import runs
from wsd_jax.runs import rundir
from wsd_jax.studies import common
from wsd_jax.studies.algoperf import adaptive, layout, scoring, search
from wsd_jax.studies.algoperf import submissions as subs_lib
from wsd_jax.studies.algoperf.layout import (MEASUREMENTS, load_trials,
                                             measurements, read_csv,
                                             trial_dir, write_csv)
from wsd_jax.studies.algoperf.workloads import Workload

__all__ = ["MEASUREMENTS", "load_trials", "measurements", "read_csv",
           "trial_dir", "write_csv"]

TAG = "algoperf"
TIME_COLS = {"steps": "global_step", "seconds": "score"}


def study_seed(submission: str, study: int) -> int:
  """The Halton scrambling seed of a study (stable across processes)."""
  return zlib.crc32(f"{submission}/study_{study}".encode()) & 0x7FFFFFFF


def trial_points(sub: subs_lib.Submission, study: int, num_trials: int
                 ) -> list[dict[str, Any]]:
  """The study's quasirandom points (the same on every workload)."""
  return search.points(sub.search_space, num_trials,
                       study_seed(sub.name, study))


def specs(sub: subs_lib.Submission, w: Workload, root: str, study: int,
          num_trials: int, base=None) -> list[runs.RunSpec]:
  """One run spec per trial of a study (seed ``1000 * study + trial``); its
  schedule spans the workload's budget, ``max_steps`` (the target was set
  over ``0.75 * step_hint``)."""
  base = base if base is not None else w.config()
  out = []
  for i, p in enumerate(trial_points(sub, study, num_trials)):
    c = sub.build(p, base, w.max_steps, w.max_steps)
    c.seed = layout.trial_seed(study, i)
    out.append(runs.RunSpec(c, trial_dir(root, sub.name, study, w.name, i)))
  return out


def done(root: str, sub: str, study: int, w: str, num_trials: int,
         rerun_best: bool = False) -> bool:
  """Every trial's measurements are written, and (``rerun_best``) the best
  trial's seconds are its own."""
  clock = layout.read_clock(root, sub, study, w)
  return clock is not None and (clock["rerun"] or not rerun_best) and all(
      rundir.exists(rundir.join(trial_dir(root, sub, study, w, i),
                                MEASUREMENTS)) for i in range(num_trials))


def run_study(sub: subs_lib.Submission, w: Workload, root: str, study: int,
              num_trials: int, base=None, target: float | None = None,
              rerun_best: bool = False) -> bool:
  """Trains one study of ``sub`` on ``w`` and writes its trials' files and
  ``clock.json``; False when it was already done.

  A ``population`` study trains its trials as one vmapped program where
  their structure agrees; ``refined`` and ``autolrs`` ones are in
  ``adaptive.py``. ``target`` picks the best trial (a refined study's
  source, the trial ``rerun_best`` trains again alone).
  """
  if done(root, sub.name, study, w.name, num_trials, rerun_best):
    return False
  started = _cost_start()
  base = base if base is not None else w.config()
  target = float("nan") if target is None else float(target)
  points = trial_points(sub, study, num_trials)
  if sub.kind == "population":
    todo = specs(sub, w, root, study, num_trials, base)
    common.train_stage(TAG, f"{sub.name} study {study} on {w.name}", todo)
    for spec, point in zip(todo, points):
      layout.write_trial(w, spec.workdir, point)
    clocks = [_shared(num_trials)] * num_trials
  elif sub.kind == "refined":
    source = subs_lib.get(sub.source)
    run_study(source, w, root, study, num_trials, base, target, rerun_best)
    if sub.runs_of:  # the same runs, the source trial counted
      run_study(subs_lib.get(sub.runs_of), w, root, study, num_trials, base,
                target, rerun_best)
      adaptive.write_on_the_clock(sub, w, root, study, num_trials)
      layout.write_clock(root, sub.name, study, w.name, layout.read_clock(
          root, sub.runs_of, study, w.name) | {"source_counted": True,
                                               "cost": _cost(started)})
      return True
    clocks = [adaptive.train_refined(sub, w, root, study, points, base)
              ] * num_trials
  elif sub.kind == "autolrs":
    adaptive.train_autolrs(sub, w, root, study, points, base)
    clocks = ["alone"] * num_trials
  else:
    raise ValueError(f"submission {sub.name}: unknown kind {sub.kind!r}")
  best = layout.best_trial(load_trials(root, sub.name, study, w.name,
                                       num_trials), w.metric, target,
                           w.minimize)
  clock = {"best_trial": best, "clocks": clocks, "rerun": rerun_best}
  if rerun_best and clocks[best] == "population":
    clock["population_score"] = rerun_alone(sub, w, root, study, best)
    clocks[best] = "alone"
  layout.write_clock(root, sub.name, study, w.name,
                     clock | {"cost": _cost(started)})
  return True


def _cost_start() -> tuple[float, float]:
  return time.perf_counter(), time.process_time()


def _cost(started: tuple[float, float]) -> dict:
  """What one (submission, study, workload) cost this process: wall and
  CPU seconds (all threads; a study that had to train its refined source
  first includes it) and the 1-min load average at the end, so sittings
  on a shared machine can be summed honestly."""
  wall, cpu = started
  return {"wall_s": round(time.perf_counter() - wall, 2),
          "cpu_s": round(time.process_time() - cpu, 2),
          "load_1min": round(os.getloadavg()[0], 2)}


def cost(root: str, subs: Iterable[str], ws: Sequence[Workload],
         studies: int) -> dict:
  """The summed cost of the units in ``root`` that recorded one (units
  trained before costs were recorded are counted in ``unrecorded``)."""
  out = {"units": 0, "unrecorded": 0, "wall_s": 0.0, "cpu_s": 0.0}
  for s in subs:
    for w in ws:
      for k in range(studies):
        clock = layout.read_clock(root, s, k, w.name) or {}
        if "cost" in clock:
          out["units"] += 1
          out["wall_s"] += clock["cost"]["wall_s"]
          out["cpu_s"] += clock["cost"]["cpu_s"]
        else:
          out["unrecorded"] += 1
  out["wall_s"], out["cpu_s"] = (round(out["wall_s"], 1),
                                 round(out["cpu_s"], 1))
  return out


def _shared(num_trials: int) -> str:
  """The clock of a population's member (one member trains alone)."""
  return "population" if num_trials > 1 else "alone"


def rerun_alone(sub: subs_lib.Submission, w: Workload, root: str,
                study: int, trial: int) -> list[float]:
  """Trains trial ``trial`` again as a run of its own (same config and
  seed) under ``DIR/alone/`` and makes that run's clock the trial's
  ``score``; returns the population's seconds it replaces."""
  d = trial_dir(root, sub.name, study, w.name, trial)
  alone = trial_dir(root, sub.name, study, w.name, trial, under="alone")
  config = ml_collections.ConfigDict(runs.Run(d).config)
  common.train_stage(TAG, f"{sub.name} study {study} on {w.name}: best "
                     f"trial {trial} alone", [runs.RunSpec(config, alone)])
  m = layout.read_trial(root, sub.name, study, w.name, trial)
  t_steps, t = runs.Run(alone).column("train_time_s")
  write_csv(rundir.join(d, MEASUREMENTS),
            m | {"score": np.interp(m["global_step"], t_steps, t)})
  return m["score"].tolist()


def time_to_targets(root: str, subs: Iterable[str], workloads: Sequence[
    Workload], targets: Mapping[str, Mapping[str, Any]], studies: int,
                    num_trials: int) -> list[dict]:
  """One row per (submission, workload): the median over studies of each
  study's time to target in steps and in seconds, the best trial of each
  study and how many studies reached the target; ``study_steps`` and
  ``study_seconds`` keep each study's own time."""
  out = []
  for s in subs:
    for w in workloads:
      target = float(targets[w.name]["target"])
      per_study = {k: [] for k in TIME_COLS}
      best, reached = [], 0
      for k in range(studies):
        trials = load_trials(root, s, k, w.name, num_trials)
        for key, col in TIME_COLS.items():
          per_study[key].append(scoring.study_time(trials, w.metric, target,
                                                   col, w.minimize))
        best.append(layout.best_trial(trials, w.metric, target, w.minimize))
        reached += any(scoring.first_reached(t[w.metric], target,
                                             w.minimize) >= 0 for t in trials)
      out.append({"submission": s, "workload": w.name,
                  **{key: scoring.median_over_studies(v)
                     for key, v in per_study.items()},
                  "studies_reached": reached, "studies": studies,
                  "best_trials": best,
                  **{f"study_{key}": v for key, v in per_study.items()}})
  return out


def score_table(rows: Sequence[dict], baseline: str = "cosine"
                ) -> list[dict]:
  """``scores.csv`` rows from ``time_to_targets`` rows."""
  subs = list(dict.fromkeys(r["submission"] for r in rows))
  table = {}
  for key in TIME_COLS:
    table[key] = {s: {r["workload"]: r[key] for r in rows
                      if r["submission"] == s} for s in subs}
  score = {key: scoring.scores(t) for key, t in table.items()}
  return [{"submission": s, "score_steps": score["steps"][s],
           "score_seconds": score["seconds"][s],
           "speedup_vs_cosine": (scoring.geomean_speedup(
               table["steps"], s, baseline) if baseline in subs
                                 else float("nan")),
           "workloads_reached": sum(np.isfinite(v) for v in
                                    table["steps"][s].values())}
          for s in subs]
