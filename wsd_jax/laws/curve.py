"""Observed loss curves: the data a loss-curve law is fitted on.

Step convention (shared with the trainer, see DESIGN.md): the loss observed at
step ``s`` is measured after ``s`` optimizer updates, the ``i``-th of which
(1-based) used ``lrs[i - 1] = schedule(i - 1)``. So the loss at step ``s``
depends on ``lrs[0], ..., lrs[s - 1]``; in the papers' 1-based notation
``eta_tau = lrs[tau - 1]`` for ``tau = 1..s``.

Worked example: a two-stage run at LR 1.0 that drops to 0.25 from step 3
on, ``lrs = schedule(arange(6)) = [1, 1, 1, 0.25, 0.25, 0.25]``.

* The loss at step 3 has seen ``lrs[:3] = [1, 1, 1]``: ``S1 = 3``, no drop
  yet, so every law predicts it as if the LR had stayed at 1.
* The loss at step 4 has seen ``[1, 1, 1, 0.25]``: ``S1 = 3.25`` and one
  drop of 0.75, ``eta_4 = lrs[3] = 0.25`` (in ``S2`` of the annealing law,
  ``m_4 = 0.75``; in the multi-power law, the drop ``eta_3 - eta_4`` at
  ``k = 4`` with ``S_4(4) = 0.25``).
* A metrics row logged at step 4 carries ``lr = schedule(3) = 0.25``, the LR
  of the update that produced it.

``tests/test_laws.py::test_step_convention_worked_example`` checks these
numbers.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

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
    warmup_steps: the length of the run's warmup (``from_run`` reads it from
      the schedule); the laws' ``fit`` uses it unless told otherwise.
  """

  lrs: np.ndarray
  steps: np.ndarray
  losses: np.ndarray
  name: str = ""
  schedule_name: str = ""
  warmup_steps: int = 0

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
    if int(self.warmup_steps) != self.warmup_steps or self.warmup_steps < 0:
      raise ValueError(f"warmup_steps must be an integer >= 0; got "
                       f"{self.warmup_steps}")
    object.__setattr__(self, "warmup_steps", int(self.warmup_steps))
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
    its parent's prefix, a WSD-S run's its decays), or, when the run's LR
    was not a fixed schedule (an adaptive optimizer), are the LRs it logged
    at every step (``per_step.jsonl``).

    Args:
      workdir: the run directory.
      metric: the metrics.jsonl key to read as the loss.
      min_step: keep only losses observed at steps ``>= min_step`` (see
        ``observed_from``).

    Returns:
      The curve, named after ``run.json``'s ``name``, with the warmup of its
      schedule (``schedule_warmup``).
    """
    run = runs.Run(os.fspath(workdir))
    steps, losses = run.column(metric)
    if not steps.size:
      raise ValueError(f"no {metric!r} values in {workdir}/metrics.jsonl")
    curve = cls(_lrs(run, int(steps[-1]) + 1), steps, losses, name=run.name,
                schedule_name=str(run.lineage["schedule"].get("name", "")),
                warmup_steps=schedule_warmup(run.schedule))
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
                 name=self.name, schedule_name=self.schedule_name,
                 warmup_steps=self.warmup_steps)

  def observed_until(self, max_step: int) -> Curve:
    """This curve observed at steps ``<= max_step`` only (LRs cut after)."""
    keep = self.steps <= max_step
    if not keep.any():
      raise ValueError(f"{self.name or 'the curve'} has no observation at or "
                       f"before step {max_step}")
    last = int(self.steps[keep][-1])
    return Curve(self.lrs[:last + 1], self.steps[keep], self.losses[keep],
                 name=self.name, schedule_name=self.schedule_name,
                 warmup_steps=self.warmup_steps)


def _lrs(run: runs.Run, n: int) -> np.ndarray:
  """The LRs of a run's first ``n`` updates: its schedule's, unless the LR
  it logged at every step (``Run.per_step``) differs, as an adaptive
  optimizer's (hypergradient) does; then the logged ones."""
  lrs = run.lrs(n)
  try:
    logged = run.per_step("lr")
  except ValueError:  # a run from before per-step logging
    return lrs
  m = min(len(logged), n)
  if len(logged) < n - 1 or np.allclose(logged[:m], lrs[:m], rtol=1e-5,
                                        atol=1e-12):
    return lrs
  # The loss at step s depends on lrs[:s] only: lrs[n - 1], the LR of an
  # update not (yet) done, repeats the last logged one.
  return np.append(logged, logged[-1:])[:n]


def schedule_warmup(schedule: Any) -> int:
  """The warmup length of a schedule: its ``warmup_steps``, that of the run
  a branch or splice starts from, 0 for a schedule without warmup."""
  for attr in ("base", "first"):  # Branch, Splice: the warmup comes first
    if hasattr(schedule, attr):
      return schedule_warmup(getattr(schedule, attr))
  return int(getattr(schedule, "warmup_steps", 0) or 0)


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
