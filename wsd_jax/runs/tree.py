"""The run tree: a main run, its branches, their branches, ... as a table and
as curves (arrays for ``wsd_jax.plots``; this module draws nothing)."""

from __future__ import annotations

import numpy as np

from wsd_jax.runs.run import Run


def format_tree(root: Run) -> str:
  """A text table of the tree, one line per run."""
  lines = [f"{'run':40s} {'fork':>7s} {'steps':>7s} {'eval_loss':>10s}  "
           "schedule"]
  for depth, run in root.walk():
    label = "  " * depth + ("└ " if depth else "") + run.name
    fork = "" if run.fork_step is None else str(run.fork_step)
    loss = "" if run.final_eval is None else f"{run.final_eval:.5f}"
    extra = "".join(f"; WSD-S resumed from {r['branch']} at {r['step']}"
                    for r in run.resumes)
    if run.method:
      extra += f"; {run.method}"
    lines.append(f"{label:40s} {fork:>7s} {run.last_step:>7d} {loss:>10s}  "
                 f"{run.describe()}{extra}")
  return "\n".join(lines)


def tree_curves(root: Run) -> list[tuple[str, np.ndarray, np.ndarray]]:
  """``(name, steps, eval loss)`` of every run (train loss if it has no
  evaluation); a branch's line starts at its parent's last point up to the
  fork step, so it visibly leaves its parent."""
  series, parents = [], {}
  for depth, run in root.walk():
    parents[depth] = run
    key = "eval_loss" if run.eval_curve()[0].size else "loss"
    x, y = run.column(key)
    if depth and run.fork_step is not None:
      px, py = parents[depth - 1].column(key)
      before = px <= run.fork_step
      if before.any():
        x = np.r_[px[before][-1:], x]
        y = np.r_[py[before][-1:], y]
    if x.size:
      series.append((run.name, x, y))
  return series
