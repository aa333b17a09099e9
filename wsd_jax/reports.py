"""Tables and figures of run directories, for the apps and notebooks.

Reads runs only through ``wsd_jax.runs.Run`` and draws through
``wsd_jax.plots``; the trainer never calls this. ``markdown_table`` is the
one Markdown table writer of the project.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from wsd_jax import plots
from wsd_jax.runs import Run, rundir, tree


def fmt(value: Any, digits: int = 5) -> str:
  """A table cell: floats with ``digits`` decimals, None as empty."""
  if value is None:
    return ""
  if isinstance(value, float):
    return f"{value:.{digits}f}"
  return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                   digits: int = 5) -> str:
  """A Markdown table; cells through ``fmt``."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(fmt(c, digits) for c in row) + " |"
            for row in rows]
  return "\n".join(lines) + "\n"


def run_figures(workdir: str) -> list[str]:
  """``plots/loss.png`` and ``plots/lr.png`` of one run."""
  run = Run(workdir)
  if not run.metrics:
    return []
  lrs = run.lrs(run.last_step)
  return plots.run_curves(
      run.column("loss"), run.eval_curve(),
      (np.arange(len(lrs)), lrs), rundir.plots_dir(workdir),
      run.data_info.get("optimal_loss"))


def tree_figure(workdir: str, path: str | None = None) -> str:
  """Every run of the tree's eval loss vs step on one axis (default
  ``WORKDIR/plots/runs.png``)."""
  root = Run(workdir)
  return plots.curves(tree.tree_curves(root),
                      path or rundir.join(rundir.plots_dir(workdir),
                                          "runs.png"),
                      title="runs (eval loss)", ylabel="loss",
                      hline=root.data_info.get("optimal_loss"),
                      hline_label="optimal loss")


def population_report(workdir: str) -> tuple[str, str]:
  """``population.md`` (each member's values, step and final eval loss) and
  ``plots/population.png`` (every member's eval loss curve)."""
  listing = rundir.read_json(rundir.join(workdir, rundir.POPULATION))
  keys = sorted({k for m in listing["members"] for k in m["values"]})
  rows, series = [], []
  for m in listing["members"]:
    run = Run(rundir.join(workdir, m["workdir"]))
    rows.append([m["name"], *(m["values"].get(k, "") for k in keys),
                 run.last_step, run.final_eval])
    steps, losses = run.eval_curve()
    if steps.size:
      series.append((m["name"], steps, losses))
  table = rundir.join(workdir, "population.md")
  rundir.write_text(table, markdown_table(
      ["member", *keys, "step", "eval_loss"], rows))
  png = plots.curves(series, rundir.join(rundir.plots_dir(workdir),
                                         "population.png"),
                     title="population (eval loss)")
  return table, png
