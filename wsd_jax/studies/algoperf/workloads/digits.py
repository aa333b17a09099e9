"""An MLP on scikit-learn's bundled digits, scored by validation error rate.

The trainer evaluates cross-entropy; the error rate of each evaluation step
is computed here from the checkpoint kept at that step (the workload keeps
one per evaluation), on the fixed held-out images.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from flax import nnx

from wsd_jax import runs
from wsd_jax.data import digits
from wsd_jax.runs import rundir
from wsd_jax.studies.algoperf.workloads.base import Workload
from wsd_jax.train import base_config, load_state
from wsd_jax.train.evaluation import eval_params


def _config() -> ml_collections.ConfigDict:
  c = base_config()
  c.model = ml_collections.ConfigDict(dict(
      name="mlp_classifier", hidden_dim=128, num_layers=1,
      num_classes=digits.NUM_CLASSES))
  c.data = ml_collections.ConfigDict(dict(
      name="digits", seq_len=digits.NUM_PIXELS, batch_size=64,
      eval_batch_size=digits.EVAL_SIZE, eval_batches=1))
  c.optimizer.update(name="adamw", b1=0.9, b2=0.95, weight_decay=0.0)
  return c


def error_rate(run_dir: str, steps) -> np.ndarray:
  """The held-out error rate of the checkpoint at each of ``steps``."""
  pixels, labels = digits.arrays("eval")
  s, _ = load_state(run_dir, int(steps[-1]))
  ckpt = runs.Checkpointer(rundir.checkpoint_dir(run_dir), read_only=True)
  predict = jax.jit(lambda p, x: nnx.merge(s.graphdef, p)(x)[:, 0].argmax(-1))
  out = []
  for step in steps:
    state = ckpt.restore(int(step), s.state, None)
    pred = np.asarray(predict(eval_params(state), pixels))
    out.append(float(np.mean(pred != labels)))
  return np.asarray(out)


WORKLOAD = Workload(
    name="digits", metric="validation/error_rate", step_hint=400,
    max_steps=400, eval_every=20, train_config=_config, error_rate=error_rate,
    description="MLP (128 hidden) on sklearn digits, 360 held-out images")
