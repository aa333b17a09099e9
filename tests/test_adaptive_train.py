"""Adaptive methods in the trainer: HD optimizers by config name with the
realised LR logged, per-step norms (exact on resume), refined runs,
schedule-free evaluation at the average."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from tests.tiny import tiny_config
from wsd_jax import adaptive, runs, schedules
from wsd_jax.adaptive import refine_run
from wsd_jax.runs import rundir
from wsd_jax.train import evaluation, train_and_evaluate
from wsd_jax.train.setup import load_state

PER_STEP = runs.run.PER_STEP


def read(workdir, name):
  return [json.loads(line) for line in open(os.path.join(workdir, name))]


def hd_config(schedule=None, **train):
  c = tiny_config(schedule or {"name": "constant", "value": 1.0}, **train)
  c.optimizer.update(name="adam_hd", learning_rate=0.05, hypergrad_lr=1e-3)
  return c


@pytest.fixture(scope="module")
def hd_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("hd"))
  return workdir, train_and_evaluate(hd_config(), workdir)


@pytest.mark.slow
def test_adam_hd_from_config_logs_realised_lr(hd_run):
  workdir, summary = hd_run
  rows = read(workdir, rundir.METRICS)
  per_step = {r["step"]: r for r in read(workdir, PER_STEP)}
  assert sorted(per_step) == list(range(1, 41))
  lrs = np.array([per_step[s]["lr"] for s in range(1, 41)])
  assert lrs[0] == pytest.approx(0.05)          # no hypergradient at t = 1
  assert np.ptp(lrs) > 1e-3                     # the LR moved
  for r in rows:                                # metrics.jsonl logs the same
    assert r["lr"] == per_step[r["step"]]["lr"]
    assert r["grad_norm"] == per_step[r["step"]]["grad_norm"]
  state = summary["state"]
  assert float(adaptive.current_lr(state.opt_state)) == pytest.approx(
      lrs[-1], rel=1e-6)


def test_schedule_multiplies_the_adapted_lr(tmp_path):
  wsd = schedules.wsd(2.0, total_steps=40, decay_steps=10, warmup_steps=5)
  summary = train_and_evaluate(hd_config(wsd), str(tmp_path))
  per_step = read(str(tmp_path), PER_STEP)
  last = per_step[-2]   # step 39: the update at t = 38
  state_lr = float(adaptive.current_lr(summary["state"].opt_state))
  assert per_step[-1]["lr"] == pytest.approx(float(wsd(39)) * state_lr,
                                             rel=1e-5, abs=1e-9)
  assert last["lr"] > 0 and per_step[-1]["lr"] < last["lr"]
  assert per_step[0]["lr"] == 0.0 and per_step[3]["lr"] == pytest.approx(
      float(wsd(3)) * 0.05, rel=0.1)


def test_per_step_norms_every_step_and_exact_on_resume(hd_run, tmp_path):
  reference, _ = hd_run
  workdir = str(tmp_path / "resumed")
  shutil.copytree(reference, workdir)
  # a crash after step 40's rows but before its checkpoint, with rows after
  # step 20 damaged: the rerun resumes at 20 and rewrites them
  shutil.rmtree(os.path.join(workdir, "checkpoints", "40"))
  rows = read(workdir, PER_STEP)
  with open(os.path.join(workdir, PER_STEP), "w") as f:
    for r in rows:
      f.write(json.dumps(dict(r, grad_norm=9.0) if r["step"] > 20 else r)
              + "\n")
  train_and_evaluate(hd_config(), workdir)
  assert read(workdir, PER_STEP) == read(reference, PER_STEP)
  l1 = runs.Run(workdir).per_step("grad_l1")
  l2 = runs.Run(workdir).per_step("grad_norm")
  assert len(l1) == 40 and np.all(l1 >= l2) and np.all(l1 > 1.01 * l2)


def test_refined_run_from_a_run(hd_run, tmp_path):
  source, _ = hd_run
  norms = runs.Run(source).per_step("grad_l1")
  expected = adaptive.refined_values(norms, peak_value=0.02, norm="l1",
                                     smoothing=0.2)
  np.testing.assert_allclose(
      adaptive.refined_schedule_from_run(
          source, peak_value=0.02, norm="l1", smoothing=0.2).values,
      expected.astype(np.float32))
  workdir = str(tmp_path / "refined")
  config = refine_run.refine_config(source, norm="l1", smoothing=0.2,
                                    peak_value=0.02)
  config.optimizer = tiny_config().optimizer     # plain AdamW
  summary = train_and_evaluate(config, workdir)
  assert summary["step"] == 40
  logged = runs.Run(workdir).per_step("lr")
  np.testing.assert_allclose(logged, expected, rtol=1e-6, atol=1e-12)
  assert logged[-1] == 0.0


def test_refine_app_records_its_source(hd_run, tmp_path):
  source, _ = hd_run
  workdir = str(tmp_path / "r")
  refine_run.train_refined(source, workdir, norm="l2", smoothing=0.0,
                           peak_value=0.01, total_steps=20)
  run = runs.Run(workdir)
  assert run.lineage["refined_from"]["run"] == rundir.absolute(source)
  assert run.lineage["refined_from"]["norm"] == "l2"
  assert run.method == f"refined from {rundir.name_of(source)}"
  assert run.last_step == 20
  # the refined schedule, with Adam in place of the source's Adam-HD
  assert run.config["optimizer"]["name"] == "adam"
  assert run.per_step("lr").max() == pytest.approx(0.01, rel=1e-6)
  assert isinstance(run.schedule, schedules.Tabulated)
  assert float(np.max(run.schedule.values)) == pytest.approx(0.01)
  assert len(run.schedule.values) == 20 and run.schedule.values[-1] == 0


@pytest.mark.slow
def test_schedule_free_evaluates_at_the_average(tmp_path):
  c = tiny_config(eval_every=40)
  c.optimizer.name = "contrib.schedule_free_adamw"
  workdir = str(tmp_path)
  summary = train_and_evaluate(c, workdir)
  s, state = load_state(workdir)
  at_x = evaluation.evaluate(s, evaluation.eval_params(state))["eval_loss"]
  at_y = evaluation.evaluate(s, state.params)["eval_loss"]
  assert summary["eval_loss"] == pytest.approx(at_x, rel=1e-6)
  assert abs(at_x - at_y) > 1e-4
