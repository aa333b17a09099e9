"""WSD-S "anytime" table: its decayed models vs separate WSD runs at equal
compute (Wen et al., arXiv 2410.05192).

For each study, the best ``wsd_s`` trial (peak ``P``, warmup ``W`` steps,
decay fraction ``f``) has decayed models at ``S_i`` (its
``checkpoint_steps``, on the evaluation cadence: ``submissions.wsd_s_ends``).
Against each, a WSD run of ``S_i`` steps: ``wsd(P, S_i, decay_steps=
round(f * S_i), warmup_steps=W)``, same seed. The WSD runs train as ONE
population of ``max_steps`` steps (their LR is 0 after ``S_i``, so they do
not change; ``S_i`` is read from each one's evaluation at ``S_i``), under
``DIR/anytime/study_K/WORKLOAD_jax/wsd_S``.
"""

from __future__ import annotations

from typing import Sequence

from wsd_jax import runs, schedules
from wsd_jax.runs import rundir
from wsd_jax.studies import common
from wsd_jax.studies.algoperf import layout
from wsd_jax.studies.algoperf.workloads import Workload
from wsd_jax.train.config import with_schedule

TAG = "algoperf"
SOURCE = "wsd_s"


def wsd_dir(root: str, study: int, w: str, steps: int) -> str:
  return rundir.join(root, "anytime", f"study_{study}", f"{w}_jax",
                     f"wsd_{steps}")


def specs(root: str, w: Workload, study: int, base) -> tuple[
    str, list[int], list[runs.RunSpec]]:
  """The best WSD-S trial's directory, its ``S_i`` and the WSD runs'
  specs."""
  clock = layout.read_clock(root, SOURCE, study, w.name)
  if clock is None:
    raise ValueError(f"the anytime table needs study {study} of {SOURCE} on "
                     f"{w.name}")
  trial = int(clock["best_trial"])
  src = layout.trial_dir(root, SOURCE, study, w.name, trial)
  run = runs.Run(src)
  s = run.schedule
  ends = [int(e) for e in s.checkpoint_steps]
  f = float(s.decay_fraction)
  out = []
  for end in ends:
    sched = schedules.wsd(float(s.peak_value), end,
                          decay_steps=max(1, round(f * end)),
                          warmup_steps=int(s.warmup_steps))
    c = with_schedule(base, sched, w.max_steps)
    c.optimizer.update(run.config["optimizer"])
    c.seed = int(run.config["seed"])
    out.append(runs.RunSpec(c, wsd_dir(root, study, w.name, end)))
  return src, ends, out


def table(root: str, w: Workload, study: int, base=None) -> list[dict]:
  """Trains the WSD runs (once) and returns one row per ``S_i``: the WSD-S
  trial's metric there and the WSD run's."""
  base = base if base is not None else w.config()
  src, ends, todo = specs(root, w, study, base)
  common.train_stage(TAG, f"anytime WSD runs, study {study} on {w.name}",
                     todo)
  wsd_s = layout.read_csv(rundir.join(src, layout.MEASUREMENTS))
  rows = []
  for end, spec in zip(ends, todo):
    path = rundir.join(spec.workdir, layout.MEASUREMENTS)
    if not rundir.exists(path):
      layout.write_csv(path, layout.measurements(w, spec.workdir))
    m = layout.read_csv(path)
    rows.append({"workload": w.name, "study": study, "steps": end,
                 "wsd_s": _at(wsd_s, w.metric, end),
                 "wsd": _at(m, w.metric, end)})
  return rows


def _at(m: dict, metric: str, step: int) -> float:
  hit = [j for j, s in enumerate(m["global_step"]) if int(s) == step]
  if not hit:
    raise ValueError(f"no evaluation at step {step} (evaluated at "
                     f"{m['global_step'].tolist()})")
  return float(m[metric][hit[-1]])


def tables(root: str, ws: Sequence[Workload], studies: int, bases: dict
           ) -> list[dict]:
  return [r for w in ws for k in range(studies)
          for r in table(root, w, k, bases.get(w.name))]
