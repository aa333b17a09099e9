"""Curve.from_run of an adaptive (hypergradient) run: the logged LRs."""

import numpy as np

from tests.tiny import tiny_config
from wsd_jax import runs
from wsd_jax.laws import Curve
from wsd_jax.train import train_and_evaluate


def test_curve_from_run_uses_logged_lr_of_adaptive_runs(tmp_path):
  c = tiny_config({"name": "constant", "value": 1.0})
  c.optimizer.update(name="adam_hd", learning_rate=0.05, hypergrad_lr=1e-3)
  train_and_evaluate(c, str(tmp_path))
  curve = Curve.from_run(str(tmp_path))
  logged = runs.Run(str(tmp_path)).per_step("lr")
  assert len(curve.lrs) == 41
  np.testing.assert_allclose(curve.lrs[:40], logged)
  assert curve.lrs[40] == logged[-1]
  assert not np.allclose(curve.lrs[:40], 1.0)   # not the constant schedule


def test_curve_from_run_of_a_fixed_schedule_is_the_schedule(tmp_path):
  train_and_evaluate(tiny_config(), str(tmp_path))
  curve = Curve.from_run(str(tmp_path))
  np.testing.assert_array_equal(curve.lrs, runs.Run(str(tmp_path)).lrs(41))
