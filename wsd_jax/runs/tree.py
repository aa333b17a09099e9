"""The run tree: a main run, its branches, their branches, ..."""

from __future__ import annotations

import os
from typing import Iterator

from wsd_jax.runs import rundir


def _describe(schedule: dict) -> str:
  """A one-line description of the schedule a run added to its parent's."""
  name, kw = schedule["name"], schedule.get("kwargs", {})
  if name == "branch":
    return (f"{kw['decay_shape']} decay {kw['decay_steps']} steps "
            f"to {kw['final_value']:g}")
  if name == "splice":
    return f"{_describe(kw['second'])} (after step {kw['at_step']})"
  shown = {k: v for k, v in kw.items() if not isinstance(v, dict)}
  return f"{name}({', '.join(f'{k}={v}' for k, v in shown.items())})"


def walk(workdir: str, depth: int = 0) -> Iterator[dict]:
  """Each run of the tree rooted at ``workdir``, parents before children."""
  run = rundir.read_run(workdir)
  rows = rundir.read_metrics(workdir)
  evals = [r for r in rows if "eval_loss" in r]
  yield {
      "workdir": workdir, "depth": depth, "name": run["name"],
      "fork_step": run.get("fork_step"), "schedule": _describe(run["schedule"]),
      "resumes": run.get("resumes", []),
      "last_step": rows[-1]["step"] if rows else 0,
      "eval_loss": evals[-1]["eval_loss"] if evals else None,
      "metrics": rows,
  }
  for name in rundir.branches(workdir):
    yield from walk(rundir.branch_dir(workdir, name), depth + 1)


def format_tree(nodes: list[dict]) -> str:
  """A text table of the tree, one line per run."""
  lines = [f"{'run':40s} {'fork':>7s} {'steps':>7s} {'eval_loss':>10s}  "
           "schedule"]
  for n in nodes:
    label = ("  " * n["depth"] + ("└ " if n["depth"] else "") + n["name"])
    fork = "" if n["fork_step"] is None else str(n["fork_step"])
    loss = "" if n["eval_loss"] is None else f"{n['eval_loss']:.5f}"
    extra = "".join(f"; WSD-S resumed from {r['branch']} at {r['step']}"
                    for r in n["resumes"])
    lines.append(f"{label:40s} {fork:>7s} {n['last_step']:>7d} {loss:>10s}  "
                 f"{n['schedule']}{extra}")
  return "\n".join(lines)


def plot_tree(nodes: list[dict], path: str) -> str:
  """Every run's eval loss (train loss if none) against step, on one axis;
  a branch's line starts at its parent's last point up to the fork step."""
  import numpy as np
  from wsd_jax import plots
  series, parent_at_depth = [], {}
  for n in nodes:
    parent_at_depth[n["depth"]] = n
    rows = [r for r in n["metrics"] if "eval_loss" in r] or n["metrics"]
    key = "eval_loss" if rows and "eval_loss" in rows[0] else "loss"
    if n["depth"] and n["fork_step"] is not None:
      before = [r for r in parent_at_depth[n["depth"] - 1]["metrics"]
                if r["step"] <= n["fork_step"] and key in r]
      rows = before[-1:] + rows
    if rows:
      series.append((n["name"], np.array([r["step"] for r in rows]),
                     np.array([r[key] for r in rows])))
  optimal = rundir.read_run(nodes[0]["workdir"]).get("data", {}).get(
      "optimal_loss")
  return plots.curves(series, path, title="runs (eval loss)", ylabel="loss",
                      hline=optimal, hline_label="optimal loss")


def summarize(workdir: str) -> tuple[str, str]:
  """Prints nothing; returns the table and the path of ``plots/runs.png``."""
  nodes = list(walk(workdir))
  return format_tree(nodes), plot_tree(
      nodes, os.path.join(workdir, "plots", "runs.png"))
