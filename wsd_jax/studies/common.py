"""What the studies share: training a stage of run specs once; seed stats."""

from __future__ import annotations

import signal
import time
from typing import Sequence

import numpy as np

from wsd_jax import runs, train
from wsd_jax.runs import rundir


def finished(workdir: str, steps: int) -> bool:
  """Whether the run in ``workdir`` ends with a checkpoint at ``steps``."""
  if not rundir.is_run(workdir):
    return False
  return max(runs.Run(workdir).checkpoint_steps(), default=-1) == int(steps)


def branch_spec(workdir: str, from_step: int, decay_steps: int,
                decay_shape: str, final_value: float, name: str
                ) -> runs.RunSpec | None:
  """``runs.branch_spec``, or None if that branch has finished (laying it
  out again would compare its schedules, which costs seconds)."""
  if finished(rundir.branch_dir(workdir, name), from_step + decay_steps):
    return None
  return runs.branch_spec(workdir, from_step, decay_steps, decay_shape,
                          final_value, name)


def train_stage(tag: str, label: str,
                specs: Sequence[runs.RunSpec | None]) -> int:
  """Trains the unfinished ``specs`` (``train.train_specs`` vmaps runs of
  equal shape as one program) and prints one progress line.

  Finished runs (and None: a branch ``branch_spec`` found finished) are
  skipped without building anything, so rerunning a study only redoes its
  analysis. A signal that stops training (Ctrl-C, SIGTERM: the runs save)
  ends the study with exit status 128 + the signal's number. Returns the
  number of runs trained.
  """
  todo = [s for s in specs if s is not None and
          not finished(s.workdir, s.config.train.steps)]
  if not todo:
    print(f"[{tag}] {label}: {len(specs)} run(s) already done", flush=True)
    return 0
  start = time.perf_counter()
  summaries = train.train_specs(todo)
  stopped = {r.get("stopped_by") for r in summaries} - {None}
  if stopped:  # Ctrl-C / SIGTERM: the runs saved; analysing now would fail
    name = stopped.pop()
    print(f"[{tag}] {label}: stopped by {name}: saved; rerun the same "
          "command to resume", flush=True)
    raise SystemExit(128 + int(getattr(signal, name)))
  steps = sum(int(s.config.train.steps) - (s.start.step if s.start else 0)
              for s in todo)
  print(f"[{tag}] {label}: {len(todo)} run(s), {steps} steps in "
        f"{time.perf_counter() - start:.1f} s", flush=True)
  return len(todo)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample std (0 for one value) over seeds."""
  v = np.asarray(values, np.float64)
  return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def fmt(mean: float, std: float | None = None, digits: int = 4) -> str:
  """``mean`` or ``mean ± std`` with ``digits`` decimals."""
  return (f"{mean:.{digits}f}" if std is None else
          f"{mean:.{digits}f} ± {std:.{digits}f}")
