"""What a workload is: a small declarative object (AlgoPerf's model).

A workload names its data and model (a trainer config), its validation
metric and direction, ``step_hint`` (the steps a good schedule needs; the
target is set with a cosine over ``0.75 * step_hint``), ``max_steps`` (every
trial trains this long), a fixed evaluation cadence and a fixed evaluation
set (the data source's held-out split).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import ml_collections

METRICS = ("validation/loss", "validation/error_rate")


@dataclasses.dataclass(frozen=True)
class Workload:
  """One benchmark workload.

  Attributes:
    name: the workload's name (AlgoPerf's directory is ``{name}_jax``).
    metric: ``validation/loss`` (the trainer's mean eval cross-entropy) or
      ``validation/error_rate`` (computed by ``error_rate``).
    step_hint: the target is set by a cosine over ``0.75 * step_hint``
      (``horizon``).
    max_steps: the budget: steps every trial trains, which its schedule
      spans (``>= step_hint``).
    eval_every: evaluation cadence in steps.
    train_config: builds the trainer config (data, model, optimizer
      defaults); the benchmark sets schedule, steps and cadence.
    corpus: whether the data is the stdlib docstring corpus (written into
      the benchmark directory, its bytes and hash recorded).
    error_rate: for ``validation/error_rate``: ``run_dir, steps -> rates``.
    description: one line for the report.
  """
  name: str
  metric: str
  step_hint: int
  max_steps: int
  eval_every: int
  train_config: Callable[[], ml_collections.ConfigDict]
  corpus: bool = False
  corpus_max_bytes: int | None = None
  error_rate: Callable | None = None
  description: str = ""

  def __post_init__(self):
    if self.metric not in METRICS:
      raise ValueError(f"workload {self.name}: metric {self.metric!r} is not "
                       f"one of {METRICS}")
    if self.max_steps < self.step_hint:
      raise ValueError(f"workload {self.name}: max_steps {self.max_steps} < "
                       f"step_hint {self.step_hint}")
    if self.max_steps % self.eval_every:
      raise ValueError(f"workload {self.name}: eval_every {self.eval_every} "
                       f"does not divide max_steps {self.max_steps}")
    if self.metric == "validation/error_rate" and self.error_rate is None:
      raise ValueError(f"workload {self.name}: an error-rate metric needs "
                       "error_rate")

  @property
  def minimize(self) -> bool:
    """Both metrics are minimized."""
    return True

  @property
  def horizon(self) -> int:
    """The steps target setting trains: ``round(0.75 * step_hint)``."""
    return round(0.75 * self.step_hint)

  @property
  def eval_steps(self) -> tuple[int, ...]:
    return tuple(range(self.eval_every, self.max_steps + 1, self.eval_every))

  def config(self, steps: int | None = None) -> ml_collections.ConfigDict:
    """The trainer config of a trial (schedule still to be set): ``steps``
    (default ``max_steps``), evaluation every ``eval_every`` steps with the
    training clock logged at each, non-finite steps skipped, a checkpoint at the end only (at every
    evaluation when the metric is an error rate, which is computed from
    them)."""
    steps = int(steps or self.max_steps)
    c = self.train_config()
    keep = self.eval_steps if self.error_rate else ()
    c.train.update(steps=steps, eval_every=self.eval_every,
                   log_every=self.eval_every, checkpoint_every=steps,
                   keep_last=1, keep_every=0, keep_steps=keep,
                   progress=False, plots=False, async_checkpoint=False,
                   skip_nonfinite=True)  # a diverging trial must not stop
                                         # its population
    if keep:
      c.train.checkpoint_every = self.eval_every
    return c
