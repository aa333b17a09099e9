"""Adaptive runs as populations and branches."""

import json
import os

import numpy as np
import pytest

from tests.tiny import tiny_config
from wsd_jax import runs, schedules
from wsd_jax.runs import tree
from wsd_jax.train import branch, train_and_evaluate


def hd_config(value=1.0):
  c = tiny_config({"name": "constant", "value": value})
  c.optimizer.update(name="adam_hd", learning_rate=0.05, hypergrad_lr=1e-3)
  return c


@pytest.mark.slow
def test_hd_population_members_equal_their_own_runs(tmp_path):
  c = hd_config()
  c.population.grid = "value=1.0,0.5"
  out = train_and_evaluate(c, str(tmp_path / "pop"))
  alone = str(tmp_path / "alone")
  train_and_evaluate(hd_config(0.5), alone)
  member = out["members"][1]["workdir"]
  np.testing.assert_allclose(runs.Run(member).per_step("lr"),
                             runs.Run(alone).per_step("lr"), rtol=2e-5)
  first = runs.Run(out["members"][0]["workdir"]).per_step("lr")
  assert first[0] == pytest.approx(0.05)
  assert runs.Run(member).per_step("lr")[0] == pytest.approx(0.025)
  assert runs.Run(member).method == "adam_hd(hypergrad_lr=0.001)"
  assert "; adam_hd(hypergrad_lr=0.001)" in tree.format_tree(runs.Run(member))


@pytest.mark.slow
def test_branch_of_an_hd_run_decays_the_adapted_lr(tmp_path):
  main = str(tmp_path / "main")
  train_and_evaluate(hd_config(), main)
  out = branch(main, from_step=20, decay_steps=10, name="d10")
  b = runs.Run(out["workdir"])
  assert b.last_step == 30
  lrs = b.per_step("lr")
  main_lrs = runs.Run(main).per_step("lr")
  np.testing.assert_allclose(lrs[:20], main_lrs[:20])   # the parent's prefix
  # the realised LR is the decaying multiplier times the adapted LR
  multiplier = np.asarray(b.schedule(np.arange(20, 30)), np.float64)
  np.testing.assert_allclose(multiplier, 1 - np.arange(10) / 10, rtol=1e-6)
  adapted = lrs[20:] / multiplier
  assert np.all(np.abs(adapted / lrs[19] - 1) < 0.2)   # HD goes on slowly
  assert lrs[-1] < 0.15 * lrs[19]


@pytest.mark.slow
def test_branch_of_a_schedule_free_run(tmp_path):
  c = tiny_config()
  c.optimizer.name = "contrib.schedule_free_adamw"
  main = str(tmp_path / "main")
  train_and_evaluate(c, main)
  out = branch(main, from_step=20, decay_steps=10, name="d10")
  rows = [json.loads(line) for line in open(
      os.path.join(out["workdir"], "metrics.jsonl"))]
  assert rows[-1]["step"] == 30 and np.isfinite(rows[-1]["eval_loss"])
  assert isinstance(runs.Run(out["workdir"]).schedule, schedules.Schedule)
