"""Trains a run under the refined schedule of an earlier run
(``python -m experiments.refine``). Kept out of ``wsd_jax.adaptive``'s
imports: it drives the trainer, which imports the adaptive optimizers."""

from __future__ import annotations

import ml_collections
import numpy as np

from wsd_jax import runs, schedules
from wsd_jax.adaptive.refined import NORM_KEYS, refined_schedule
from wsd_jax.runs import rundir

# The optimizer a refined run of a hypergradient run trains with.
PLAIN = {"sgd_hd": "sgd", "adam_hd": "adam"}


def refine_config(source: str, *, norm: str = "l2", smoothing: float = 0.1,
                  peak_value: float | None = None,
                  total_steps: int | None = None
                  ) -> ml_collections.ConfigDict:
  """``source``'s config with its schedule replaced by the refined one (and
  a hypergradient optimizer by its plain counterpart, :data:`PLAIN`).

  Args:
    source: the run whose per-step norms are refined.
    norm, smoothing: as in ``refined_schedule``.
    peak_value: default: the largest LR ``source`` used (``per_step``'s
      ``lr``, the realised one for an adaptive optimizer).
    total_steps: the new run's length; default: ``source``'s.
  """
  run = runs.Run(source)
  if norm not in NORM_KEYS:
    raise ValueError(f"norm={norm!r} must be one of {sorted(NORM_KEYS)}")
  norms = run.per_step(NORM_KEYS[norm])
  if peak_value is None:
    peak_value = float(np.max(run.per_step("lr")))
  steps = int(total_steps or len(norms))
  schedule = refined_schedule(norms, peak_value=peak_value, total_steps=steps,
                              norm=norm, smoothing=smoothing)
  config = ml_collections.ConfigDict(run.config)
  config.schedule = ml_collections.ConfigDict(schedules.to_config(schedule))
  config.train.steps = steps
  if (plain := PLAIN.get(config.optimizer.name)) is not None:
    # a fixed schedule from a hypergradient run: its optimizer without the
    # adaptation (it would scale the refined LRs by its adapted LR)
    config.optimizer.update(name=plain, learning_rate=None,
                            hypergrad_lr=None)
  return config


def train_refined(source: str, workdir: str, **kwargs) -> dict:
  """Trains :func:`refine_config` in ``workdir`` (rerunning resumes) and
  records ``refined_from`` (the source path and the refinement's arguments)
  in its ``run.json``."""
  from wsd_jax import train  # the trainer imports wsd_jax.adaptive
  config = refine_config(source, **kwargs)
  summary = train.train_and_evaluate(config, workdir)
  lineage = rundir.read_run(workdir)
  lineage["refined_from"] = dict(
      {k: v for k, v in kwargs.items() if v is not None},
      run=rundir.absolute(source))
  rundir.write_json(rundir.run_path(workdir), lineage)
  return summary
