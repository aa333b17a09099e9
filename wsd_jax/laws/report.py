"""Fit a law on some runs, score it on others: tables (Markdown, JSON), plots."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from wsd_jax.laws.annealing import AnnealingLaw
from wsd_jax.laws.curve import Curve
from wsd_jax.laws.fitting import Law
from wsd_jax.laws.multipower import MultiPowerLaw

LAWS: dict[str, type[Law]] = {"annealing": AnnealingLaw,
                              "multipower": MultiPowerLaw}
COLUMNS = ("role", "run", "schedule", "mean_rel_err", "max_rel_err", "r2")


def score_table(law: Law, fitted: Sequence[Curve], predicted: Sequence[Curve]
                ) -> list[dict[str, Any]]:
  """One row per curve: role (fit/predict), run, schedule and ``law.score``."""
  return [{"role": role, "run": c.name, "schedule": c.schedule_name,
           **law.score(c)}
          for role, curves in (("fit", fitted), ("predict", predicted))
          for c in curves]


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
  lines = ["| " + " | ".join(COLUMNS) + " |",
           "|" + "---|" * len(COLUMNS)]
  for row in rows:
    cells = [f"{row[k]:.4%}" if k.endswith("rel_err") else
             f"{row[k]:.6f}" if k == "r2" else str(row[k]) for k in COLUMNS]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot_predictions(law: Law, curves: Sequence[Curve], path: str) -> None:
  """Observed (dots) and predicted (lines) loss curves, one PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(7, 4.5))
  for i, c in enumerate(curves):
    color = f"C{i % 10}"
    ax.plot(c.steps, c.losses, ".", color=color, ms=3, alpha=0.6)
    ax.plot(np.arange(1, len(c.lrs)), law.predict(c.lrs), "-", color=color,
            lw=1, label=c.name or f"curve {i}")
  ax.set_xlabel("step")
  ax.set_ylabel("loss")
  ax.set_title(f"{type(law).__name__}: observed (dots) vs predicted")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def fit_and_report(fit_dirs: Sequence[str], predict_dirs: Sequence[str] = (),
                   law: str = "annealing", out: str | None = None,
                   metric: str = "eval_loss", min_step: int = 0
                   ) -> tuple[Law, list[dict[str, Any]]]:
  """Fits ``law`` on ``fit_dirs``, scores every run, writes the outputs.

  Only losses at steps ``>= min_step`` are fitted and scored.

  Writes ``fit_law_{law}.md``, ``.json`` (rows and fitted params) and
  ``.png`` into ``out`` (default: the first fit dir's ``plots/``).
  """
  if law not in LAWS:
    raise ValueError(f"law must be one of {sorted(LAWS)}; got {law!r}")
  if not fit_dirs:
    raise ValueError("fit_dirs is empty: give at least one run to fit")
  fitted = [Curve.from_run(d, metric, min_step) for d in fit_dirs]
  predicted = [Curve.from_run(d, metric, min_step) for d in predict_dirs]
  fitted_law = LAWS[law].fit(fitted)
  rows = score_table(fitted_law, fitted, predicted)
  out = out or os.path.join(fit_dirs[0], "plots")
  os.makedirs(out, exist_ok=True)
  stem = os.path.join(out, f"fit_law_{law}")
  with open(stem + ".md", "w") as f:
    f.write(markdown_table(rows))
  with open(stem + ".json", "w") as f:
    json.dump({"law": law, "params": fitted_law.params,
               "fit_r2": fitted_law.fit_info["r2"], "metric": metric,
               "min_step": min_step,
               "rows": rows}, f, indent=2)
  plot_predictions(fitted_law, fitted + predicted, stem + ".png")
  return fitted_law, rows
