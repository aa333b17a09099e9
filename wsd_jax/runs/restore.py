"""Load a run's saved state (for analysis: interpolation, comparisons)."""

from __future__ import annotations

import ml_collections

from wsd_jax.runs import rundir
from wsd_jax.runs.checkpoint import Checkpointer


def load_state(workdir: str, step: int | None = None):
  """``(setup, state)`` of ``workdir`` at ``step`` (default: the latest).

  ``setup`` is the run's ``train.loop.Setup`` (model graph, data, schedule).
  """
  from wsd_jax.train.loop import setup  # avoid an import cycle
  config = ml_collections.ConfigDict(rundir.read_config(workdir))
  config.train.progress = False
  s = setup(config)
  ckpt = Checkpointer(rundir.checkpoint_dir(workdir), read_only=True)
  steps = ckpt.steps()
  step = steps[-1] if step is None and steps else step
  if step not in steps:
    raise ValueError(f"no checkpoint at step {step} in {workdir}; available "
                     f"steps: {steps}")
  return s, ckpt.restore(step, s.state, None)
