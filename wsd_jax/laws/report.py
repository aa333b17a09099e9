"""Fit a law on some runs, score it on others: tables (Markdown, JSON), plots.

Runs are only read (``Curve.from_run``); the outputs go to a directory of
their own (``fit_and_report``'s ``out``, by default ``./fit_law_<law>``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from etils import epath

from wsd_jax.laws import uncertainty
from wsd_jax.laws.annealing import AnnealingLaw
from wsd_jax.laws.curve import Curve
from wsd_jax.laws.fitting import Law
from wsd_jax.laws.multipower import MultiPowerLaw

LAWS: dict[str, type[Law]] = {"annealing": AnnealingLaw,
                              "multipower": MultiPowerLaw}
COLUMNS = ("role", "run", "schedule", "mean_rel_err", "max_rel_err", "r2")
SUMMARY_COLUMNS = ("role", "runs", "mean_rel_err", "max_rel_err",
                   "mean_max_rel_err", "min_r2")

SUMMARY_NOTE = ("max_rel_err: the worst point of any run; mean_max_rel_err: "
                "the mean over runs of each run's worst point (the papers' "
                "worst).")


class FitReport(NamedTuple):
  """What ``fit_and_report`` fitted, scored and wrote."""
  law: Law
  rows: list[dict[str, Any]]      # score_table
  summary: list[dict[str, Any]]   # summarize(rows)
  paths: dict[str, str]           # "markdown", "json", "png" -> file written


def score_table(law: Law, fitted: Sequence[Curve], predicted: Sequence[Curve],
                level: float | None = None) -> list[dict[str, Any]]:
  """One row per curve: role (fit/predict), run, schedule and ``law.score``;
  with ``level`` (a law fitted with bootstrap refits) also ``coverage``, the
  share of the curve's observed points inside the ``level`` band."""
  rows = []
  for role, curves in (("fit", fitted), ("predict", predicted)):
    for c in curves:
      row = {"role": role, "run": c.name, "schedule": c.schedule_name,
             **law.score(c)}
      if level is not None:
        band = law.predict(c.lrs, c.steps, return_interval=True, level=level)
        row["coverage"] = uncertainty.coverage(c.losses, band.lower,
                                               band.upper)
      rows.append(row)
  return rows


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """One row per role of ``rows`` (``score_table`` rows) over its runs.

  ``mean_rel_err`` is the mean over runs of each run's mean relative error.
  The worst error is given twice: ``max_rel_err``, the largest error at any
  point of any run, and ``mean_max_rel_err``, the mean over runs of each
  run's largest error (the "worst" of Luo et al., arXiv 2503.12811).
  ``min_r2`` is the lowest R^2.
  """
  out = []
  for role in dict.fromkeys(r["role"] for r in rows):
    group = [r for r in rows if r["role"] == role]
    worst = [r["max_rel_err"] for r in group]
    out.append({"role": role, "runs": len(group),
                "mean_rel_err": float(np.mean([r["mean_rel_err"]
                                               for r in group])),
                "max_rel_err": float(np.max(worst)),
                "mean_max_rel_err": float(np.mean(worst)),
                "min_r2": float(np.min([r["r2"] for r in group]))})
  return out


def markdown_table(rows: Sequence[dict[str, Any]],
                   columns: Sequence[str] = COLUMNS) -> str:
  """``rows`` as a Markdown table; errors in percent, R^2 to 6 decimals."""
  lines = ["| " + " | ".join(columns) + " |",
           "|" + "---|" * len(columns)]
  for row in rows:
    cells = [f"{row[k]:.4%}" if k.endswith("rel_err") else
             f"{row[k]:.0%}" if k == "coverage" else
             f"{row[k]:.6f}" if k.endswith("r2") else str(row[k])
             for k in columns]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def loss_limits(losses: Sequence[np.ndarray], margin: float = 0.05
                ) -> tuple[float, float]:
  """The observed loss range widened by ``margin`` of its width each side."""
  lo = min(float(np.min(x)) for x in losses)
  hi = max(float(np.max(x)) for x in losses)
  pad = margin * (hi - lo) or margin * abs(hi) or margin
  return lo - pad, hi + pad


def plot_predictions(law: Law, fitted: Sequence[Curve],
                     predicted: Sequence[Curve], path: str,
                     num_points: int = 400, level: float = 0.9
                     ) -> dict[str, tuple[float, float]]:
  """Observed (dots) vs predicted (lines) losses, and relative errors; a PNG.

  A law fitted with bootstrap refits (``law.ensemble``) is drawn with its
  ``level`` prediction band (shaded).

  Each curve's prediction is drawn over its observed steps only (at up to
  ``num_points`` steps plus the observed ones); the loss axis spans the
  observed losses (``loss_limits``), whatever the law predicts elsewhere.
  One colour per run; the legend sits outside the axes, in columns.

  Returns:
    ``xlim`` and ``ylim`` of the loss panel.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top  (colormaps)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  curves = [*fitted, *predicted]
  n = len(curves)
  cmap = matplotlib.colormaps["tab10" if n <= 10 else
                              "tab20" if n <= 20 else "viridis"]
  colors = [cmap(i if n <= 20 else i / max(n - 1, 1)) for i in range(n)]
  ncol = math.ceil(n / 20)
  fig, (top, bottom) = plt.subplots(
      2, 1, figsize=(7 + 1.8 * ncol, 6), sharex=True,
      gridspec_kw={"height_ratios": [2, 1]})
  for i, (c, color) in enumerate(zip(curves, colors)):
    grid = np.unique(np.r_[np.linspace(c.steps[0], c.steps[-1], num_points)
                           .round().astype(np.int64), c.steps])
    if law.ensemble:
      band = law.predict(c.lrs, grid, return_interval=True, level=level)
      pred = band.loss
      top.fill_between(grid, band.lower, band.upper, color=color, alpha=0.15,
                       lw=0)
    else:
      pred = law.predict(c.lrs, grid)
    at_obs = pred[np.searchsorted(grid, c.steps)]
    name = c.name or f"curve {i}"
    top.plot(c.steps, c.losses, ".", color=color, ms=3, alpha=0.6)
    top.plot(grid, pred, "-", color=color, lw=1,
             label=f"{name} (fit)" if i < len(fitted) else name)
    bottom.plot(c.steps, 100 * (at_obs / c.losses - 1), "-", color=color,
                lw=1)
  top.set_xlim(min(int(c.steps[0]) for c in curves),
               max(int(c.steps[-1]) for c in curves))
  top.set_ylim(*loss_limits([c.losses for c in curves]))
  top.set_ylabel("loss")
  top.set_title(f"{type(law).__name__}: observed (dots) vs predicted (lines)"
                + (f", {level:.0%} band" if law.ensemble else ""))
  top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=ncol,
             fontsize=7, frameon=False)
  bottom.axhline(0, color="k", lw=0.5)
  bottom.set_ylabel("pred / obs - 1 (%)")
  bottom.set_xlabel("step")
  limits = {"xlim": tuple(map(float, top.get_xlim())),
            "ylim": tuple(map(float, top.get_ylim()))}
  fig.tight_layout()
  with epath.Path(path).open("wb") as f:
    fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
  plt.close(fig)
  return limits


def default_out(law: str) -> str:
  """``./fit_law_<law>`` (absolute): outputs never go into an input run."""
  return os.path.abspath(f"fit_law_{law}")


def _inside(path: str, run: str) -> bool:
  path, run = os.fspath(path), os.fspath(run)
  if "://" not in path + run:
    path, run = os.path.realpath(path), os.path.realpath(run)
  return path == run or path.startswith(run.rstrip("/") + "/")


def fit_and_report(fit_dirs: Sequence[str], predict_dirs: Sequence[str] = (),
                   law: str = "annealing", out: str | None = None,
                   metric: str = "eval_loss", min_step: int = 0, *,
                   level: float = 0.9, **fit_options: Any) -> FitReport:
  """Fits ``law`` on ``fit_dirs``, scores every run, writes the outputs.

  Only losses at steps ``>= min_step`` are fitted and scored (the fit start
  step). ``fit_options`` go to ``Law.fit`` (law options such as
  ``warmup_steps``, by default the runs' own, or ``lam``; the fitting
  method; ``bootstrap=N`` for a ``level`` band, whose coverage of each run's
  points is then a column). Writes ``fit_law_{law}.md`` (the per-run table
  and the summary), ``fit_law_{law}.json`` (rows, summary, fitted params and
  ``fit_info``) and ``fit_law_{law}.png`` (``plot_predictions``) into
  ``out``; by default ``default_out(law)``, which must not lie inside an
  input run (runs are only read).
  """
  if law not in LAWS:
    raise ValueError(f"law must be one of {sorted(LAWS)}; got {law!r}")
  if not fit_dirs:
    raise ValueError("fit_dirs is empty: give at least one run to fit")
  if out is None:
    out = default_out(law)
    if runs := [d for d in (*fit_dirs, *predict_dirs) if _inside(out, d)]:
      raise ValueError(f"the default output dir {out} is inside the input run "
                       f"{runs[0]}; runs are only read: pass --out")
  fitted = [Curve.from_run(d, metric, min_step) for d in fit_dirs]
  predicted = [Curve.from_run(d, metric, min_step) for d in predict_dirs]
  fitted_law = LAWS[law].fit(fitted, **fit_options)
  banded = level if fitted_law.ensemble else None
  rows = score_table(fitted_law, fitted, predicted, banded)
  summary = summarize(rows)
  columns = COLUMNS + (("coverage",) if banded else ())
  stem = epath.Path(out) / f"fit_law_{law}"
  paths = {k: os.fspath(stem) + ext
           for k, ext in (("markdown", ".md"), ("json", ".json"),
                          ("png", ".png"))}
  epath.Path(out).mkdir(parents=True, exist_ok=True)
  epath.Path(paths["markdown"]).write_text(
      markdown_table(rows, columns) + "\n"
      + markdown_table(summary, SUMMARY_COLUMNS) + "\n" + SUMMARY_NOTE + "\n")
  epath.Path(paths["json"]).write_text(json.dumps(
      {"law": law, "params": fitted_law.params, "options": fitted_law.options,
       "fit_r2": fitted_law.fit_info["r2"], "fit_info": fitted_law.fit_info,
       "metric": metric, "min_step": min_step, "level": banded, "rows": rows,
       "summary": summary}, indent=2, default=_plain))
  plot_predictions(fitted_law, fitted, predicted, paths["png"], level=level)
  return FitReport(fitted_law, rows, summary, paths)


def _plain(x: Any) -> Any:
  """JSON for NumPy scalars and arrays in ``fit_info``."""
  return x.tolist() if hasattr(x, "tolist") else str(x)
