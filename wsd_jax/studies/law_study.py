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
noise floor and the verdict on it, the environment).

The noise floor. Every evaluation uses the same fixed eval set (the first
``study.eval_batches`` batches of the last ``study.eval_fraction`` of the
corpus), so the eval-set sampling error is the same kind of error at every
step. Two numbers bound what a law's error can resolve:

* the eval set's *sampling* standard error, from the per-batch losses of each
  run's final checkpoint (re-evaluated here on the trainer's eval function;
  their mean equals the logged ``eval_loss``): the SE of the mean loss
  (relative), which is shared by every run and absorbed by a law's offset,
  and the *paired* SE of the difference between a held-out run and the
  constant run at the same (final) step, which is what a comparison of
  runs on this eval set cannot resolve (a branch that ends earlier is
  reported apart: its pair also spans the training in between);
* the *jitter* of the constant run: the relative RMS residual of its eval
  loss (steps ``>= min_step``, constant LR) around a cubic in log step,
  the step-to-step noise of training that no deterministic law predicts.

The larger of the paired SE and the jitter is the floor ``sigma``; a perfect
law whose observations carry relative noise ``sigma`` would show a mean
relative error of ``sqrt(2/pi) * sigma``. A law's held-out error is *above
the noise floor* when the lower end of its 95% bootstrap CI (over held-out
runs) exceeds the upper end of that floor's (bootstrap over the residuals).
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

import jax

from wsd_jax import plots, reports, runs, schedules, train
from wsd_jax.data import corpus
from wsd_jax.laws.curve import Curve
from wsd_jax.laws.report import LAWS, score_table
from wsd_jax.plots import plt
from wsd_jax.runs import rundir
from wsd_jax.studies import common
from wsd_jax.train import evaluation, sharding
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
           fit_r2: Mapping[str, float], info: Mapping[str, Any],
           floor: Mapping[str, Any] | None = None,
           judged: Mapping[str, Mapping[str, Any]] | None = None) -> str:
  """report.md: the table, the papers' numbers, the verdict on the goal and
  (given ``floor`` and ``judged``) the noise floor and the verdict on it."""
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
  if floor is not None:
    lines += ["", "## Noise floor", "",
              "Every evaluation uses the same fixed eval set (hash "
              f"`{floor['eval_hash']}`). A law's held-out error can only be "
              "judged above the noise of the observations it is scored "
              "against:", "", noise_markdown(floor, judged or {}).rstrip()]
  lines += ["", "## Fitted parameters", ""]
  for law, p in params.items():
    shown = ", ".join(f"{k}={v:.4g}" for k, v in p.items())
    lines.append(f"- {law}: {shown} (fit R² {fit_r2[law]:.5f})")
  lines += ["", "## Environment", ""]
  lines += [f"- {k}: {v}" for k, v in info.items() if k != "fit"]
  return "\n".join(lines) + "\n"


# The noise floor (pure functions of arrays, then the evaluation that feeds
# them).

def jitter(steps: np.ndarray, losses: np.ndarray, degree: int = 3,
           n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
  """Relative RMS residual of ``losses`` around a smooth fit.

  The fit is a polynomial of ``degree`` in log step on log loss; residuals
  are ``loss / smooth - 1`` and the RMS divides by ``n - degree - 1``. The
  95% CI resamples the residuals (bootstrap). Returns ``sigma``,
  ``ci`` (low, high), ``n`` and the residuals.
  """
  steps = np.asarray(steps, np.float64)
  losses = np.asarray(losses, np.float64)
  n, p = len(losses), degree + 1
  if n <= p + 1:
    raise ValueError(f"jitter needs more than {p + 1} points, got {n}")
  x = np.log(steps)
  coef = np.polyfit(x, np.log(losses), degree)
  resid = losses / np.exp(np.polyval(coef, x)) - 1
  sigma = float(np.sqrt(np.sum(resid**2) / (n - p)))
  rng = np.random.default_rng(seed)
  boot = rng.choice(resid, size=(n_boot, n), replace=True)
  sig_b = np.sqrt(np.sum(boot**2, axis=1) / (n - p))
  lo, hi = np.percentile(sig_b, [2.5, 97.5])
  return {"sigma": sigma, "ci": [float(lo), float(hi)], "n": n,
          "degree": degree, "residuals": resid.tolist()}


def sampling_se(batch_losses: np.ndarray) -> dict[str, float]:
  """The eval set's sampling error: SE of the mean of equal-sized batches'
  losses, absolute and relative to the mean."""
  b = np.asarray(batch_losses, np.float64)
  se = float(b.std(ddof=1) / np.sqrt(len(b)))
  return {"mean": float(b.mean()), "se": se, "rel_se": se / float(b.mean()),
          "batches": len(b)}


def paired_se(batch_losses: np.ndarray, reference: np.ndarray) -> float:
  """Relative SE of the difference of two models' mean losses on the same
  batches: ``SE(mean(b - r)) / mean(r)`` (the shared part cancels)."""
  d = np.asarray(batch_losses, np.float64) - np.asarray(reference, np.float64)
  return float(d.std(ddof=1) / np.sqrt(len(d)) / np.mean(reference))


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = 2000,
                      seed: int = 0) -> list[float]:
  """95% percentile bootstrap CI of the mean of ``values``."""
  v = np.asarray(values, np.float64)
  rng = np.random.default_rng(seed)
  means = rng.choice(v, size=(n_boot, len(v)), replace=True).mean(axis=1)
  return [float(x) for x in np.percentile(means, [2.5, 97.5])]


MEAN_ABS = float(np.sqrt(2 / np.pi))  # E|x| / sigma for a normal x


def noise_floor(jit: Mapping[str, Any], sampling: Mapping[str, float],
                paired: Mapping[str, float]) -> dict[str, Any]:
  """The floor ``sigma`` (the larger of the jitter and the largest paired
  SE), which of them limits, and the mean relative error a perfect law
  would show at that noise (``sqrt(2/pi) sigma``, with the upper end that
  the verdict uses)."""
  worst_paired = max(paired.values()) if paired else 0.0
  limit = "jitter" if jit["sigma"] >= worst_paired else "paired sampling SE"
  sigma = max(jit["sigma"], worst_paired)
  sigma_hi = max(jit["ci"][1], worst_paired)
  return {"sigma": sigma, "sigma_hi": sigma_hi, "limited_by": limit,
          "jitter": jit["sigma"], "jitter_ci": jit["ci"],
          "sampling_rel_se": sampling["rel_se"],
          "paired_rel_se": dict(paired), "max_paired_rel_se": worst_paired,
          "mean_err_floor": MEAN_ABS * sigma,
          "mean_err_floor_hi": MEAN_ABS * sigma_hi}


def verdicts(rows: Sequence[dict[str, Any]], floor: Mapping[str, Any],
             n_boot: int = 2000, seed: int = 0) -> dict[str, dict[str, Any]]:
  """Per law: the held-out mean relative error with its 95% bootstrap CI
  over held-out runs and the verdict against the floor: "above the noise
  floor" (the law's error is measurable: the CI's low end exceeds the
  floor's high end) or "at the noise floor"."""
  out = {}
  for law in dict.fromkeys(r["law"] for r in rows):
    errs = [r["mean_rel_err"] for r in rows
            if r["law"] == law and r["role"] == "predict"]
    if not errs:
      continue
    ci = bootstrap_mean_ci(errs, n_boot, seed)
    above = ci[0] > floor["mean_err_floor_hi"]
    out[law] = {"mean_rel_err": float(np.mean(errs)), "ci": ci,
                "ratio": float(np.mean(errs)) / floor["mean_err_floor"],
                "verdict": ("above the noise floor" if above
                            else "at the noise floor")}
  return out


def final_batch_losses(dirs: Mapping[str, str]) -> dict[str, Any]:
  """Per-batch eval losses of every run's final checkpoint on the fixed eval
  set (the trainer's eval function, built once from the first run's
  config), the step of each and a hash of the eval set's bytes."""
  first = next(iter(dirs.values()))
  s, _ = train.load_state(first)
  fn = jax.jit(evaluation.make_eval_fn(s.graphdef, s.token_groups))
  bsh = sharding.batch_sharding(s.mesh)
  batches = [sharding.global_batch(b, bsh) for b in s.eval_ds]
  h = hashlib.blake2b(digest_size=8)
  for b in s.eval_ds:
    h.update(np.ascontiguousarray(b["inputs"]).tobytes())
    h.update(np.ascontiguousarray(b["targets"]).tobytes())
  losses, steps = {}, {}
  for name, d in dirs.items():
    ckpt = runs.Checkpointer(rundir.checkpoint_dir(d), read_only=True)
    step = ckpt.steps()[-1]
    state = ckpt.restore(step, s.state, None)
    params = evaluation.eval_params(state)
    out = []
    for b in batches:
      sums, counts = jax.device_get(fn(params, b))
      out.append(float(np.sum(sums) / np.sum(counts)))
    losses[name], steps[name] = out, int(step)
  shape = np.asarray(batches[0]["inputs"]).shape
  return {"losses": losses, "steps": steps, "eval_hash": h.hexdigest(),
          "eval_tokens": len(batches) * int(np.prod(shape))}


def same_step_pairs(batch: Mapping[str, Any], fit: Sequence[str]
                    ) -> tuple[dict[str, float], dict[str, float]]:
  """Paired relative SEs of the held-out runs against the constant run:
  those whose final checkpoint is at the constant run's final step (a
  like-for-like pair, which sets the floor), and the others (a branch that
  ends earlier: its pair also spans the training in between, so it is
  reported but not used)."""
  ref, steps = batch["losses"]["constant"], batch["steps"]
  same, other = {}, {}
  for n, v in batch["losses"].items():
    if n not in fit and n != "constant":
      (same if steps[n] == steps["constant"] else other)[n] = paired_se(v, ref)
  return same, other


def noise(curves: Mapping[str, Curve], batch: Mapping[str, Any],
          fit: Sequence[str], degree: int = 3, n_boot: int = 2000
          ) -> dict[str, Any]:
  """The noise floor from the constant run's curve and the per-batch
  losses (``final_batch_losses``)."""
  c = curves["constant"]
  jit = jitter(c.steps, c.losses, degree, n_boot)
  ref = batch["losses"]["constant"]
  paired, other = same_step_pairs(batch, fit)
  return {**noise_floor(jit, sampling_se(ref), paired),
          "paired_rel_se_other_step": other,
          "jitter_residuals": jit["residuals"], "jitter_points": jit["n"],
          "smooth_degree": degree, "eval_hash": batch["eval_hash"],
          "eval_tokens": batch["eval_tokens"],
          "eval_batches": len(ref),
          "batch_losses": batch["losses"], "batch_steps": batch["steps"]}


def noise_markdown(floor: Mapping[str, Any],
                   judged: Mapping[str, Mapping[str, Any]]) -> str:
  """The noise-floor table and one verdict line per law."""
  pj = floor["paired_rel_se"]
  worst = max(pj, key=pj.get) if pj else "-"
  lines = [reports.markdown_table(
      ["noise", "relative size", "what it is"],
      [["eval-set sampling SE (absolute)",
        f"{floor['sampling_rel_se']:.3%}",
        f"SE of the mean over {floor['eval_batches']} batches "
        f"({floor['eval_tokens']:,} tokens), constant run's final checkpoint;"
        " shared by every run, a law's offset absorbs it"],
       ["eval-set sampling SE (paired)", f"{floor['max_paired_rel_se']:.3%}",
        f"largest over held-out runs ({worst}) of the SE of the per-batch "
        "difference from the constant run, both at the final step"
        + "".join(f"; {n} (ends earlier, not used): {v:.3%}" for n, v in
                  floor.get("paired_rel_se_other_step", {}).items())],
       ["jitter of the constant run", f"{floor['jitter']:.3%} "
        f"(95% CI {floor['jitter_ci'][0]:.3%}–{floor['jitter_ci'][1]:.3%})",
        f"relative RMS residual around a degree-{floor['smooth_degree']} "
        f"polynomial in log step, {floor['jitter_points']} evaluations"],
       ["floor on a mean rel. err",
        f"{floor['mean_err_floor']:.3%} (high end "
        f"{floor['mean_err_floor_hi']:.3%})",
        f"sqrt(2/pi) x the larger of the two; limited by the "
        f"{floor['limited_by']}"]]).rstrip(), ""]
  for law, v in judged.items():
    lines.append(f"- **{law}**: held-out mean relative error "
                 f"{v['mean_rel_err']:.3%} (95% bootstrap CI over held-out "
                 f"runs {v['ci'][0]:.3%}–{v['ci'][1]:.3%}), "
                 f"{v['ratio']:.1f}x the floor: **{v['verdict']}**.")
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
           fit: Sequence[str], path: str, sigma: float | None = None) -> str:
  """Top: observed (dots) vs predicted (lines); bottom: relative error, with
  the noise floor ``±sigma`` shaded. One column per law; each run keeps its
  colour in every column."""
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
    if sigma is not None:
      bottom.axhspan(-100 * sigma, 100 * sigma, color="0.5", alpha=0.2,
                     lw=0, label=f"noise floor ±{sigma:.2%}")
      bottom.legend(fontsize=7, loc="upper left")
    bottom.set_ylabel("pred / obs - 1 (%)")
    bottom.set_xlabel("step")
  return plots.save(fig, path)


# The study.

def analyse(dirs: Mapping[str, str], fit: Sequence[str], laws: Sequence[str],
            out: str, info: Mapping[str, Any] | None = None,
            metric: str = "eval_loss", min_step: int = 0,
            smooth_degree: int = 3, n_boot: int = 2000,
            **options: Any) -> dict[str, Any]:
  """Fits, scores, measures the noise floor (from the curves and the runs'
  final checkpoints) and writes the tables, figure and report into ``out``.

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
  start = time.perf_counter()
  floor = noise(curves, final_batch_losses(dirs), fit, smooth_degree, n_boot)
  judged = verdicts(rows, floor, n_boot)
  info["noise_wall_s"] = round(time.perf_counter() - start, 1)
  result = {"metric": metric, "info": info, "rows": rows, "summary": s,
            "goal_met": goal_met(s[GOAL_LAW]) if GOAL_LAW in s else None,
            "params": params, "fit_r2": fit_r2, "noise": floor,
            "verdicts": judged}
  rundir.write_json(stem + ".json", result)
  figure({n: (c.steps, c.losses) for n, c in curves.items()},
         predictions(fitted, curves), fit, stem + ".png", floor["sigma"])
  rundir.write_text(rundir.join(out, "report.md"),
                    report(rows, params, fit_r2, info, floor, judged))
  return result


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resumes) the study's runs, fits, scores and writes the report."""
  start = time.perf_counter()
  load_start = os.getloadavg()[0]
  info = corpus.use_stdlib_corpus(config, workdir)
  dirs = train_runs(config, workdir)
  s, t = config.study, config.train_config
  info.update(model=str(t.model.to_dict()),
              batch=f"{t.data.batch_size} x {t.data.seq_len} bytes",
              total_steps=int(s.total_steps), eval_every=int(s.eval_every),
              eval_fraction=float(t.data.eval_fraction),
              eval_batches=int(t.data.eval_batches),
              train_wall_s=round(time.perf_counter() - start, 1),
              machine=f"{platform.machine()} {platform.processor() or ''}"
                      f" {os.cpu_count()} CPUs".replace("  ", " "),
              load_avg_1min_start=round(load_start, 2),
              load_avg_1min_after_training=round(os.getloadavg()[0], 2),
              argv=" ".join(sys.argv))
  result = analyse(dirs, list(s.fit), list(s.laws), workdir, info,
                   min_step=int(s.min_step),
                   smooth_degree=int(s.smooth_degree),
                   n_boot=int(s.bootstrap), warmup_steps=int(s.warmup_steps),
                   min_r2=float(s.min_r2))
  result["total_wall_s"] = round(time.perf_counter() - start, 1)
  return result
