"""Law validation on real text: fit the laws on some runs, predict the others.

Trains (or resumes) in ``WORKDIR/runs``: ``constant`` (the main run),
``cosine``, ``wsdNN_linear`` and ``wsd_s`` as one population of equal length;
decay branches (``wsd10_linear``, ``wsd10_1-sqrt``, ``wsd20_1-sqrt``) forked
from the end of ``constant`` and ``mid_branch`` forked from its middle. Fits
each law on ``study.fit`` and scores every run; writes into WORKDIR
``law_study.md`` / ``law_study.json`` (one row per law and run: role, mean
and max relative error, R^2; fitted parameters), ``law_study.png`` (observed
vs predicted curves and relative errors, one column per law) and
``report.md`` (the table, the papers' numbers, the verdict on the goal, the
environment).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from wsd_jax import plots, reports, runs, schedules
from wsd_jax.data import corpus
from wsd_jax.laws.curve import Curve
from wsd_jax.laws.report import LAWS, score_table
from wsd_jax.plots import plt
from wsd_jax.runs import rundir
from wsd_jax.studies import common
from wsd_jax.train.config import with_schedule

TAG = "law_study"
# What the papers report on held-out schedules (PAPERS.md).
PAPER_NUMBERS = {
    "multipower": "Luo et al. (arXiv 2503.12811): mean relative error "
                  "0.11-0.17%, worst 0.4-1.0%",
    "annealing": "Tissue et al. (arXiv 2408.11029): R^2 > 0.999",
}
GOAL_LAW = "multipower"
GOAL = {"mean_rel_err": 0.003, "max_rel_err": 0.01}  # multi-power, held out


# The runs.

def full_length_runs(s: ml_collections.ConfigDict
                     ) -> dict[str, schedules.Schedule]:
  """The population: schedules of ``s.total_steps`` steps."""
  t, w, peak = int(s.total_steps), int(s.warmup_steps), float(s.peak_value)
  budgets = tuple(round(b * t) for b in s.wsd_s_budgets)
  return {
      "constant": schedules.wsd(peak_value=peak, total_steps=t, decay_steps=0,
                                warmup_steps=w),
      "cosine": schedules.cosine(peak_value=peak, total_steps=t,
                                 warmup_steps=w),
      f"wsd{round(100 * s.wsd_fraction)}_linear": schedules.wsd(
          peak_value=peak, total_steps=t, warmup_steps=w,
          decay_steps=round(s.wsd_fraction * t)),
      "wsd_s": schedules.wsd_s(peak_value=peak, budgets=budgets,
                               warmup_steps=w),
  }


def branch_plan(s: ml_collections.ConfigDict
                ) -> dict[str, tuple[int, int, str]]:
  """Branch name -> (fork step, decay steps, shape), all from ``constant``.

  A decay that a full-length run already trains (``wsd20_linear``) is skipped.
  """
  t = int(s.total_steps)
  plan = {}
  for frac in s.branch_fractions:
    for shape in s.branch_shapes:
      name = f"wsd{round(100 * frac)}_{shape}"
      if name not in full_length_runs(s):
        plan[name] = (t - round(frac * t), round(frac * t), shape)
  fork, frac = s.mid_branch
  plan["mid_branch"] = (round(fork * t), round(frac * t), "linear")
  return plan


def run_dirs(s: ml_collections.ConfigDict, workdir: str) -> dict[str, str]:
  """Run name -> run directory, full-length runs first."""
  main = rundir.join(workdir, "runs", "constant")
  return {**{n: rundir.join(workdir, "runs", n) for n in full_length_runs(s)},
          **{n: rundir.branch_dir(main, n) for n in branch_plan(s)}}


def train_runs(config: ml_collections.ConfigDict, workdir: str
               ) -> dict[str, str]:
  """Trains (resumes) every run of the study; returns name -> run dir."""
  s, base = config.study, config.train_config
  plan, dirs = branch_plan(s), run_dirs(s, workdir)
  forks = [f for f, _, _ in plan.values()]
  specs = []
  for name, sched in full_length_runs(s).items():
    c = with_schedule(base, sched, s.total_steps,
                      keep_steps=forks if name == "constant" else (),
                      eval_every=int(s.eval_every))
    specs.append(runs.RunSpec(c, dirs[name]))
  common.train_stage(TAG, "full-length runs", specs)
  common.train_stage(TAG, "decay branches", [
      common.branch_spec(dirs["constant"], fork, decay, shape, 0.0, name)
      for name, (fork, decay, shape) in plan.items()])
  return dirs


# Fitting, scoring and the verdict (pure functions of curves and rows).

def fit_and_score(curves: Mapping[str, Curve], fit: Sequence[str],
                  laws: Sequence[str], **options: Any
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """Fits each law on the ``fit`` curves; scores all curves.

  Returns the fitted laws by name and the rows (``law`` added to each row of
  ``laws.report.score_table``).
  """
  fitted_curves = [curves[n] for n in fit]
  held_out = [c for n, c in curves.items() if n not in fit]
  fitted, rows = {}, []
  for name in laws:
    law = LAWS[name].fit(fitted_curves, **options)
    fitted[name] = law
    rows += [{"law": name, **row}
             for row in score_table(law, fitted_curves, held_out)]
  return fitted, rows


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
  """Per law over held-out runs: mean of the mean errors, worst error and
  lowest R^2."""
  out = {}
  for law in dict.fromkeys(r["law"] for r in rows):
    held = [r for r in rows if r["law"] == law and r["role"] == "predict"]
    if held:
      out[law] = {
          "mean_rel_err": float(np.mean([r["mean_rel_err"] for r in held])),
          "max_rel_err": float(np.max([r["max_rel_err"] for r in held])),
          "min_r2": float(np.min([r["r2"] for r in held]))}
  return out


def goal_met(law_summary: Mapping[str, float]) -> bool:
  """The goal: held-out mean relative error <= 0.3% and worst <= 1%."""
  return bool(law_summary["mean_rel_err"] <= GOAL["mean_rel_err"] and
              law_summary["max_rel_err"] <= GOAL["max_rel_err"])


def markdown(rows: Sequence[dict[str, Any]]) -> str:
  return reports.markdown_table(
      ["law", "role", "run", "mean rel. err", "max rel. err", "R²"],
      [[r["law"], r["role"], r["run"], f"{r['mean_rel_err']:.3%}",
        f"{r['max_rel_err']:.3%}", f"{r['r2']:.5f}"] for r in rows])


def report(rows: Sequence[dict[str, Any]], params: Mapping[str, dict],
           fit_r2: Mapping[str, float], info: Mapping[str, Any]) -> str:
  """report.md: the table, the papers' numbers and the verdict on the goal."""
  lines = ["# Loss-curve law validation", "",
           "Fitted on: " + ", ".join(info.get("fit", [])) +
           "; every other run is held out. Errors are relative to the "
           "observed eval loss at every evaluation step from step "
           f"{info.get('min_step', 0)} on (a branch: its steps after the "
           "fork).", "", markdown(rows),
           "## Held-out summary", ""]
  for law, s in summary(rows).items():
    lines.append(f"- **{law}**: mean relative error {s['mean_rel_err']:.3%} "
                 f"(average over held-out runs), worst {s['max_rel_err']:.3%}, "
                 f"lowest R² {s['min_r2']:.5f}. Papers: {PAPER_NUMBERS[law]}.")
    if law == GOAL_LAW:
      lines.append(f"  Goal (mean <= 0.3%, worst <= 1%): "
                   f"{'met' if goal_met(s) else 'NOT met'}.")
  lines += ["", "## Fitted parameters", ""]
  for law, p in params.items():
    shown = ", ".join(f"{k}={v:.4g}" for k, v in p.items())
    lines.append(f"- {law}: {shown} (fit R² {fit_r2[law]:.5f})")
  lines += ["", "## Environment", ""]
  lines += [f"- {k}: {v}" for k, v in info.items() if k != "fit"]
  return "\n".join(lines) + "\n"


# The figure (arrays in, PNG out).

def predictions(fitted: Mapping[str, Any], curves: Mapping[str, Curve]
                ) -> dict[str, dict[str, np.ndarray]]:
  """Each law's predicted loss at each curve's observed steps."""
  return {law: {n: np.asarray(f.predict(c.lrs, c.steps))
                for n, c in curves.items()}
          for law, f in fitted.items()}


def figure(observed: Mapping[str, tuple[np.ndarray, np.ndarray]],
           predicted: Mapping[str, Mapping[str, np.ndarray]],
           fit: Sequence[str], path: str) -> str:
  """Top: observed (dots) vs predicted (lines); bottom: relative error. One
  column per law; each run keeps its colour in every column."""
  fig, axes = plt.subplots(2, len(predicted), figsize=(6 * len(predicted), 7),
                           sharex=True, squeeze=False,
                           gridspec_kw={"height_ratios": [2, 1]})
  colors = dict(zip(observed, plots.palette(len(observed))))
  for col, (law, preds) in enumerate(predicted.items()):
    top, bottom = axes[0, col], axes[1, col]
    for run, (steps, losses) in observed.items():
      pred, color = preds[run], colors[run]
      top.plot(steps, losses, ".", color=color, ms=2.5, alpha=0.7)
      top.plot(steps, pred, "-", color=color, lw=1,
               label=f"{run} (fit)" if run in fit else run)
      bottom.plot(steps, 100 * (pred / losses - 1), "-", color=color, lw=1)
    lo = min(float(np.percentile(v, 1)) for _, v in observed.values())
    hi = max(float(np.percentile(v, 70)) for _, v in observed.values())
    top.set_ylim(lo - 0.02 * (hi - lo), hi)
    top.set_title(f"{law}: observed (dots) vs predicted (lines)")
    top.set_ylabel("eval loss")
    top.legend(fontsize=7)
    bottom.axhline(0, color="k", lw=0.5)
    bottom.set_ylabel("pred / obs - 1 (%)")
    bottom.set_xlabel("step")
  return plots.save(fig, path)


# The study.

def analyse(dirs: Mapping[str, str], fit: Sequence[str], laws: Sequence[str],
            out: str, info: Mapping[str, Any] | None = None,
            metric: str = "eval_loss", min_step: int = 0,
            **options: Any) -> dict[str, Any]:
  """Fits, scores and writes the tables, figure and report into ``out``.

  Only losses at steps ``>= min_step`` are fitted and scored (the laws are
  not meant for the first steps of training, where the loss falls by
  nats); the LR sequence from step 0 is always used.
  """
  if unknown := sorted(set(fit) - set(dirs)):
    raise ValueError(f"fit runs {unknown} are not among {sorted(dirs)}")
  curves = {n: Curve.from_run(d, metric, min_step) for n, d in dirs.items()}
  fitted, rows = fit_and_score(curves, fit, laws, **options)
  info = {"fit": list(fit), "min_step": min_step, **(info or {})}
  params = {n: f.params for n, f in fitted.items()}
  fit_r2 = {n: f.fit_info["r2"] for n, f in fitted.items()}
  stem = rundir.join(out, "law_study")
  rundir.write_text(stem + ".md", markdown(rows))
  s = summary(rows)
  result = {"metric": metric, "info": info, "rows": rows, "summary": s,
            "goal_met": goal_met(s[GOAL_LAW]) if GOAL_LAW in s else None,
            "params": params, "fit_r2": fit_r2}
  rundir.write_json(stem + ".json", result)
  figure({n: (c.steps, c.losses) for n, c in curves.items()},
         predictions(fitted, curves), fit, stem + ".png")
  rundir.write_text(rundir.join(out, "report.md"),
                    report(rows, params, fit_r2, info))
  return result


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resumes) the study's runs, fits, scores and writes the report."""
  start = time.perf_counter()
  info = corpus.use_stdlib_corpus(config, workdir)
  dirs = train_runs(config, workdir)
  s, t = config.study, config.train_config
  info.update(model=str(t.model.to_dict()),
              batch=f"{t.data.batch_size} x {t.data.seq_len} bytes",
              total_steps=int(s.total_steps), eval_every=int(s.eval_every),
              eval_batches=int(t.data.eval_batches),
              train_wall_s=round(time.perf_counter() - start, 1),
              argv=" ".join(sys.argv))
  result = analyse(dirs, list(s.fit), list(s.laws), workdir, info,
                   min_step=int(s.min_step), warmup_steps=int(s.warmup_steps),
                   min_r2=float(s.min_r2))
  result["total_wall_s"] = round(time.perf_counter() - start, 1)
  return result
