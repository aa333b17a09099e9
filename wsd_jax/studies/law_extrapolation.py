"""Can a loss-curve law fitted on short runs predict runs 3x longer?

The protocol (``configs/law_extrapolation.py``): fit on ``F = fit_steps``
steps of three runs: the constant run's first ``F`` steps, a cosine over
``F`` and a two-stage run (the constant run's LR, dropped to ``0.1 x peak``
at ``0.6 F``). Predict, beyond step ``F``, six runs of ``T = predict_steps
= 3F`` steps: the constant run itself, a cosine over ``T``, WSD decays forked
from the constant run (20% linear, 20% and 10% ``1-sqrt``) and a two-stage
run dropped at ``2T/3``. Every run shares the seed (model init and data
order), so runs differ only by their schedules.

Every fitting variant (``VARIANTS``) is fitted on the fit set and scored on
it and on the held-out runs (errors at every evaluation beyond step ``F``);
the kept variant's bootstrap band is checked for coverage on the held-out
runs. Writes into WORKDIR ``law_extrapolation.{md,json,png}``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from wsd_jax import plots, reports, runs, schedules
from wsd_jax.laws.curve import Curve
from wsd_jax.laws.fitting import EXTRAPOLATE, FitError, FitWarning, Law
from wsd_jax.laws.report import LAWS, loss_limits, score_table, summarize
from wsd_jax.plots import plt
from wsd_jax.runs import rundir
from wsd_jax.studies import common
from wsd_jax.train.config import with_schedule

TAG = "law_extrapolation"


# ---- the data -----------------------------------------------------------------

# Directories of the standard library whose sources are left out: another
# installation's packages, caches.
SOURCE_SKIP = frozenset({"site-packages", "dist-packages", "__pycache__"})


def stdlib_source_files(root: str | None = None) -> list[str]:
  """Every ``*.py`` file of the standard library (tests included), sorted by
  its path under the root, minus ``SOURCE_SKIP`` directories."""
  root = root or sysconfig.get_paths()["stdlib"]
  files = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if d not in SOURCE_SKIP)
    files += [os.path.join(dirpath, f) for f in filenames if f.endswith(".py")]
  return sorted(files, key=lambda f: os.path.relpath(f, root))


def use_source_corpus(config: ml_collections.ConfigDict, workdir: str
                      ) -> dict[str, Any]:
  """The trainer reads the standard library's Python source (about 25 MB for
  CPython 3.11), written once into ``workdir``; ``corpus_max_bytes`` cuts
  it at a file boundary. Returns its description (bytes, SHA-256).

  The docstring corpus of the law study (1.5 MB) would be seen 8 times by a
  3,000-step run of 4 KiB batches; its eval loss then stalls while the
  training loss keeps falling (measured: eval 1.612 at step 1,000, 1.561 at
  3,000; train 1.57 to 1.42), which no loss-curve law describes. A 3,000-step
  run reads half of this corpus once.
  """
  path = os.path.join(workdir, "stdlib_source.txt")
  if not os.path.isfile(path):
    limit, parts, size = config.get("corpus_max_bytes", None), [], 0
    for f in stdlib_source_files():
      with open(f, "rb") as handle:
        data = handle.read()
      if b"\0" in data:
        continue
      if limit is not None and size + len(data) > limit:
        break
      parts.append(data)
      size += len(data)
    tmp = path + ".tmp"
    os.makedirs(workdir, exist_ok=True)
    with open(tmp, "wb") as handle:
      handle.write(b"".join(parts))
    os.replace(tmp, path)
  config.train_config.data.paths = path
  with open(path, "rb") as handle:
    digest = hashlib.sha256(handle.read()).hexdigest()
  return {"corpus": "python-stdlib-source", "python": sys.version.split()[0],
          "bytes": os.path.getsize(path), "sha256": digest}


# ---- the runs ----------------------------------------------------------------


def constant_schedule(s: ml_collections.ConfigDict) -> schedules.Schedule:
  """The main run: warmup, then the peak for ``predict_steps``."""
  return schedules.wsd(peak_value=float(s.peak_value),
                       total_steps=int(s.predict_steps), decay_steps=0,
                       warmup_steps=int(s.warmup_steps))


def two_stage(base: schedules.Schedule, at_step: int, factor: float,
              peak: float) -> schedules.Schedule:
  """``base`` before ``at_step``, ``factor * peak`` from ``at_step`` on."""
  return schedules.splice(base, int(at_step),
                          schedules.constant(float(factor) * peak))


def plan(s: ml_collections.ConfigDict) -> dict[str, dict[str, Any]]:
  """Run name -> ``{"role", "steps", "schedule", "fork"}``.

  ``role`` is "fit" or "predict" (the constant run is both: its first
  ``fit_steps`` are fitted, the rest predicted); ``fork`` is the constant
  run's step a branch starts from (None: trained from scratch).
  """
  f, t, peak = int(s.fit_steps), int(s.predict_steps), float(s.peak_value)
  w = int(s.warmup_steps)
  main = constant_schedule(s)
  out = {
      "constant": dict(role="both", steps=t, schedule=main, fork=None),
      f"cosine_{f}": dict(role="fit", steps=f, fork=None,
                          schedule=schedules.cosine(peak, f, warmup_steps=w)),
  }
  at, factor = s.two_stage
  at = round(at * f)
  out[f"two_stage_{f}"] = dict(role="fit", steps=f, fork=at,
                               schedule=two_stage(main, at, factor, peak))
  out[f"cosine_{t}"] = dict(role="predict", steps=t, fork=None,
                            schedule=schedules.cosine(peak, t, warmup_steps=w))
  for fraction, shape in s.wsd:
    d = round(fraction * t)
    out[f"wsd{round(100 * fraction)}_{shape}"] = dict(
        role="predict", steps=t, fork=t - d,
        schedule=schedules.branch(main, t - d, d, shape))
  at, factor = s.held_out_two_stage
  at = round(at * t)
  out[f"two_stage_{t}"] = dict(role="predict", steps=t, fork=at,
                               schedule=two_stage(main, at, factor, peak))
  return out


def run_dirs(s: ml_collections.ConfigDict, workdir: str) -> dict[str, str]:
  """Run name -> run directory (branches under the constant run)."""
  main = rundir.join(workdir, "runs", "constant")
  return {n: (main if n == "constant" else
              rundir.join(workdir, "runs", n) if p["fork"] is None else
              rundir.branch_dir(main, n))
          for n, p in plan(s).items()}


def forked_spec(main_dir: str, workdir: str, schedule: schedules.Schedule,
                fork: int, steps: int) -> runs.RunSpec:
  """A run that starts from the main run's checkpoint at ``fork``."""
  config = ml_collections.ConfigDict(rundir.read_config(main_dir))
  config.schedule = ml_collections.ConfigDict(schedules.to_config(schedule))
  config.train.steps = int(steps)
  config.train.keep_steps = ()
  return runs.RunSpec(config, workdir,
                      runs.Start(rundir.checkpoint_dir(main_dir), int(fork)),
                      {"parent": "../..", "fork_step": int(fork)})


def train_runs(config: ml_collections.ConfigDict, workdir: str
               ) -> tuple[dict[str, str], float]:
  """Trains (resumes) every run of the protocol; name -> run dir, seconds."""
  s, base = config.study, config.train_config
  p, dirs = plan(s), run_dirs(s, workdir)
  forks = sorted({q["fork"] for q in p.values() if q["fork"] is not None})
  start = time.perf_counter()
  common.train_stage(TAG, "runs from scratch", [
      runs.RunSpec(with_schedule(
          base, q["schedule"], q["steps"], eval_every=int(s.eval_every),
          keep_steps=forks if n == "constant" else ()), dirs[n])
      for n, q in p.items() if q["fork"] is None])
  forked = []
  for n, q in p.items():
    if q["fork"] is None:
      continue
    if isinstance(q["schedule"], schedules.Branch):  # a WSD decay
      b = q["schedule"]
      forked.append(common.branch_spec(dirs["constant"], b.at_step,
                                       b.decay_steps, b.decay_shape, 0.0, n))
    elif not common.finished(dirs[n], q["steps"]):
      forked.append(forked_spec(dirs["constant"], dirs[n], q["schedule"],
                                q["fork"], q["steps"]))
  common.train_stage(TAG, "runs forked from the constant run", forked)
  return dirs, time.perf_counter() - start


# ---- the fitting variants ---------------------------------------------------

# Law.fit options of each variant.
VARIANTS: dict[str, dict[str, Any]] = {
    "lbfgs": {},
    "paper": {"method": "adamw"},
    "prior": {"prior_weight": 1.0},
    "prior_tail_short": {**EXTRAPOLATE, "tail_fraction": 0.25},
    "prior_tail": dict(EXTRAPOLATE),
    "starts_tail": {"select": "tail", "tail_fraction": 0.6, "num_starts": 8},
    "early_stop": {"select": "tail", "tail_fraction": 0.6,
                   "early_stopping": True},
}
_WEIGHTS = ", ".join(f"{w:g}" for w in EXTRAPOLATE["prior_weight"])
VARIANT_NOTES = {
    "lbfgs": "L-BFGS-B to convergence from the 3 best grid starts, lowest "
             "fit objective (round one's fit; `Law.fit`'s default)",
    "paper": "Luo et al.'s code: surrogate L-BFGS-B start, then <= 200 AdamW "
             "steps on the natural parameters, best iterate",
    "prior": "lbfgs + a Gaussian prior on the log of the shape parameters "
             "(`Law.prior`: alpha 0.5; C 1, beta 0.5, gamma 0.5), weight 1",
    "prior_tail_short": f"lbfgs + the prior weight ({_WEIGHTS}) and start "
                        "chosen by how well a fit of each fit run's first 75% "
                        "predicts its last 25%",
    "prior_tail": f"the same, the first 40% predicting the last 60% (a 2.5x "
                  "extrapolation): `laws.EXTRAPOLATE`",
    "starts_tail": "lbfgs from the 8 best grid starts, the one whose fit of "
                   "the first 40% predicts the rest best",
    "early_stop": "lbfgs stopped at the iteration whose fit of the first 40% "
                  "predicts the rest best (3 starts)",
}


def variant_options(law: str, name: str) -> dict[str, Any] | None:
  """``Law.fit`` options of a variant; None where it does not apply (Luo et
  al.'s recipe for the annealing law, whose paper fits by L-BFGS-B)."""
  kw = dict(VARIANTS[name])
  if kw.get("method") == "adamw" and law != "multipower":
    return None
  return kw


def load_curves(s: ml_collections.ConfigDict, dirs: Mapping[str, str],
                metric: str = "eval_loss"
                ) -> tuple[dict[str, Curve], dict[str, Curve]]:
  """The fit curves (up to ``fit_steps``) and the held-out curves (beyond
  it), each from ``min_step`` on."""
  f, p = int(s.fit_steps), plan(s)
  curves = {n: Curve.from_run(d, metric, int(s.min_step))
            for n, d in dirs.items()}
  fit = {n: curves[n].observed_until(f) for n in p
         if p[n]["role"] in ("fit", "both")}
  held = {n: curves[n].observed_from(f + 1) for n in p
          if p[n]["role"] in ("predict", "both")}
  return fit, held


def summary_of(law: Law, fit: Mapping[str, Curve], held: Mapping[str, Curve]
               ) -> dict[str, dict[str, float]]:
  """``report.summarize`` of the law's errors, by role (fit, predict)."""
  rows = score_table(law, list(fit.values()), list(held.values()))
  return {r["role"]: r for r in summarize(rows)}


def compare_variants(fit: Mapping[str, Curve], held: Mapping[str, Curve],
                     laws: Sequence[str], variants: Sequence[str],
                     **options: Any
                     ) -> tuple[list[dict[str, Any]], dict[tuple, Law]]:
  """Fits every (law, variant) on ``fit``; one row of errors each.

  A row has the fit-set and held-out errors (``report.summarize``), the
  objective, the optimizer's convergence, the fit's seconds and parameters.
  """
  rows, fitted = [], {}
  for law in laws:
    for name in variants:
      kw = variant_options(law, name)
      if kw is None:
        continue
      with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FitWarning)
        try:
          f = LAWS[law].fit(list(fit.values()), min_r2=0.0, **kw, **options)
        except FitError as e:
          rows.append({"law": law, "variant": name, "error": str(e)})
          continue
      fitted[law, name] = f
      errs = summary_of(f, fit, held)
      info = f.fit_info
      rows.append({
          "law": law, "variant": name,
          "fit_mean_rel_err": errs["fit"]["mean_rel_err"],
          "fit_max_rel_err": errs["fit"]["max_rel_err"],
          "held_mean_rel_err": errs["predict"]["mean_rel_err"],
          "held_max_rel_err": errs["predict"]["max_rel_err"],
          "held_mean_max_rel_err": errs["predict"]["mean_max_rel_err"],
          "huber": info["huber"], "success": info["success"],
          "early_stopped": info["early_stopped"], "message": info["message"],
          "nit": info["nit"], "nfev": info["nfev"],
          "prior_weight": info["prior_weight"], "seconds": info["seconds"],
          "params": f.params,
          "warnings": [str(w.message) for w in caught]})
  return rows, fitted


# ---- bands ------------------------------------------------------------------


def band_coverage(law: Law, curves: Mapping[str, Curve], level: float,
                  noise: bool = True) -> dict[str, float]:
  """Per curve and ``"all"``: the share of observed points inside the band."""
  inside, out = [], {}
  for n, c in curves.items():
    pred = law.predict(c.lrs, c.steps, return_interval=True, level=level,
                       noise=noise)
    hit = (c.losses >= pred.lower) & (c.losses <= pred.upper)
    out[n] = float(hit.mean())
    inside.append(hit)
  out["all"] = float(np.concatenate(inside).mean())
  return out


def coverage_rows(law_name: str, variant: str, fit: Mapping[str, Curve],
                  held: Mapping[str, Curve], s: ml_collections.ConfigDict,
                  **options: Any) -> tuple[list[dict[str, Any]], dict]:
  """Bootstrap bands (blocks and curves) of one variant and their coverage."""
  rows, laws_by_kind = [], {}
  kw = variant_options(law_name, variant)
  for kind in ("blocks", "curves"):
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", FitWarning)
      law = LAWS[law_name].fit(list(fit.values()), min_r2=0.0, **kw,
                               bootstrap=int(s.bootstrap), bootstrap_kind=kind,
                               seed=int(s.seed), **options)
    laws_by_kind[kind] = law
    for noise in (True, False):
      held_cov = band_coverage(law, held, float(s.level), noise)
      fit_cov = band_coverage(law, fit, float(s.level), noise)
      rows.append({"law": law_name, "variant": variant, "bootstrap": kind,
                   "refits": law.fit_info["bootstrap"]["fitted"],
                   "failed": law.fit_info["bootstrap"]["failed"],
                   "noise": noise, "level": float(s.level),
                   "held_coverage": held_cov["all"],
                   "fit_coverage": fit_cov["all"],
                   "held_by_run": {k: v for k, v in held_cov.items()
                                   if k != "all"}})
  return rows, laws_by_kind


# ---- tables, figure, report -------------------------------------------------


def variants_markdown(rows: Sequence[dict[str, Any]]) -> str:
  failed = [f"- {r['law']} {r['variant']}: **failed**: {r['error']}"
            for r in rows if "error" in r]
  rows = [r for r in rows if "error" not in r]
  return "\n".join(failed) + "\n\n" * bool(failed) + reports.markdown_table(
      ["law", "variant", "fit mean", "fit max", "held-out mean",
       "held-out max", "held-out mean of max", "fit Huber", "converged",
       "iterations / evaluations", "fit s"],
      [[r["law"], r["variant"], f"{r['fit_mean_rel_err']:.3%}",
        f"{r['fit_max_rel_err']:.3%}", f"{r['held_mean_rel_err']:.3%}",
        f"{r['held_max_rel_err']:.3%}", f"{r['held_mean_max_rel_err']:.3%}",
        f"{r['huber']:.3f}",
        "early stop" if r["early_stopped"] else
        "yes" if r["success"] else "**no**",
        f"{r['nit']} / {r['nfev']}", f"{r['seconds']:.1f}"] for r in rows])


def runs_markdown(law: Law, fit: Mapping[str, Curve],
                  held: Mapping[str, Curve]) -> str:
  rows = score_table(law, list(fit.values()), list(held.values()))
  return reports.markdown_table(
      ["role", "run", "points", "mean rel. err", "max rel. err"],
      [[r["role"], r["run"], len((fit if r["role"] == "fit" else held)[r["run"]]),
        f"{r['mean_rel_err']:.3%}", f"{r['max_rel_err']:.3%}"] for r in rows])


def coverage_markdown(rows: Sequence[dict[str, Any]]) -> str:
  return reports.markdown_table(
      ["law", "variant", "bootstrap", "refits (failed)", "band for",
       "held-out coverage", "fit-set coverage", "held-out by run"],
      [[r["law"], r["variant"], r["bootstrap"],
        f"{r['refits']} ({r['failed']})",
        "observed points" if r["noise"] else "the law's curve",
        f"{r['held_coverage']:.0%}", f"{r['fit_coverage']:.0%}",
        ", ".join(f"{k} {v:.0%}" for k, v in r["held_by_run"].items())]
       for r in rows])


def figure(laws_: Mapping[str, Law], fit: Mapping[str, Curve],
           held: Mapping[str, Curve], fit_steps: int, level: float,
           path: str) -> str:
  """One column per law: observed (dots), predicted (lines) and the band
  (shaded) of every run, fit runs up to ``fit_steps`` (dashed line), held-out
  runs beyond it; below, the relative error of the prediction."""
  names = list(dict.fromkeys([*fit, *held]))
  colors = dict(zip(names, plots.palette(len(names))))
  fig, axes = plt.subplots(2, len(laws_), figsize=(6.5 * len(laws_), 7),
                           sharex=True, squeeze=False,
                           gridspec_kw={"height_ratios": [2, 1]})
  for col, (title, law) in enumerate(laws_.items()):
    top, bottom = axes[0, col], axes[1, col]
    for group, style in ((fit, "fit"), (held, "held out")):
      for n, c in group.items():
        pred = law.predict(c.lrs, c.steps, return_interval=True, level=level)
        color = colors[n]
        top.plot(c.steps, c.losses, ".", color=color, ms=2.5, alpha=0.7)
        label = None if group is held and n in fit else f"{n} ({style})"
        top.plot(c.steps, pred.loss, "-", color=color, lw=1, label=label)
        top.fill_between(c.steps, pred.lower, pred.upper, color=color,
                         alpha=0.18, lw=0)
        bottom.plot(c.steps, 100 * (pred.loss / c.losses - 1), "-",
                    color=color, lw=1)
        bottom.fill_between(c.steps, 100 * (pred.lower / c.losses - 1),
                            100 * (pred.upper / c.losses - 1), color=color,
                            alpha=0.12, lw=0)
    lo, hi = loss_limits([c.losses for c in [*fit.values(), *held.values()]])
    top.set_ylim(lo, hi)
    for ax in (top, bottom):
      ax.axvline(fit_steps, color="k", ls="--", lw=0.8)
    top.set_title(f"{title}: observed (dots), predicted, {level:.0%} band")
    top.set_ylabel("eval loss")
    top.legend(fontsize=7)
    bottom.axhline(0, color="k", lw=0.5)
    bottom.set_ylabel("pred / obs - 1 (%)")
    bottom.set_xlabel("step (dashed: end of the fit runs)")
  return plots.save(fig, path)


def report(result: Mapping[str, Any]) -> str:
  """law_extrapolation.md: setup, every variant, the kept one's runs, bands."""
  info, s = result["info"], result["study"]
  lines = [
      "# Loss-curve laws, extrapolated 3x", "",
      f"Fit on the first {s['fit_steps']} steps of three runs "
      f"({', '.join(result['fit_runs'])}); predicted: "
      f"{', '.join(result['held_runs'])}, {s['predict_steps']} steps each, "
      f"scored at every evaluation beyond step {s['fit_steps']}. Errors are "
      "relative to the observed eval loss; a role's *mean* is the mean over "
      "its runs of each run's mean error, *max* the worst point of any run, "
      "*mean of max* the mean over runs of each run's worst point (the "
      f"papers' worst). Losses from step {s['min_step']} on.", "",
      "## Every fitting variant", "",
      variants_markdown(result["variants"]), ""]
  lines += [f"- **{k}**: {VARIANT_NOTES[k]}" for k in s["variants"]]
  lines.append("")
  for law in s["laws"]:
    rows = [r for r in result["variants"]
            if r["law"] == law and "error" not in r]
    best = min(rows, key=lambda r: r["held_mean_rel_err"])
    kept = [r for r in rows if r["variant"] == result["kept"][law]]
    lines.append(
        f"- {law}: lowest held-out mean error: **{best['variant']}** "
        f"({best['held_mean_rel_err']:.3%}); the bands use "
        f"**{result['kept'][law]}**"
        + (f" (prior weight {kept[0]['prior_weight']:g}, chosen from the fit "
           "runs alone)" if kept and kept[0]["prior_weight"] is not None
           else "") + ".")
  lines.append("")
  for law, table in result["kept_runs"].items():
    lines += [f"## {law} ({s['keep'] if law in result['kept'] else ''}), "
              "by run", "", table, ""]
  lines += [f"## {s['level']:.0%} bands: coverage of the observed points", "",
            f"{s['bootstrap']} bootstrap refits per band "
            "(`wsd_jax.laws.uncertainty`).", "",
            coverage_markdown(result["coverage"]), "",
            "## Environment", ""]
  lines += [f"- {k}: {v}" for k, v in info.items()]
  return "\n".join(lines) + "\n"


def analyse(config: ml_collections.ConfigDict, dirs: Mapping[str, str],
            out: str, info: Mapping[str, Any] | None = None
            ) -> dict[str, Any]:
  """Fits every variant, checks the bands, writes the tables and figure."""
  s = config.study
  fit, held = load_curves(s, dirs)
  options = {"warmup_steps": int(s.warmup_steps)}
  start = time.perf_counter()
  rows, fitted = compare_variants(fit, held, list(s.laws), list(s.variants),
                                  **options)
  kept = {law: fitted[law, s.keep if (law, s.keep) in fitted else "lbfgs"]
          for law in s.laws}
  coverage, banded = [], {}
  for law in s.laws:
    variant = s.keep if (law, s.keep) in fitted else "lbfgs"
    rows_c, by_kind = coverage_rows(law, variant, fit, held, s, **options)
    coverage += rows_c
    banded[f"{law} ({variant})"] = by_kind["blocks"]
  stem = rundir.join(out, TAG)
  result = {
      "study": s.to_dict(), "fit_runs": list(fit), "held_runs": list(held),
      "variants": rows, "coverage": coverage,
      "kept": {law: s.keep if (law, s.keep) in fitted else "lbfgs"
               for law in s.laws},
      "kept_runs": {law: runs_markdown(f, fit, held)
                    for law, f in kept.items()},
      "info": {**(info or {}),
               "analysis_wall_s": round(time.perf_counter() - start, 1)}}
  figure(banded, fit, held, int(s.fit_steps), float(s.level), stem + ".png")
  rundir.write_json(stem + ".json", result)
  rundir.write_text(stem + ".md", report(result))
  return result


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resumes) the protocol's runs, then ``analyse`` into WORKDIR."""
  start = time.perf_counter()
  info = use_source_corpus(config, workdir)
  dirs, train_s = train_runs(config, workdir)
  t = config.train_config
  info.update(model=str(t.model.to_dict()),
              batch=f"{t.data.batch_size} x {t.data.seq_len} bytes",
              eval_batches=int(t.data.eval_batches),
              train_wall_s=round(train_s, 1), argv=" ".join(sys.argv))
  result = analyse(config, dirs, workdir, info)
  result["info"]["total_wall_s"] = round(time.perf_counter() - start, 1)
  return result
