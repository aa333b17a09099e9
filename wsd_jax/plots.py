"""Matplotlib figures. Everything here reads numbers and writes a PNG file."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save(fig, path: str) -> str:
  """Writes a figure as PNG (creating its folder) and closes it."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def schedule_grid(schedules: Mapping[str, object], total_steps: int,
                  path: str, columns: int = 4) -> str:
  """One panel per schedule, LR vs step over ``[0, total_steps]``."""
  steps = np.arange(total_steps + 1)
  rows = -(-len(schedules) // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows),
                           sharex=True, squeeze=False)
  for ax, (title, sched) in zip(axes.flat, schedules.items()):
    ax.plot(steps, np.asarray(sched(steps)), lw=1.5)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
  for ax in list(axes.flat)[len(schedules):]:
    ax.set_visible(False)
  for ax in axes[-1]:
    ax.set_xlabel("step")
  for ax in axes[:, 0]:
    ax.set_ylabel("learning rate")
  return save(fig, path)


def curves(series: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str, *,
           xlabel: str = "step", ylabel: str = "loss", title: str = "",
           logy: bool = False, hline: float | None = None,
           hline_label: str = "") -> str:
  """Lines ``(label, x, y)`` on one axis (loss curves, LR curves, ...)."""
  fig, ax = plt.subplots(figsize=(7, 4.2))
  for label, x, y in series:
    ax.plot(x, y, label=label, lw=1.3)
  if hline is not None:
    ax.axhline(hline, color="k", ls="--", lw=1, label=hline_label)
  if logy:
    ax.set_yscale("log")
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3)
  if len(series) > 1 or hline is not None:
    ax.legend(fontsize=8)
  return save(fig, path)


def run_curves(workdir: str) -> list[str]:
  """``plots/loss.png`` (train and eval loss) and ``plots/lr.png`` of a run."""
  from wsd_jax.runs import rundir
  rows = rundir.read_metrics(workdir)
  if not rows:
    return []
  step = np.array([r["step"] for r in rows])
  series = [("train loss", step, np.array([r["loss"] for r in rows]))]
  ev = [r for r in rows if "eval_loss" in r]
  if ev:
    series.append(("eval loss", np.array([r["step"] for r in ev]),
                   np.array([r["eval_loss"] for r in ev])))
  out = os.path.join(workdir, "plots")
  optimal = rundir.read_run(workdir).get("data", {}).get("optimal_loss")
  return [
      curves(series, os.path.join(out, "loss.png"), title="loss",
             hline=optimal, hline_label="optimal loss"),
      curves([("lr", step, np.array([r["lr"] for r in rows]))],
             os.path.join(out, "lr.png"), ylabel="learning rate"),
  ]
