"""``Run``: the one reader of a run directory.

Laws, studies, plots and ``experiments.runs`` read runs through it: config,
lineage, the metrics table, the eval curve, the effective schedule, the LR of
every update, checkpoint steps and branches. It only reads (a read-only
directory works).

The step convention: the row of ``metrics.jsonl`` for step ``s`` is logged
after ``s`` updates; its ``lr`` is the LR the ``s``-th update used, i.e.
``schedule(s - 1)`` (optax's ``count`` is 0-based). ``Run.lrs()`` gives
``schedule(t)`` for ``t = 0, 1, ...``: the LR of the update that starts at
step ``t``.

``per_step.jsonl`` (written by the trainer at every step, not only log steps)
holds ``step``, ``lr`` (the LR the update used: the schedule's, or an
adaptive optimizer's realised one), ``grad_norm`` and ``grad_l1`` of every
update; ``Run.per_step(key)[t]`` is the value of the update that starts at
step ``t``.
"""

from __future__ import annotations

import functools
import os
import posixpath
from typing import Iterator

import numpy as np

from wsd_jax import schedules
from wsd_jax.runs import rundir, spec

PER_STEP = "per_step.jsonl"


class Run:
  """A run directory, read lazily; ``Run(path)`` fails clearly if there is
  no run there."""

  def __init__(self, workdir: str):
    self.workdir = str(workdir)
    self.lineage = rundir.read_run(self.workdir)

  def __repr__(self) -> str:
    return f"Run({self.workdir!r})"

  @property
  def name(self) -> str:
    return str(self.lineage.get("name") or rundir.name_of(self.workdir))

  @property
  def fork_step(self) -> int | None:
    return self.lineage.get("fork_step")

  @property
  def resumes(self) -> list[dict]:
    """WSD-S events: ``{"branch", "branch_step", "step"}``."""
    return list(self.lineage.get("resumes", []))

  @property
  def data_info(self) -> dict:
    """Facts about the data (e.g. ``optimal_loss`` of the bigram corpus)."""
    return dict(self.lineage.get("data", {}))

  @functools.cached_property
  def config(self) -> dict:
    return rundir.read_json(rundir.config_path(self.workdir))

  @functools.cached_property
  def schedule(self) -> schedules.Schedule:
    """The effective schedule: the LR of every update this run's state has
    seen, its parent's prefix and WSD-S decays included."""
    return schedules.from_config(self.lineage["schedule"])

  @functools.cached_property
  def metrics(self) -> list[dict]:
    """The rows of ``metrics.jsonl`` (damaged lines skipped with a warning),
    one per step: rows of the same step are merged, later values winning."""
    by_step: dict[int, dict] = {}
    for row in rundir.read_metrics(self.workdir):
      by_step[row["step"]] = {**by_step.get(row["step"], {}), **row}
    return [by_step[s] for s in sorted(by_step)]

  def column(self, key: str, min_step: int = 0
             ) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of the rows that have a finite ``key``."""
    rows = [r for r in self.metrics if r["step"] >= min_step
            and isinstance(r.get(key), (int, float))
            and np.isfinite(r[key])]
    return (np.asarray([r["step"] for r in rows], np.int64),
            np.asarray([r[key] for r in rows], np.float64))

  def eval_curve(self, metric: str = "eval_loss", min_step: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, losses)`` of every evaluation."""
    return self.column(metric, min_step)

  def eval_at(self, step: int, metric: str = "eval_loss") -> float:
    """The evaluation at ``step``; a clear error if there is none."""
    steps, values = self.eval_curve(metric)
    hit = np.flatnonzero(steps == step)
    if not hit.size:
      raise ValueError(f"{self.workdir} has no {metric} at step {step} "
                       f"(evaluated at {steps.tolist()[-8:]}...)")
    return float(values[hit[-1]])

  def lrs(self, num_steps: int | None = None) -> np.ndarray:
    """``schedule(t)`` for ``t < num_steps`` (default: through the last
    logged step), float64: the LR of the update that starts at step ``t``."""
    n = self.last_step + 1 if num_steps is None else int(num_steps)
    return schedules.values(self.schedule, n).astype(np.float64)

  def per_step(self, key: str) -> np.ndarray:
    """``values[t]``: ``key`` (``lr``, ``grad_norm``, ``grad_l1``) of the
    update that starts at step ``t``, for every step through the last one
    logged, float64. A branch's steps before its fork come from its parent.

    Raises:
      ValueError: if a step is missing (a run trained before per-step
        logging, or a gap).
    """
    by_step: dict[int, float] = {}
    for row in rundir.read_metrics(self.workdir, PER_STEP):
      if row.get(key) is not None:
        by_step[int(row["step"])] = float(row[key])
    first = min(by_step, default=self.last_step + 1)
    prefix = np.zeros(0)
    if first > 1 and self.lineage.get("parent") and self.fork_step:
      parent = Run(_relative(self.workdir, self.lineage["parent"]))
      prefix = parent.per_step(key)[:int(self.fork_step)]
    steps = np.arange(len(prefix) + 1, max(by_step, default=0) + 1)
    missing = [int(s) for s in steps if s not in by_step]
    if missing or (not len(prefix) and not by_step):
      raise ValueError(
          f"{self.workdir}/{PER_STEP} lacks {key!r} for step(s) "
          f"{missing[:5] or 'all'} (runs trained before per-step logging "
          "have none)")
    return np.concatenate([prefix, [by_step[int(s)] for s in steps]])

  @property
  def last_step(self) -> int:
    return self.metrics[-1]["step"] if self.metrics else int(
        self.fork_step or 0)

  @property
  def final_eval(self) -> float | None:
    _, values = self.eval_curve()
    return float(values[-1]) if values.size else None

  def checkpoint_steps(self) -> list[int]:
    return spec.checkpoint_steps(self.workdir)

  def branches(self) -> list["Run"]:
    return [Run(rundir.branch_dir(self.workdir, n))
            for n in rundir.branches(self.workdir)]

  def branch(self, name: str) -> "Run":
    return Run(rundir.branch_dir(self.workdir, name))

  def walk(self, depth: int = 0) -> Iterator[tuple[int, "Run"]]:
    """``(depth, run)`` for this run and every branch below, parents first."""
    yield depth, self
    for b in self.branches():
      yield from b.walk(depth + 1)

  @property
  def method(self) -> str:
    """The LR method when it is not the schedule alone: a controller's
    (``run.json``'s ``method``, e.g. ``autolrs``), a refined schedule's
    source, or an adaptive optimizer (``adam_hd``, ``schedule_free_adamw``,
    ...); ``""`` for a plain scheduled optimizer."""
    if self.lineage.get("method"):
      return str(self.lineage["method"])
    if self.lineage.get("refined_from"):
      source = self.lineage["refined_from"].get("run", "")
      return f"refined from {rundir.name_of(source)}"
    opt = dict(self.config.get("optimizer", {}))
    name = str(opt.get("name", ""))
    if name.endswith(("_hd",)):
      return f"{name}(hypergrad_lr={opt.get('hypergrad_lr')})"
    if name.startswith("contrib."):
      return name.removeprefix("contrib.")
    return ""

  def describe(self) -> str:
    """One line: what this run added to its parent's schedule."""
    return describe_schedule(self.lineage["schedule"])


def _relative(base: str, path: str) -> str:
  """``path`` (relative to the directory ``base``, or absolute), normalised;
  works for URLs."""
  if rundir.is_url(base):
    scheme, rest = base.split("://", 1)
    return f"{scheme}://{posixpath.normpath(posixpath.join(rest, path))}"
  return os.path.normpath(os.path.join(base, path))


def describe_schedule(schedule: dict) -> str:
  """A one-line description of a schedule config."""
  name, kw = schedule["name"], schedule.get("kwargs", {})
  if name == "branch":
    return (f"{kw['decay_shape']} decay {kw['decay_steps']} steps "
            f"to {kw['final_value']:g}")
  if name == "splice":
    return f"{describe_schedule(kw['second'])} (after step {kw['at_step']})"
  shown = {k: v for k, v in kw.items() if not isinstance(v, dict)}
  return f"{name}({', '.join(f'{k}={v}' for k, v in shown.items())})"
