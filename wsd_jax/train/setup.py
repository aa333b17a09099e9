"""What a run builds from its config before the first step: mesh, data, model,
optimizer and initial state (nothing is compiled here)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from wsd_jax import data as data_lib
from wsd_jax import models, runs, schedules
from wsd_jax.runs import rundir
from wsd_jax.train import config as config_lib
from wsd_jax.train import sharding, state as state_lib
from wsd_jax.train.step import make_optimizer


@dataclasses.dataclass
class Setup:
  """Everything built from a config before the first step."""
  config: ml_collections.ConfigDict
  schedule: schedules.Schedule
  mesh: Any
  graphdef: Any
  state: state_lib.TrainState
  tx: Any
  train_ds: Any
  eval_ds: Any
  token_groups: np.ndarray | None  # group of each token id, if the data has
  data_info: dict                  # facts for run.json (optimal loss)


def setup(config: ml_collections.ConfigDict) -> Setup:
  """Validates the config and builds model, data, optimizer and state."""
  mesh = sharding.make_mesh(config.mesh)
  schedule = config_lib.validate(config, mesh=mesh,
                                 process_count=jax.process_count())
  kw = dict(seed=int(config.seed), process_index=jax.process_index(),
            process_count=jax.process_count())
  train_ds = data_lib.make_dataset(config.data, "train", **kw)
  eval_ds = data_lib.make_dataset(config.data, "eval", **kw)
  vocab = data_lib.vocab_size(config.data)
  model = models.build(config.model, vocab_size=vocab,
                       max_seq_len=int(config.data.seq_len),
                       rngs=nnx.Rngs(int(config.seed)))
  graphdef, params = nnx.split(model)
  tx = make_optimizer(config.optimizer)
  state = state_lib.create(params, tx, int(config.seed))
  state = jax.device_put(state, sharding.state_sharding(mesh, state))
  return Setup(config, schedule, mesh, graphdef, state, tx, train_ds, eval_ds,
               data_lib.token_groups(config.data),
               data_lib.data_info(config.data))


def load_state(workdir: str, step: int | None = None
               ) -> tuple[Setup, state_lib.TrainState]:
  """``(setup, state)`` of a run directory at ``step`` (default: the latest
  checkpoint), for analysis: interpolation, comparisons, sharpness."""
  config = ml_collections.ConfigDict(rundir.read_config(workdir))
  config.train.progress = False
  s = setup(config)
  ckpt = runs.Checkpointer(rundir.checkpoint_dir(workdir), read_only=True)
  steps = ckpt.steps()
  step = steps[-1] if step is None and steps else step
  if step not in steps:
    raise ValueError(f"no checkpoint at step {step} in {workdir}; available "
                     f"steps: {steps}")
  return s, ckpt.restore(step, s.state, None)
