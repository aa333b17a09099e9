"""Close the loop: a law fitted on short runs proposes a schedule; train it.

Luo et al. (arXiv 2503.12811, section 5) optimise the multi-power law over
the per-step LRs and find a WSD-like schedule slightly better than WSD and
cosine. Here: the law (``loop.law`` with the kept fitting variant of
``law_extrapolation``), fitted on that protocol's fit runs only, proposes
schedules of ``predict_steps`` (``laws.optimize_schedule``, one per family in
``loop.families``: "free" per-step LRs, "wsd" the best WSD); each is trained
from scratch with the protocol's seed and model, then compared with the
protocol's held-out cosine and WSD runs of the same budget: predicted vs
observed curves, and the final loss. Runs go into the protocol's workdir
(its runs are trained first if missing); writes ``law_loop.{md,json,png}``.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from wsd_jax import plots, reports, runs, schedules
from wsd_jax.laws.curve import Curve
from wsd_jax.laws.fitting import FitWarning, Law
from wsd_jax.laws.optimize import optimize_schedule
from wsd_jax.laws.report import LAWS
from wsd_jax.plots import plt
from wsd_jax.runs import rundir
from wsd_jax.studies import common, law_extrapolation
from wsd_jax.train.config import with_schedule

TAG = "law_loop"


def fit_law(config: ml_collections.ConfigDict, fit: Mapping[str, Curve]
            ) -> Law:
  """``loop.law`` fitted on the fit curves with the kept variant and its
  bootstrap band."""
  s, name = config.study, str(config.loop.law)
  kw = law_extrapolation.variant_options(name, str(s.keep))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", FitWarning)  # fit_info keeps them
    return LAWS[name].fit(list(fit.values()), min_r2=0.0,
                          warmup_steps=int(s.warmup_steps), **(kw or {}),
                          bootstrap=int(s.bootstrap), seed=int(s.seed))


def proposals(law: Law, config: ml_collections.ConfigDict
              ) -> dict[str, schedules.Schedule]:
  """``proposed_<family>`` -> the schedule ``law`` finds best."""
  s, loop = config.study, config.loop
  return {f"proposed_{family}": optimize_schedule(
      law, int(s.predict_steps), float(s.peak_value), family,
      warmup_steps=int(s.warmup_steps), num_iters=int(loop.num_iters))
          for family in loop.families}


def train_proposals(config: ml_collections.ConfigDict, workdir: str,
                    proposed: Mapping[str, schedules.Schedule]
                    ) -> dict[str, str]:
  """Trains each proposal from scratch; name -> run dir."""
  s = config.study
  dirs = {n: rundir.join(workdir, "runs", n) for n in proposed}
  common.train_stage(TAG, "proposed schedules", [
      runs.RunSpec(with_schedule(config.train_config, sched,
                                 int(s.predict_steps),
                                 eval_every=int(s.eval_every)), dirs[n])
      for n, sched in proposed.items()])
  return dirs


def end_noise(curve: Curve, points: int = 10) -> float:
  """The relative eval-to-eval noise where a run ends: the std of its last
  ``points`` evaluations around a straight line, over their mean."""
  x, y = curve.steps[-points:], curve.losses[-points:]
  resid = y - np.polyval(np.polyfit(x, y, 1), x)
  return float(np.std(resid, ddof=2) / np.mean(y))


def compare(law: Law, curves: Mapping[str, Curve], kinds: Mapping[str, str],
            level: float) -> list[dict[str, Any]]:
  """One row per run: predicted final loss (and band), observed final loss,
  and both relative to the best observed baseline (cosine and WSD runs)."""
  rows = []
  for n, c in curves.items():
    pred = law.predict(c.lrs, c.steps, return_interval=True, level=level)
    rel = np.abs(pred.loss / c.losses - 1)
    rows.append({"run": n, "kind": kinds[n], "final_step": int(c.steps[-1]),
                 "predicted_final": float(pred.loss[-1]),
                 "band": (float(pred.lower[-1]), float(pred.upper[-1])),
                 "observed_final": float(c.losses[-1]),
                 "mean_rel_err": float(rel.mean()),
                 "end_noise": end_noise(c),
                 "final_in_band": bool(pred.lower[-1] <= c.losses[-1]
                                       <= pred.upper[-1])})
  baselines = [r for r in rows if r["kind"] != "proposed"]
  best = min(baselines, key=lambda r: r["observed_final"])
  best_wsd = min((r for r in baselines if r["kind"] == "wsd"),
                 key=lambda r: r["observed_final"], default=best)
  for r in rows:
    r["vs_best_baseline"] = r["observed_final"] / best["observed_final"] - 1
    r["vs_best_wsd"] = r["observed_final"] / best_wsd["observed_final"] - 1
    # The noise of that difference: both runs' end noise.
    r["difference_noise"] = float(np.hypot(r["end_noise"], best["end_noise"]))
  return rows


def markdown(rows: Sequence[dict[str, Any]], level: float) -> str:
  return reports.markdown_table(
      ["run", "kind", "predicted final", f"{level:.0%} band",
       "observed final", "end noise", "vs best WSD", "vs best baseline",
       "curve mean rel. err"],
      [[r["run"], r["kind"], f"{r['predicted_final']:.4f}",
        f"{r['band'][0]:.4f}–{r['band'][1]:.4f}",
        f"{r['observed_final']:.4f}", f"±{r['end_noise']:.2%}",
        f"{r['vs_best_wsd']:+.2%}", f"{r['vs_best_baseline']:+.2%}",
        f"{r['mean_rel_err']:.3%}"]
       for r in sorted(rows, key=lambda r: r["observed_final"])])


def figure(law: Law, curves: Mapping[str, Curve], total_steps: int,
           level: float, path: str) -> str:
  """Left: the LR schedules; right: observed (dots) vs predicted (lines,
  band) eval loss over the second half of training."""
  fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6))
  colors = dict(zip(curves, plots.palette(len(curves))))
  for n, c in curves.items():
    style = "-" if n.startswith("proposed") else "--"
    left.plot(np.arange(total_steps), c.lrs[:total_steps], style,
              color=colors[n], lw=1.4, label=n)
    late = c.steps >= total_steps // 2
    pred = law.predict(c.lrs, c.steps[late], return_interval=True,
                       level=level)
    right.plot(c.steps[late], c.losses[late], ".", color=colors[n], ms=3)
    right.plot(c.steps[late], pred.loss, style, color=colors[n], lw=1.2,
               label=n)
    right.fill_between(c.steps[late], pred.lower, pred.upper,
                       color=colors[n], alpha=0.12, lw=0)
  left.set(xlabel="step", ylabel="learning rate",
           title="schedules (solid: proposed by the law)")
  right.set(xlabel="step", ylabel="eval loss",
            title=f"observed (dots) vs predicted (lines, {level:.0%} band)")
  left.legend(fontsize=7)
  right.legend(fontsize=7)
  return plots.save(fig, path)


def report(rows: Sequence[dict[str, Any]], info: Mapping[str, Any],
           level: float) -> str:
  proposed = [r for r in rows if r["kind"] == "proposed"]
  lines = ["# Predict, then choose: schedules proposed by a fitted law", "",
           "The law was fitted on the short fit runs of the extrapolation "
           "protocol only; every run below has the full budget "
           f"({info.get('total_steps')} steps) and the same seed. *vs best "
           "WSD*: the observed final loss relative to the best trained WSD "
           "run; *vs best baseline*: relative to the best of cosine and the "
           "WSD runs; *end noise*: the std of a run's last 10 evaluations "
           "around a straight line.", "", markdown(rows, level), ""]
  for r in proposed:
    noise = r["difference_noise"]
    verdict = ("better than" if r["vs_best_baseline"] < -2 * noise else
               "worse than" if r["vs_best_baseline"] > 2 * noise else
               "within twice the noise of")
    lines.append(f"- **{r['run']}** is {verdict} the best baseline "
                 f"({r['vs_best_baseline']:+.2%}; noise of the difference "
                 f"±{noise:.2%}) and {r['vs_best_wsd']:+.2%} against the best "
                 f"WSD; its final loss is "
                 f"{'inside' if r['final_in_band'] else 'outside'} the "
                 f"predicted {level:.0%} band.")
  lines += ["", "## Environment", ""]
  lines += [f"- {k}: {v}" for k, v in info.items()]
  return "\n".join(lines) + "\n"


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains the protocol's runs if needed, fits, proposes, trains, compares."""
  start = time.perf_counter()
  s = config.study
  info = law_extrapolation.use_source_corpus(config, workdir)
  dirs, _ = law_extrapolation.train_runs(config, workdir)
  fit, _ = law_extrapolation.load_curves(s, dirs)
  law = fit_law(config, fit)
  proposed = proposals(law, config)
  dirs.update(train_proposals(config, workdir, proposed))
  plan = law_extrapolation.plan(s)
  kinds = {n: "proposed" for n in proposed}
  kinds.update({n: ("cosine" if n.startswith("cosine") else "wsd")
                for n, p in plan.items() if p["role"] == "predict"
                and not n.startswith("two_stage")})
  curves = {n: Curve.from_run(dirs[n], min_step=int(s.min_step))
            for n in kinds}
  level = float(s.level)
  rows = compare(law, curves, kinds, level)
  info.update(total_steps=int(s.predict_steps), law=str(config.loop.law),
              variant=str(s.keep), params=law.params,
              wall_s=round(time.perf_counter() - start, 1),
              argv=" ".join(sys.argv))
  stem = rundir.join(workdir, TAG)
  figure(law, curves, int(s.predict_steps), level, stem + ".png")
  result = {"rows": rows, "info": info,
            "proposed_lrs": {n: np.asarray(sch(np.arange(int(s.predict_steps)))
                                           ).tolist()
                             for n, sch in proposed.items()}}
  rundir.write_json(stem + ".json", result)
  rundir.write_text(stem + ".md", report(rows, info, level))
  return result
