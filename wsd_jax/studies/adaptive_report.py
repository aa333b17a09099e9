"""The adaptive-methods study's figures and report, and :func:`run`, which
trains (resumes) the study, analyses it and writes them
(``python -m experiments.adaptive_study``; the study itself:
``wsd_jax.studies.adaptive``)."""

from __future__ import annotations

import math
import os
import platform
import time
from typing import Sequence

import numpy as np

from wsd_jax import plots, reports, runs
from wsd_jax.adaptive import fedhyper
from wsd_jax.plots import plt
from wsd_jax.runs import rundir
from wsd_jax.studies import common
from wsd_jax.studies.adaptive import (AUTOLRS_K, COLORS, LABELS, MATCH_MARGIN,
                                      MUCH_LESS, Plan, analyse_workload,
                                      best_index, claim_federation,
                                      federation, plan, realised_lr,
                                      train_workload)
from wsd_jax.studies.verdicts import LEVEL

# --------------------------------------------------------------- figures

def lr_figure(curves: dict[str, np.ndarray], path: str, title: str) -> str:
  """The realised LR of every method (one seed, each at its best peak) vs
  step, on one log axis."""
  fig, ax = plt.subplots(figsize=(7.5, 4.2))
  for i, (m, lrs) in enumerate(curves.items()):  # styles: overlaps visible
    ax.plot(np.arange(len(lrs)), lrs, ("-", "--", "-.", ":")[i % 4],
            lw=1.2 + 0.4 * (i % 2), color=COLORS[m], label=LABELS[m])
  ax.set_yscale("log")
  ax.set(xlabel="step (update t uses lr(t))", ylabel="learning rate used",
         title=title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  return plots.save(fig, path)


def sweep_figure(sweep: dict[str, tuple[np.ndarray, np.ndarray]], path: str,
                 title: str, hline: float | None = None) -> str:
  """Final eval loss (mean ± std over seeds) vs peak / initial LR, one line
  per method; a star at each method's chosen peak."""
  fig, ax = plt.subplots(figsize=(7.5, 4.2))
  for m, (peaks, v) in sweep.items():
    mean = np.nanmean(v, axis=1)
    std = np.nanstd(v, axis=1, ddof=1) if v.shape[1] > 1 else None
    ax.errorbar(peaks, mean, yerr=std, fmt="-o", ms=4, capsize=2, lw=1.2,
                color=COLORS[m], label=LABELS[m])
    i = best_index(v)
    ax.plot(peaks[i], mean[i], "*", ms=13, color=COLORS[m])
  if hline is not None:
    ax.axhline(hline, color="k", ls="--", lw=1, label="optimal loss")
  ax.set_xscale("log")
  ax.set(xlabel="peak LR (constant, Adam-HD: initial LR)",
         ylabel="final eval loss (mean ± std over seeds)", title=title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  return plots.save(fig, path)


def federation_figure(fed: dict, path: str) -> str:
  """Global loss per round (first seed) of FedAvg and FedHyper-G."""
  series = [(f"{m} ({label} client LR {rows['client_lr']:g})",
             np.arange(len(c)), np.asarray(c))
            for label, rows in fed.items()
            for m, c in rows["curves"].items()]
  return plots.curves(series, path, xlabel="server round",
                      ylabel="global loss (exact)",
                      title="FedHyper-G vs FedAvg (first seed)")


def figures(results: dict, root: str) -> dict[str, str]:
  """Per workload the LR and sweep figures; the federation's."""
  out = {}
  for name, r in results["workloads"].items():
    curves = {m: realised_lr(runs.Run(rundir.join(root, ds[0])))
              for m, ds in r["run_dirs"].items()}
    out[f"{name}_lr"] = lr_figure(
        curves, rundir.join(root, f"adaptive_{name}_lr.png"),
        f"{name}: LR used (seed {results['seeds'][0]}, best peaks)")
    out[f"{name}_sweep"] = sweep_figure(
        {m: (np.asarray(v["peaks"]), np.asarray(v["losses"]))
         for m, v in r["sweep"].items()},
        rundir.join(root, f"adaptive_{name}_sweep.png"),
        f"{name}: final loss vs peak / initial LR", r["optimal_loss"])
  out["federation"] = federation_figure(
      results["federation"], rundir.join(root, "adaptive_federation.png"))
  return {k: os.path.basename(v) for k, v in out.items()}


# ---------------------------------------------------------------- report

def _ci(c: dict, digits: int = 4) -> str:
  lo, hi = c["ci"]
  return f"{c['mean']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def _seeds(values: Sequence[float], digits: int = 4) -> str:
  return ", ".join(f"{v:+.{digits}f}" for v in values)


def claim_rows(claims: Sequence[dict]) -> list[list]:
  rows = []
  for c in claims:
    if "parts" in c:
      for label, p in c["parts"].items():
        rows.append([f"({c['claim']}) {label} client LR {p['client_lr']:g}",
                     c["workload"], _seeds(p["per_seed"]), _ci(p),
                     f"< {c['margin']:.4g}", p["verdict"]])
    elif "ci" in c:
      rows.append([f"({c['claim']})", c["workload"], _seeds(c["per_seed"]),
                   _ci(c), f"< {c['margin']:.4g}", c["verdict"]])
    else:
      rows.append([f"({c['claim']})", c["workload"], "", "", "",
                   c["verdict"]])
  return rows


def markdown(results: dict) -> str:
  """The report: settings, per workload the sweep and the best peaks, the
  claims with per-seed paired differences, CIs and verdicts."""
  seeds, lines = results["seeds"], []
  lines += [
      "# Adaptive LR methods: a study with verdicts\n",
      f"Seeds {seeds}; each method at its own best peak (lowest seed-mean "
      "final eval loss on the grid). Differences are paired over seeds (same "
      "seed: same data and initialisation for every method); intervals are "
      f"two-sided {LEVEL:.0%} Student-t intervals of the mean paired "
      "difference. A claim `mean d < margin` is **reproduced** when the "
      "whole interval is below the margin, **refuted** when it is wholly "
      "at or above it, else **inconclusive**. Margins: 'matches' allows "
      f"{MATCH_MARGIN:.1%} of the reference loss; 'much less sensitive' "
      f"means at most {MUCH_LESS:g}x the spread (log ratio < "
      f"{math.log(MUCH_LESS):.3f}). All optimizers Adam-type with b1 0.9, "
      "b2 0.95, no weight decay; the scheduled methods and schedule-free "
      "warm up over 5% of the run; Adam (constant) and Adam-HD do not.\n",
      "Command: `python -m experiments.adaptive_study --workdir=DIR"
      f"{' --quick' if results['quick'] else ''}` (rerunning reuses finished "
      "runs and redoes the analysis). Wall time of this invocation: "
      f"{results['wall_s']:.0f} s on {results['machine']}.\n",
      "## Verdicts\n",
      "".join(f"- ({c['claim']}, {c['workload']}) {c['text']}: "
              f"**{c['verdict']}**\n" for c in results["claims"]),
      "",
      reports.markdown_table(
          ["claim", "workload", "d per seed", "mean d [95% CI]", "margin",
           "verdict"], claim_rows(results["claims"])),
      "`d` per claim: (a), (d) final eval loss minus the reference's; (b) "
      "log(Adam-HD's spread / Adam's), spread = std of the final loss over "
      "the LR grid; (c) log(AutoLRS compute steps / baseline steps) to the "
      "tuned baseline's final loss; (e) FedHyper-G's final loss minus "
      "FedAvg's.\n"]
  for name, r in results["workloads"].items():
    peaks = sorted({p for v in r["sweep"].values() for p in v["peaks"]})

    def cells(v: dict) -> list[str]:
      by = dict(zip(v["peaks"], v["losses"]))
      return [common.fmt(*common.mean_std(by[p])) if p in by else ""
              for p in peaks]
    lines += [
        f"## Workload: {name} ({r['steps']} steps; optimal loss "
        f"{reports.fmt(r['optimal_loss']) or 'unknown'})\n",
        f"Regime: {r['regime']}\n",
        f"Adam-HD at hypergradient LR {r['hypergrad_lr']:g} (of "
        f"{', '.join(r['adam_hd_by_hypergrad_lr'])}: the lowest mean loss "
        "over the grid). Final eval loss, mean ± std over seeds, per peak "
        "(initial) LR:\n",
        reports.markdown_table(
            ["method", *[f"{p:g}" for p in peaks], "best peak"],
            [[LABELS[m], *cells(v),
              f"{r['best_peak'][m]:g}" + (" (grid edge)" if
                                          r["best_at_grid_edge"][m] else "")]
             for m, v in r["sweep"].items()]),
        "At each method's best peak (per seed):\n",
        reports.markdown_table(
            ["method", "final eval loss per seed", "mean ± std"],
            [[LABELS[m], ", ".join(f"{x:.4f}" for x in v),
              common.fmt(*common.mean_std(v))]
             for m, v in r["at_best"].items()]),
        f"![LR used]({results['figures'][name + '_lr']})\n",
        f"![loss vs LR]({results['figures'][name + '_sweep']})\n"]
    b = next(c for c in r["claims"] if c["claim"] == "b")
    lines.append(
        "Sensitivity (b): std of the final loss over the "
        f"{b['decades']:.1f}-decade grid per seed: Adam "
        f"{_seeds(b['spread_adam'])}, Adam-HD {_seeds(b['spread_adam_hd'])}; "
        "width of the band within 2% of the best (decades): Adam "
        f"{_seeds(b['band_decades_adam'], 2)}, Adam-HD "
        f"{_seeds(b['band_decades_adam_hd'], 2)}. Spread ratio Adam-HD / "
        "Adam per hypergradient LR (per seed): " + "; ".join(
            f"{k}: {_seeds(v, 3)}" for k, v in
            b["spread_ratio_by_hypergrad_lr"].items()) + ". The kept "
        "hypergradient LR is chosen by mean loss, which the low-LR end of "
        "the grid dominates, so it favours the least sensitive one.\n")
    if (c := next(c for c in r["claims"] if c["claim"] == "c")).get("ci"):
      w = c["within_match_margin"]
      lines.append(
          f"AutoLRS (c), against the tuned {LABELS[c['baseline']]}: compute "
          f"steps to the baseline's final loss {c['autolrs_compute_steps']} "
          f"(reached: {c['reached']}; where not, its total, a lower bound) "
          "vs the baseline's "
          f"{c['baseline_steps']}; to within {MATCH_MARGIN:.1%} of it: "
          f"{w['autolrs_compute_steps']} (reached: {w['reached']}) vs "
          f"{w['baseline_steps']}. AutoLRS scaled to short runs: k = "
          f"{AUTOLRS_K} trials per stage, tau = steps / 4, tau' = tau / 10, "
          "tau_max = steps / 2, LR bounds the 3-decade grid.\n")
  fed = results["federation"]
  lines += [
      f"## Federation: FedHyper-G vs FedAvg ({results['fed_rounds']} rounds)\n",
      "8 clients, each a bigram language of its own (Dirichlet 0.3 rows, 16 "
      "tokens), 5 local SGD steps per round, FedAvg server LR 1; FedHyper-G "
      f"clip {list(fedhyper.CODE_CLIP)} (the authors' code's). Seed s draws "
      "the clients and the sampling, shared by both methods. A toy "
      "illustration.\n",
      reports.markdown_table(
          ["client LR", "FedAvg final loss per seed",
           "FedHyper-G final loss per seed"],
          [[f"{label} ({rows['client_lr']:g})",
            ", ".join(f"{x:.4f}" for x in rows["fedavg"]),
            ", ".join(f"{x:.4f}" for x in rows["fedhyper_g"])]
           for label, rows in fed.items()]),
      f"![federation]({results['figures']['federation']})\n"]
  return "\n".join(lines)


def machine() -> str:
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  return (f"{platform.machine()} CPU, {os.cpu_count()} cores (shared; load "
          f"average {load:.1f} at the end)")


def run(workdir: str, quick: bool = False, plan_: Plan | None = None) -> dict:
  """Trains (resumes) every run, simulates the federation, writes
  ``report.md``, ``results.json`` and the figures; returns the results."""
  start = time.perf_counter()
  p = plan_ or plan(quick)
  seeds = list(p.seeds)
  for wl in p.workloads:
    train_workload(wl, workdir, p)
  workloads = {wl.name: analyse_workload(wl, workdir, seeds)
               for wl in p.workloads}
  fed = federation(seeds, p.fed_rounds, p.fed_client_lrs)
  claims = [c for w in workloads.values() for c in w["claims"]]
  claims.append(dict(claim_federation(fed), workload="federation"))
  results = {"seeds": seeds, "workloads": workloads, "federation": fed,
             "fed_rounds": p.fed_rounds, "claims": claims, "quick": quick}
  results["figures"] = figures(results, workdir)
  results["wall_s"] = time.perf_counter() - start
  results["machine"] = machine()
  rundir.write_json(rundir.join(workdir, "results.json"), results)
  rundir.write_text(rundir.join(workdir, "report.md"), markdown(results))
  return results
