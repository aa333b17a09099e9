"""Observed loss curves: the data a loss-curve law is fitted on.

Step convention (shared with the trainer, see DESIGN.md): the loss observed at
step ``s`` is measured after ``s`` optimizer updates, the ``i``-th of which
(1-based) used ``lrs[i - 1] = schedule(i - 1)``. So the loss at step ``s``
depends on ``lrs[0], ..., lrs[s - 1]``; in the papers' 1-based notation
``eta_tau = lrs[tau - 1]`` for ``tau = 1..s``.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from wsd_jax import runs


@dataclasses.dataclass(frozen=True, eq=False)
class Curve:
  """One observed loss curve.

  Attributes:
    lrs: ``lrs[i]`` is the LR of step ``i`` (``schedule(i)``) for every step
      from 0 through the last observed one, so ``len(lrs) > max(steps)``.
    steps: observed steps, ``>= 1``, strictly increasing.
    losses: ``losses[j]`` is the (positive, finite) loss at ``steps[j]``.
    name: a label for tables and plots (the run name for ``from_run``).
    schedule_name: the schedule's registry name, when known.
  """

  lrs: np.ndarray
  steps: np.ndarray
  losses: np.ndarray
  name: str = ""
  schedule_name: str = ""

  def __post_init__(self):
    lrs = np.asarray(self.lrs, dtype=np.float64)
    steps = np.asarray(self.steps)
    losses = np.asarray(self.losses, dtype=np.float64)
    if lrs.ndim != 1 or steps.ndim != 1 or losses.ndim != 1:
      raise ValueError(
          f"lrs, steps and losses must be 1-D; got shapes {lrs.shape}, "
          f"{steps.shape}, {losses.shape}")
    if len(steps) != len(losses):
      raise ValueError(
          f"steps and losses have mismatched lengths: len(steps)={len(steps)}"
          f" != len(losses)={len(losses)}")
    if len(steps) == 0:
      raise ValueError("a Curve needs at least one observed step; got 0")
    if not np.all(np.isfinite(steps)) or np.any(steps != np.round(steps)):
      raise ValueError(f"steps must be integers; got {steps}")
    steps = steps.astype(np.int64)
    validate_lrs(lrs, steps)
    if np.any(np.diff(steps) <= 0):
      raise ValueError(f"steps must be strictly increasing; got {steps}")
    bad = ~np.isfinite(losses) | (losses <= 0)
    if np.any(bad):
      j = int(np.argmax(bad))
      raise ValueError(
          f"losses must be positive and finite; losses[{j}]={losses[j]} "
          f"at step {steps[j]}")
    object.__setattr__(self, "lrs", lrs)
    object.__setattr__(self, "steps", steps)
    object.__setattr__(self, "losses", losses)

  def __len__(self) -> int:
    return len(self.steps)

  @classmethod
  def from_run(cls, workdir: str | os.PathLike, metric: str = "eval_loss",
               min_step: int = 0) -> Curve:
    """Reads a run directory (DESIGN.md layout) into a Curve.

    Reads through ``wsd_jax.runs.Run``: rows without ``metric`` are
    skipped, a resumed run's repeated steps keep their last row, and the LRs
    are rebuilt from ``run.json``'s effective schedule (a branch's includes
    its parent's prefix, a WSD-S run's its decays).

    Args:
      workdir: the run directory.
      metric: the metrics.jsonl key to read as the loss.
      min_step: keep only losses observed at steps ``>= min_step`` (see
        ``observed_from``).

    Returns:
      The curve, named after ``run.json``'s ``name``.
    """
    run = runs.Run(os.fspath(workdir))
    steps, losses = run.column(metric)
    if not steps.size:
      raise ValueError(f"no {metric!r} values in {workdir}/metrics.jsonl")
    curve = cls(run.lrs(int(steps[-1]) + 1), steps, losses, name=run.name,
                schedule_name=str(run.lineage["schedule"].get("name", "")))
    return curve.observed_from(min_step) if min_step else curve

  def observed_from(self, min_step: int) -> Curve:
    """This curve observed at steps ``>= min_step`` only (all LRs kept).

    The laws are not meant for the first steps of training, where the loss
    falls by nats; a curve with no point that late keeps its last one.
    """
    keep = self.steps >= min_step
    if not keep.any():
      keep[-1] = True
    return Curve(self.lrs, self.steps[keep], self.losses[keep],
                 name=self.name, schedule_name=self.schedule_name)


def validate_lrs(lrs: np.ndarray, steps: np.ndarray) -> None:
  """Raises ValueError unless ``lrs`` is finite, >= 0 and covers ``steps``."""
  if lrs.ndim != 1:
    raise ValueError(f"lrs must be 1-D; got shape {lrs.shape}")
  bad = ~np.isfinite(lrs) | (lrs < 0)
  if np.any(bad):
    i = int(np.argmax(bad))
    raise ValueError(f"lrs must be finite and >= 0; lrs[{i}]={lrs[i]}")
  if len(steps) and np.min(steps) < 1:
    raise ValueError(f"steps must be >= 1; got step {np.min(steps)}")
  if len(steps) and np.max(steps) >= len(lrs):
    raise ValueError(
        f"step {np.max(steps)} is beyond the LR sequence: len(lrs)="
        f"{len(lrs)} must exceed the largest step")
