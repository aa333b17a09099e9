"""Law validation: fit laws on some runs, score every held-out run, report.

Reads run directories only (``Curve.from_run``). Writes into ``out``:
``law_study.md`` / ``law_study.json`` (one row per law and run: role, mean
and max relative error, R^2; fitted parameters), ``law_study.png`` (observed
vs predicted curves and relative errors, one column per law) and
``report.md`` (the table, the papers' numbers, the environment).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from wsd_jax.laws.curve import Curve
from wsd_jax.laws.report import LAWS, score_table

# What the papers report on held-out schedules (PAPERS.md).
PAPER_NUMBERS = {
    "multipower": "Luo et al. (arXiv 2503.12811): mean relative error "
                  "0.11-0.17%, worst 0.4-1.0%",
    "annealing": "Tissue et al. (arXiv 2408.11029): R^2 > 0.999",
}
GOAL = {"mean_rel_err": 0.003, "max_rel_err": 0.01}  # multi-power, held out


def fit_and_score(curves: Mapping[str, Curve], fit: Sequence[str],
                  laws: Sequence[str], **options: Any
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """Fits each law on the ``fit`` curves; scores all curves.

  Returns the fitted laws by name and the rows (``law`` added to each row of
  ``report.score_table``).
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
  """Per law over held-out runs: mean of the mean errors, worst error, min R^2."""
  out = {}
  for law in dict.fromkeys(r["law"] for r in rows):
    held = [r for r in rows if r["law"] == law and r["role"] == "predict"]
    if held:
      out[law] = {"mean_rel_err": float(np.mean([r["mean_rel_err"] for r in held])),
                  "max_rel_err": float(np.max([r["max_rel_err"] for r in held])),
                  "min_r2": float(np.min([r["r2"] for r in held]))}
  return out


def markdown(rows: Sequence[dict[str, Any]]) -> str:
  lines = ["| law | role | run | mean rel. err | max rel. err | R² |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['law']} | {r['role']} | {r['run']} | "
                 f"{r['mean_rel_err']:.3%} | {r['max_rel_err']:.3%} | "
                 f"{r['r2']:.5f} |")
  return "\n".join(lines) + "\n"


def plot(fitted: Mapping[str, Any], curves: Mapping[str, Curve], fit: Sequence[str],
         path: str) -> None:
  """Top: observed (dots) vs predicted (lines); bottom: relative error."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, axes = plt.subplots(2, len(fitted), figsize=(6 * len(fitted), 7),
                           sharex=True, squeeze=False,
                           gridspec_kw={"height_ratios": [2, 1]})
  for col, (name, law) in enumerate(fitted.items()):
    top, bottom = axes[0, col], axes[1, col]
    for i, (run, c) in enumerate(curves.items()):
      color = f"C{i % 10}"
      pred = law.predict(c.lrs, c.steps)
      label = f"{run} (fit)" if run in fit else run
      top.plot(c.steps, c.losses, ".", color=color, ms=2.5, alpha=0.7)
      top.plot(c.steps, pred, "-", color=color, lw=1, label=label)
      bottom.plot(c.steps, 100 * (pred / c.losses - 1), "-", color=color, lw=1)
    lo = min(float(np.percentile(c.losses, 1)) for c in curves.values())
    hi = max(float(np.percentile(c.losses, 70)) for c in curves.values())
    top.set_ylim(lo - 0.02 * (hi - lo), hi)
    top.set_title(f"{name}: observed (dots) vs predicted (lines)")
    top.set_ylabel("eval loss")
    top.legend(fontsize=7)
    bottom.axhline(0, color="k", lw=0.5)
    bottom.set_ylabel("pred / obs - 1 (%)")
    bottom.set_xlabel("step")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def report(rows: Sequence[dict[str, Any]], fitted: Mapping[str, Any],
           info: Mapping[str, Any]) -> str:
  """report.md: the table, the papers' numbers and a verdict per law."""
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
    if law == "multipower":
      ok = (s["mean_rel_err"] <= GOAL["mean_rel_err"] and
            s["max_rel_err"] <= GOAL["max_rel_err"])
      lines.append(f"  Goal (mean <= 0.3%, worst <= 1%): "
                   f"{'met' if ok else 'NOT met'}.")
  lines += ["", "## Fitted parameters", ""]
  for law, f in fitted.items():
    params = ", ".join(f"{k}={v:.4g}" for k, v in f.params.items())
    lines.append(f"- {law}: {params} (fit R² {f.fit_info['r2']:.5f})")
  lines += ["", "## Environment", ""]
  lines += [f"- {k}: {v}" for k, v in info.items() if k != "fit"]
  return "\n".join(lines) + "\n"


def run_study(run_dirs: Mapping[str, str], fit: Sequence[str],
              laws: Sequence[str], out: str, info: Mapping[str, Any] | None = None,
              metric: str = "eval_loss", min_step: int = 0,
              **options: Any) -> dict[str, Any]:
  """Fits, scores and writes the tables, figure and report into ``out``.

  Only losses at steps ``>= min_step`` are fitted and scored (the laws are
  not meant for the first steps of training, where the loss falls by
  nats); the LR sequence from step 0 is always used.
  """
  if unknown := sorted(set(fit) - set(run_dirs)):
    raise ValueError(f"fit runs {unknown} are not among {sorted(run_dirs)}")
  curves = {n: Curve.from_run(d, metric, min_step)
            for n, d in run_dirs.items()}
  fitted, rows = fit_and_score(curves, fit, laws, **options)
  info = {"fit": list(fit), "min_step": min_step, **(info or {})}
  os.makedirs(out, exist_ok=True)
  stem = os.path.join(out, "law_study")
  with open(stem + ".md", "w") as f:
    f.write(markdown(rows))
  result = {"metric": metric, "info": info, "rows": rows,
            "summary": summary(rows),
            "params": {n: f.params for n, f in fitted.items()},
            "fit_r2": {n: f.fit_info["r2"] for n, f in fitted.items()}}
  with open(stem + ".json", "w") as f:
    json.dump(result, f, indent=2)
  plot(fitted, curves, fit, stem + ".png")
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write(report(rows, fitted, info))
  return result
