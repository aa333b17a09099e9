"""Studies of the submissions that are not a plain population of schedules.

``refined_oracle``: the study's best trial of ``source`` (``wsd_linear``)
is refined (Defazio et al., arXiv 2310.07831; ``adaptive.refined_schedule``
of its logged per-step l1 gradient norms, the Adam form, smoothing 0.1, over
the same ``max_steps``), with the source's linear warmup reapplied
(``lr_t *= t / W`` for ``t < W``, ``W`` the source's warmup steps), and the
schedule scaled so its peak is ``peak_scale`` times the source's peak. Its
trials differ only in the values of one tabulated schedule, one population
once the trainer can stack tabulated schedules (until then one run after
another, each with its own clock). Time to target counts only its own steps
and seconds.

``refined_on_the_clock``: the same runs; every ``global_step`` is shifted by
the source trial's steps (``max_steps``: refining needs its whole run) and
every ``score`` by the source trial's seconds (its ``score`` at its last
evaluation).

``autolrs``: one ``wsd_jax.adaptive.autolrs.train`` run per trial (its own
training loop; its seconds are the main run's plus those of the exploration
runs of every stage begun, like ``compute_steps``; LRs searched in
``[lr / 100, 10 lr]``, the module's default around a peak ``lr``);
``global_step`` is its ``compute_steps``
(every optimizer step, exploration included), and the budget is ``max_steps``
of compute, as for every other submission: the module's default ``k`` and
stage lengths for a run of ``max_steps``, and the main run trains the most
exploit steps whose compute fits the budget (``autolrs_plan``).
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from wsd_jax import runs, schedules
from wsd_jax.adaptive import refined
from wsd_jax.runs import rundir
from wsd_jax.studies import common
from wsd_jax.studies.algoperf import layout
from wsd_jax.studies.algoperf import submissions as subs_lib
from wsd_jax.studies.algoperf.workloads import Workload
from wsd_jax.train.config import with_schedule

TAG = "algoperf"
NORM = "l1"        # Adam's refinement (Defazio et al., Section 3)
SMOOTHING = 0.1


def source_trial(sub: subs_lib.Submission, w: Workload, root: str,
                 study: int) -> tuple[int, str]:
  """The index and run directory of the source study's best trial (its
  ``clock.json`` names it)."""
  clock = layout.read_clock(root, sub.source, study, w.name)
  if clock is None:
    raise ValueError(f"{sub.name}: study {study} of {sub.source} on "
                     f"{w.name} has not been trained")
  i = int(clock["best_trial"])
  return i, layout.trial_dir(root, sub.source, study, w.name, i)


def refined_from(source_dir: str, peak_value: float) -> schedules.Schedule:
  """The l1-refined schedule of ``source_dir``'s norms with its warmup,
  peak ``peak_value``."""
  run = runs.Run(source_dir)
  values = refined.refined_values(run.per_step(refined.NORM_KEYS[NORM]),
                                  peak_value=1.0, norm=NORM,
                                  smoothing=SMOOTHING)
  warmup = int(getattr(run.schedule, "warmup_steps", 0) or 0)
  t = np.arange(len(values))
  ramp = np.minimum(1.0, t / warmup) if warmup else np.ones(len(values))
  values = values * ramp
  return schedules.tabulated(values * (peak_value / values.max()))


def stackable(items: Sequence[schedules.Schedule]) -> bool:
  """Whether the trainer can stack these schedules into a population (a
  ``tabulated`` schedule refuses stacked 2-D values so far)."""
  try:
    jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *items)
  except ValueError:
    return False
  return True


def train_refined(sub: subs_lib.Submission, w: Workload, root: str,
                  study: int, points: Sequence[Mapping[str, Any]], base
                  ) -> str:
  """Trains the refined study and writes its trials; returns the trials'
  clock: ``population`` (one vmapped program) where the trainer can stack
  the tabulated schedules, else ``own`` (one run after another)."""
  _, src = source_trial(sub, w, root, study)
  peak = float(np.max(runs.Run(src).per_step("lr")))
  todo, scheds = [], []
  for i, p in enumerate(points):
    scheds.append(refined_from(src, peak * float(p["peak_scale"])))
    c = with_schedule(base, scheds[-1], w.max_steps)
    c.optimizer.update(sub.optimizer)
    c.seed = layout.trial_seed(study, i)
    todo.append(runs.RunSpec(c, layout.trial_dir(root, sub.name, study,
                                                  w.name, i)))
  together = len(todo) == 1 or stackable(scheds)
  label = f"{sub.name} study {study} on {w.name}"
  for group in ([todo] if together else [[t] for t in todo]):
    common.train_stage(TAG, label, group)
  for spec, p in zip(todo, points):
    layout.write_trial(w, spec.workdir, p,
                       learning_rate=peak * float(p["peak_scale"]),
                       source=rundir.absolute(src))
  return "population" if together and len(todo) > 1 else "alone"


def write_on_the_clock(sub: subs_lib.Submission, w: Workload, root: str,
                       study: int, num_trials: int) -> None:
  """``sub.runs_of``'s trials with the source trial's steps and seconds
  added (``hparams.json`` records both offsets)."""
  _, src = source_trial(sub, w, root, study)
  s = layout.read_csv(rundir.join(src, layout.MEASUREMENTS))
  offset = {"global_step": float(s["global_step"][-1]),
            "score": float(s["score"][-1])}
  for i in range(num_trials):
    oracle = layout.trial_dir(root, sub.runs_of, study, w.name, i)
    m = layout.read_csv(rundir.join(oracle, layout.MEASUREMENTS))
    d = layout.trial_dir(root, sub.name, study, w.name, i)
    rundir.write_json(rundir.join(d, "hparams.json"), rundir.read_json(
        rundir.join(oracle, "hparams.json")) | {
            "runs": rundir.absolute(oracle),
            "offset_steps": offset["global_step"],
            "offset_seconds": offset["score"]})
    layout.write_csv(rundir.join(d, layout.MEASUREMENTS), m | {
        k: m[k] + v for k, v in offset.items()})


def run_dir(root: str, sub: str, study: int, w: str, trial: int) -> str:
  """Where trial ``trial``'s run directory is (``runs_of``'s for a
  submission that reuses another's runs)."""
  s = subs_lib.get(sub)
  return layout.trial_dir(root, s.runs_of or sub, study, w, trial)


def autolrs_module():
  """``wsd_jax.adaptive.autolrs``, or a clear error."""
  try:
    return importlib.import_module("wsd_jax.adaptive.autolrs")
  except ImportError as e:
    raise RuntimeError(
        "AutoLRS not available: wsd_jax/adaptive/autolrs.py (autolrs.train) "
        f"is missing or does not import ({e})") from None


def available(sub: subs_lib.Submission) -> bool:
  if sub.kind != "autolrs":
    return True
  try:
    autolrs_module()
  except RuntimeError:
    return False
  return True


def autolrs_plan(autolrs, config, budget: int, bounds: tuple[float, float]
                 ) -> tuple[int, dict]:
  """AutoLRS's arguments for a budget of ``budget`` steps of compute: the
  module's defaults for a run of ``budget`` steps (``k``, ``tau =
  budget // 8``, ``tau'``, ``tau_max = budget // 2``), and the most exploit
  steps whose compute (exploration included) fits the budget."""
  c = ml_collections.ConfigDict(config.to_dict())
  c.train.steps = int(budget)
  p = autolrs.params(c, lr_bounds=bounds)
  kwargs = dict(k=p.k, tau_prime=p.tau_prime, tau=p.tau, tau_max=p.tau_max,
                lr_bounds=bounds)
  for steps in range(int(budget), 0, -1):
    c.train.steps = steps
    stages = autolrs.plan(steps, autolrs.params(c, **kwargs))
    if autolrs.compute_steps(steps, stages, p.k) <= budget:
      return steps, kwargs
  raise ValueError(f"AutoLRS: no run fits a budget of {budget} steps")


def exploration_seconds(autolrs, workdir: str, steps: np.ndarray
                        ) -> np.ndarray:
  """At each main-run step of ``steps``, the training seconds of the
  exploration runs of every stage begun before it (the rule of
  ``compute_steps``; each exploration run has a clock of its own)."""
  out = np.zeros(len(steps))
  for j, stage in enumerate(autolrs.read_stages(workdir)):
    spent = sum(float(runs.Run(autolrs.trial_dir(workdir, j, i)).column(
        "train_time_s")[1][-1]) for i in range(len(stage["trials"])))
    out += np.where(np.asarray(steps) > stage["start_step"], spent, 0.0)
  return out


def train_autolrs(sub: subs_lib.Submission, w: Workload, root: str,
                  study: int, points: Sequence[Mapping[str, Any]], base
                  ) -> None:
  """One AutoLRS run per trial (the paper's variant, the module's default
  ``k``, ``tau``s), LR bounds ``[lr / 100, 10 lr]``."""
  autolrs = autolrs_module()
  for i, p in enumerate(points):
    lr = float(p["learning_rate"])
    bounds = (lr / 100, 10 * lr)
    c = with_schedule(base, schedules.constant(lr), w.max_steps)
    c.train.steps, kwargs = autolrs_plan(autolrs, c, w.max_steps, bounds)
    c.optimizer.update(sub.optimizer)
    c.seed = layout.trial_seed(study, i)
    d = layout.trial_dir(root, sub.name, study, w.name, i)
    print(f"[{TAG}] {sub.name} study {study} on {w.name}: trial {i}",
          flush=True)
    autolrs.train(c, d, **kwargs)
    layout.write_trial(w, d, p, steps_col="compute_steps")
    m = layout.read_csv(rundir.join(d, layout.MEASUREMENTS))
    m["score"] = m["score"] + exploration_seconds(autolrs, d,
                                                  runs.Run(d).eval_curve()[0])
    keep = m["global_step"] <= w.max_steps
    layout.write_csv(rundir.join(d, layout.MEASUREMENTS),
                     {k: v[keep] for k, v in m.items()})
