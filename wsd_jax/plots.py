"""Matplotlib figures. Everything here takes arrays and writes a PNG file.

Importing this module leaves matplotlib's backend alone (matplotlib picks a
non-interactive one on a machine without a display; Colab keeps its own).
Every figure uses one colour per method (``color``), so WSD is the same
colour in every panel and every study.
"""

from __future__ import annotations

import io
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from etils import epath

# One colour per method, everywhere.
METHOD_COLORS = {
    "wsd": "C0", "wsd_s": "C1", "cyclic_cosine": "C2", "cosine": "C3",
    "constant": "C7", "linear": "C4", "1-sqrt": "C5", "rex": "C6",
    "uba": "C8", "power": "C9",
    # adaptive methods (wsd_jax.adaptive): outside the tab10 cycle
    "adam_hd": "darkred", "sgd_hd": "firebrick", "schedule_free": "black",
    "refined": "teal", "autolrs": "magenta", "autolrs_grid": "orchid",
}
METHOD_LABELS = {"wsd": "WSD", "wsd_s": "WSD-S",
                 "cyclic_cosine": "cyclic cosine", "cosine": "cosine"}


def color(method: str) -> str:
  """The colour of ``method`` (a key of ``METHOD_COLORS``), grey otherwise."""
  return METHOD_COLORS.get(method, "0.4")


def palette(n: int) -> list:
  """``n`` distinct colours: the tab10 cycle up to 10, tab20 up to 20, then
  evenly spaced colours of a perceptually uniform map."""
  if n <= 10:
    return [f"C{i}" for i in range(n)]
  if n <= 20:
    return list(plt.get_cmap("tab20")(np.arange(n)))
  return list(plt.get_cmap("viridis")(np.linspace(0, 0.95, n)))


def save(fig, path: str) -> str:
  """Writes a figure as PNG (creating its folder; ``gs://`` works) and
  closes it."""
  p = epath.Path(path)
  p.parent.mkdir(parents=True, exist_ok=True)
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110)
  plt.close(fig)
  p.write_bytes(buf.getvalue())
  return str(path)


def show_png(path: str) -> None:
  """Displays a PNG the library wrote (in a notebook: inline; in a script
  under a non-interactive backend: nothing)."""
  with epath.Path(path).open("rb") as f:
    image = plt.imread(io.BytesIO(f.read()), format="png")
  plt.figure(figsize=(image.shape[1] / 100, image.shape[0] / 100))
  plt.imshow(image)
  plt.axis("off")
  plt.show()
  plt.close("all")


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
  """Lines ``(label, x, y)`` on one axis (loss curves, LR curves, ...).

  Series get distinct colours (``palette``); a series of a few points is
  drawn with markers so that it stays visible on top of another; with many
  series the legend goes beside the axes in columns.
  """
  fig, ax = plt.subplots(figsize=(7 if len(series) <= 8 else 9, 4.2))
  styles = ("-", "--", "-.", ":")
  markers = ("o", "s", "^", "D", "v", "P")  # hollow, so overlaps stay visible
  for k, ((label, x, y), c) in enumerate(zip(series, palette(len(series)))):
    ax.plot(x, y, styles[(k // 10) % 4] if len(series) > 10 else "-",
            label=label, lw=1.3, color=c,
            marker=markers[k % len(markers)] if len(x) <= 5 else None,
            ms=7 - k % 3, fillstyle="none")
  if hline is not None:
    ax.axhline(hline, color="k", ls="--", lw=1, label=hline_label)
  if logy:
    ax.set_yscale("log")
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3)
  if len(series) > 8:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1),
              ncol=1 + len(series) // 20)
  elif len(series) > 1 or hline is not None:
    ax.legend(fontsize=8)
  return save(fig, path)


def run_curves(loss: tuple[np.ndarray, np.ndarray],
               eval_loss: tuple[np.ndarray, np.ndarray],
               lrs: tuple[np.ndarray, np.ndarray], out_dir: str,
               optimal_loss: float | None = None) -> list[str]:
  """``out_dir/loss.png`` (train and eval loss vs step) and
  ``out_dir/lr.png`` (the LR of the update at each step: ``(t, schedule(t))``
  as ``Run.lrs`` gives it)."""
  series = [("train loss", *loss)]
  if len(eval_loss[0]):
    series.append(("eval loss", *eval_loss))
  return [
      curves(series, f"{out_dir}/loss.png", title="loss", hline=optimal_loss,
             hline_label="optimal loss"),
      curves([("lr", *lrs)], f"{out_dir}/lr.png", ylabel="learning rate",
             xlabel="step (update t uses lr(t))"),
  ]
