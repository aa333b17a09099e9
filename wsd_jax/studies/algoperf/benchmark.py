"""The benchmark: plans each (submission, study, workload) as one population
of trials, trains it, and writes AlgoPerf's layout (DESIGN.md)::

  DIR/targets.json
  DIR/submissions/SUB/study_K/WORKLOAD_jax/trial_I/   a run directory, plus
      eval_measurements.csv   global_step, score (training seconds), metric
      hparams.json            the trial's point of the search space

``score`` is the trainer's ``train_time_s`` (compilation counts; evaluation,
logging and checkpointing do not). The trials of a study train as one
vmapped program and share its clock: a trial's seconds are its
population's. Each (submission, study, workload) is resumable: a finished
one is skipped, an interrupted one resumes from its checkpoints.
"""

from __future__ import annotations

import csv
import io
import zlib
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from etils import epath

from wsd_jax import runs
from wsd_jax.runs import rundir
from wsd_jax.studies import common
from wsd_jax.studies.algoperf import scoring, search
from wsd_jax.studies.algoperf import submissions as subs_lib
from wsd_jax.studies.algoperf.workloads import Workload

TAG = "algoperf"
MEASUREMENTS = "eval_measurements.csv"
TIME_COLS = {"steps": "global_step", "seconds": "score"}


def trial_dir(root: str, submission: str, study: int, workload: str,
              trial: int) -> str:
  return rundir.join(root, "submissions", submission, f"study_{study}",
                     f"{workload}_jax", f"trial_{trial}")


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
    c.seed = 1000 * study + i
    out.append(runs.RunSpec(c, trial_dir(root, sub.name, study, w.name, i)))
  return out


def measurements(w: Workload, run_dir: str) -> dict[str, np.ndarray]:
  """The AlgoPerf columns of a finished trial: every evaluation's
  ``global_step``, ``score`` (training seconds there) and metric."""
  run = runs.Run(run_dir)
  steps, losses = run.eval_curve()
  t_steps, t = run.column("train_time_s")
  seconds = np.interp(steps, t_steps, t) if t_steps.size else steps * np.nan
  values = (np.asarray(w.error_rate(run_dir, steps), np.float64)
            if w.error_rate else losses)
  return {"global_step": steps, "score": seconds, w.metric: values}


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


def done(root: str, sub: str, study: int, w: str, num_trials: int) -> bool:
  return all(rundir.exists(rundir.join(trial_dir(root, sub, study, w, i),
                                       MEASUREMENTS))
             for i in range(num_trials))


def run_study(sub: subs_lib.Submission, w: Workload, root: str, study: int,
              num_trials: int, base=None) -> bool:
  """Trains one study of ``sub`` on ``w`` (all trials as one population
  where their structure agrees) and writes its trials' files; False when
  it was already done."""
  if done(root, sub.name, study, w.name, num_trials):
    return False
  todo = specs(sub, w, root, study, num_trials, base)
  common.train_stage(TAG, f"{sub.name} study {study} on {w.name}", todo)
  for spec, point in zip(todo, trial_points(sub, study, num_trials)):
    rundir.write_json(rundir.join(spec.workdir, "hparams.json"), point)
    write_csv(rundir.join(spec.workdir, MEASUREMENTS),
              measurements(w, spec.workdir))
  return True


def load_trials(root: str, sub: str, study: int, w: str, num_trials: int
                ) -> list[dict[str, np.ndarray]]:
  return [read_csv(rundir.join(trial_dir(root, sub, study, w, i),
                               MEASUREMENTS)) for i in range(num_trials)]


def time_to_targets(root: str, subs: Iterable[str], workloads: Sequence[
    Workload], targets: Mapping[str, Mapping[str, Any]], studies: int,
                    num_trials: int) -> list[dict]:
  """One row per (submission, workload): the median over studies of each
  study's time to target in steps and in seconds, the best trial of each
  study and how many studies reached the target."""
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
        idx = [scoring.first_reached(t[w.metric], target, w.minimize)
               for t in trials]
        hits = [(j, i) for i, j in enumerate(idx) if j >= 0]
        best.append(min(hits)[1] if hits else
                    int(np.argmin([np.nanmin(t[w.metric]) for t in trials])))
        reached += bool(hits)
      out.append({"submission": s, "workload": w.name,
                  **{key: scoring.median_over_studies(v)
                     for key, v in per_study.items()},
                  "studies_reached": reached, "studies": studies,
                  "best_trials": best})
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
