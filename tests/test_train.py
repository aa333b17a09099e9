"""The training harness: run directories, convergence, determinism, sharding,
and the errors bad input must give before anything is compiled."""

import os
import subprocess
import sys
import textwrap
import time

import jax
import ml_collections
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import \
    EventAccumulator

from configs import bigram as bigram_config
from wsd_jax import schedules
from wsd_jax.runs import rundir
from wsd_jax.train import (NonFiniteLossError, setup,
                           tokens_seen, train_and_evaluate)
from wsd_jax.train.step import step_fn
from tiny import tiny_config

FIELDS = {"step", "tokens", "lr", "loss", "grad_norm", "step_time_s",
          "train_time_s"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


tiny = tiny_config


def metrics_without_time(workdir):
  return [{k: v for k, v in r.items() if not k.endswith("_time_s")}
          for r in rundir.read_metrics(workdir)]


def check_run_dir(workdir, steps, log_every, eval_every):
  for name in ("config.json", "run.json", "metrics.jsonl"):
    assert os.path.exists(os.path.join(workdir, name)), name
  rows = rundir.read_metrics(workdir)
  assert [r["step"] for r in rows] == list(range(log_every, steps + 1,
                                                 log_every))
  for r in rows:
    assert FIELDS <= set(r), r
    assert np.isfinite(r["loss"]) and r["lr"] >= 0 and r["grad_norm"] > 0
  assert [r["step"] for r in rows if "eval_loss" in r] == list(
      range(eval_every, steps + 1, eval_every))
  run = rundir.read_run(workdir)
  assert run["parent"] is None and run["fork_step"] is None
  sched = schedules.from_config(run["schedule"])
  np.testing.assert_allclose([r["lr"] for r in rows],
                             sched(np.array([r["step"] - 1 for r in rows])),
                             rtol=1e-6)
  assert os.listdir(os.path.join(workdir, "checkpoints"))
  ea = EventAccumulator(os.path.join(workdir, "events"))
  ea.Reload()
  assert "loss" in ea.Tags()["scalars"] and "eval_loss" in ea.Tags()["scalars"]
  assert [e.step for e in ea.Scalars("loss")] == [r["step"] for r in rows]
  return rows


@pytest.mark.slow
def test_bigram_run_directory(tmp_path):
  c = tiny(plots=True)
  summary = train_and_evaluate(c, str(tmp_path))
  rows = check_run_dir(str(tmp_path), 40, 5, 20)
  assert rows[-1]["tokens"] == 40 * 16 * 8 == tokens_seen(summary["state"])
  assert "eval_loss_group0" in rows[-1]  # per entropy group on bigram data
  assert rundir.read_run(str(tmp_path))["data"]["optimal_loss"] > 0
  assert not (tmp_path / "plots").exists()  # the trainer draws nothing
  from wsd_jax import reports
  reports.run_figures(str(tmp_path))  # the apps draw
  for png in ("loss.png", "lr.png"):
    assert os.path.getsize(tmp_path / "plots" / png) > 5_000


@pytest.mark.slow
def test_text_run_directory(tmp_path):
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("the river runs through the valley. " * 400)
  c = tiny()
  c.data = ml_collections.ConfigDict(dict(
      name="text", paths=str(corpus), seq_len=16, batch_size=8,
      eval_batches=2))
  c.model = ml_collections.ConfigDict(dict(name="mlp", embed_dim=16,
                                           hidden_dim=32))
  train_and_evaluate(c, str(tmp_path / "run"))
  rows = check_run_dir(str(tmp_path / "run"), 40, 5, 20)
  assert rows[-1]["loss"] < rows[0]["loss"]


@pytest.mark.slow
def test_tfds_run_directory(tmp_path):
  import tensorflow_datasets as tfds
  c = tiny(steps=20, eval_every=10)
  c.data = ml_collections.ConfigDict(dict(
      name="tfds", tfds_name="lm1b", train_split="train", eval_split="test",
      text_key="text", seq_len=16, batch_size=4, eval_batches=1))
  c.model = ml_collections.ConfigDict(dict(name="gpt", size="nano"))
  with tfds.testing.mock_data(num_examples=20):
    train_and_evaluate(c, str(tmp_path))
  check_run_dir(str(tmp_path), 20, 5, 10)


@pytest.mark.slow
def test_default_bigram_config_reaches_optimal_loss(tmp_path):
  """The default config ends within 5% of the known optimal loss."""
  c = bigram_config.get_config()
  c.train.update(progress=False, plots=False)
  summary = train_and_evaluate(c, str(tmp_path))
  optimal = rundir.read_run(str(tmp_path))["data"]["optimal_loss"]
  assert summary["eval_loss"] <= 1.05 * optimal, (summary["eval_loss"],
                                                   optimal)
  first = rundir.read_metrics(str(tmp_path))[0]["loss"]
  assert first > 1.3 * optimal  # it did have to learn


@pytest.mark.slow
def test_same_seed_same_metrics(tmp_path):
  train_and_evaluate(tiny(), str(tmp_path / "a"))
  train_and_evaluate(tiny(), str(tmp_path / "b"))
  assert metrics_without_time(tmp_path / "a") == metrics_without_time(
      tmp_path / "b")
  c = tiny()
  c.seed = 1
  train_and_evaluate(c, str(tmp_path / "c"))
  assert metrics_without_time(tmp_path / "a") != metrics_without_time(
      tmp_path / "c")


def test_step_compiles_once_for_any_schedule_numbers():
  c = tiny()
  s = setup(c)
  fn = jax.jit(step_fn(c, s), donate_argnums=(0,))
  batch = next(iter(s.train_ds))
  state = s.state
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, duration, **kw: compiles.append(event)
      if event == "/jax/core/compile/backend_compile_duration" else None)
  try:
    for peak in (0.1, 0.01, 0.001):
      state, m = fn(state, batch, schedules.wsd(peak, 100, 10))
      assert float(m["lr"]) == pytest.approx(peak)
      if peak == 0.1:
        first = len(compiles)
    assert len(compiles) == first  # later peaks reuse the program
  finally:
    jax.monitoring.clear_event_listeners()


@pytest.mark.slow
def test_train_time_excludes_evaluation(tmp_path, monkeypatch):
  from wsd_jax.train import loop
  evaluate = loop.Single.evaluate

  def slow_evaluate(self, state):
    time.sleep(0.5)
    return evaluate(self, state)
  monkeypatch.setattr(loop.Single, "evaluate", slow_evaluate)
  start = time.perf_counter()
  train_and_evaluate(tiny(steps=40, eval_every=10, log_every=5),
                     str(tmp_path))
  wall = time.perf_counter() - start
  rows = rundir.read_metrics(tmp_path)
  evals = [r for r in rows if "eval_loss" in r]
  assert len(evals) == 4 and all(r["eval_time_s"] >= 0.5 for r in evals)
  train_s = [r["train_time_s"] for r in rows]
  assert train_s == sorted(train_s) and train_s[0] > 0
  assert train_s[-1] < wall - 4 * 0.5  # the evaluations are not in it
  # step_time_s is the training time per step since the previous row.
  for a, b in zip(rows, rows[1:]):
    assert b["step_time_s"] * (b["step"] - a["step"]) == pytest.approx(
        b["train_time_s"] - a["train_time_s"], rel=1e-6)


@pytest.mark.slow
def test_loop_does_not_recompile_with_more_steps(tmp_path):
  compiles = []
  def listener(event, duration, **kwargs):
    del duration, kwargs
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append(event)
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    train_and_evaluate(tiny(steps=10, eval_every=10, checkpoint_every=10),
                       str(tmp_path / "short"))
    n_short = len(compiles)
    compiles.clear()
    train_and_evaluate(tiny(steps=60, eval_every=30, checkpoint_every=30),
                       str(tmp_path / "long"))
    assert len(compiles) == n_short
  finally:
    jax.monitoring.clear_event_listeners()


_SUBPROCESS = textwrap.dedent("""
    import json, sys
    import ml_collections
    from wsd_jax.train import train_and_evaluate
    config = ml_collections.ConfigDict(json.loads(sys.argv[1]))
    summary = train_and_evaluate(config, sys.argv[2])
    print("DEVICES", summary["state"].params["table"].value.sharding.mesh.size
          if hasattr(summary["state"].params["table"].value, "sharding") else 0)
""")


def run_with_devices(config, workdir, devices):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count="
             f"{devices}", JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-c", _SUBPROCESS, config.to_json(),
                         str(workdir)], env=env, cwd=ROOT, capture_output=True,
                        text=True)


@pytest.mark.slow
def test_eight_devices_match_one(tmp_path):
  c = tiny(log_every=1)
  one = run_with_devices(c, tmp_path / "one", 1)
  eight = run_with_devices(c, tmp_path / "eight", 8)
  assert one.returncode == 0, one.stderr[-3000:]
  assert eight.returncode == 0, eight.stderr[-3000:]
  assert "DEVICES 8" in eight.stdout
  a, b = rundir.read_metrics(tmp_path / "one"), rundir.read_metrics(
      tmp_path / "eight")
  assert len(a) == len(b) == 40
  for key in ("loss", "grad_norm", "lr"):
    np.testing.assert_allclose([r[key] for r in a], [r[key] for r in b],
                               rtol=2e-5, err_msg=key)
  np.testing.assert_allclose(a[-1]["eval_loss"], b[-1]["eval_loss"], rtol=2e-5)


@pytest.mark.slow
def test_batch_not_divisible_by_devices(tmp_path):
  c = tiny()
  c.data.batch_size = 12
  result = run_with_devices(c, tmp_path, 8)
  assert result.returncode != 0
  assert "batch_size=12 is not divisible by data=8 x fsdp=1 = 8 devices" in (
      result.stderr)
  assert not (tmp_path / "checkpoints").exists()


# --- bad input: a clear error before anything is compiled --------------------


def test_unknown_config_key(tmp_path):
  c = tiny()
  c.learning_rate = 1.0
  with pytest.raises(ValueError, match="learning_rate"):
    train_and_evaluate(c, str(tmp_path))
  c = tiny()
  c.train.stepz = 3
  with pytest.raises(ValueError, match="stepz"):
    train_and_evaluate(c, str(tmp_path))


@pytest.mark.slow
def test_unknown_key_on_the_command_line(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "experiments.train", "--config=configs/bigram.py",
       f"--workdir={tmp_path}", "--config.train.stepz=3"], cwd=ROOT,
      capture_output=True, text=True)
  assert result.returncode != 0 and "stepz" in result.stderr


def test_invalid_schedule(tmp_path):
  c = tiny()
  c.schedule.decay_steps = 100
  with pytest.raises(ValueError, match="config.schedule: .*decay_steps=100"):
    train_and_evaluate(c, str(tmp_path))
  assert not (tmp_path / "checkpoints").exists()


def test_sequence_longer_than_model(tmp_path):
  c = tiny()
  c.model = ml_collections.ConfigDict(dict(name="gpt", size="nano"))
  c.data.seq_len = 256
  with pytest.raises(ValueError, match="256 exceeds the model's max_seq_len"):
    train_and_evaluate(c, str(tmp_path))


def test_missing_text_file(tmp_path):
  c = tiny()
  c.data = ml_collections.ConfigDict(dict(
      name="text", paths=str(tmp_path / "nope.txt"), seq_len=8, batch_size=8,
      eval_batches=1))
  with pytest.raises(ValueError, match="nope.txt"):
    train_and_evaluate(c, str(tmp_path / "run"))


def _exploding(skip):
  c = tiny(skip_nonfinite=skip, log_every=1, checkpoint_every=10)
  c.train.grad_clip = 0.0
  # Adam moves every entry by about the LR: update 13 with LR 3e38 pushes the
  # logits to +-3e38, and the loss of step 14 overflows to inf.
  c.schedule = ml_collections.ConfigDict(dict(
      name="tabulated", values=[1e-2] * 12 + [3e38] + [1e-2] * 27))
  return c


def test_nonfinite_loss_stops_and_keeps_good_state(tmp_path):
  with pytest.raises(NonFiniteLossError, match="at step 14"):
    train_and_evaluate(_exploding(skip=False), str(tmp_path))
  steps = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints"))
  assert steps == [10]  # nothing saved after the bad step
  rows = rundir.read_metrics(tmp_path)
  assert all(np.isfinite(r["loss"]) for r in rows)


def test_nonfinite_loss_can_be_skipped(tmp_path):
  summary = train_and_evaluate(_exploding(skip=True), str(tmp_path))
  assert summary["step"] == 40
  assert int(summary["state"].nonfinite) > 0
  table = np.asarray(summary["state"].params["table"].value)
  assert np.all(np.isfinite(table))


@pytest.mark.slow
def test_cross_entropy_matches_optax_in_value_and_gradient():
  import jax.numpy as jnp
  import optax
  from wsd_jax.train.step import cross_entropy
  logits = jax.random.normal(jax.random.key(0), (3, 5, 11)) * 3
  targets = jax.random.randint(jax.random.key(1), (3, 5), 0, 11)
  ref = lambda l: optax.softmax_cross_entropy_with_integer_labels(
      l.astype(jnp.float32), targets).mean()
  ours = lambda l: cross_entropy(l, targets).mean()
  np.testing.assert_allclose(ours(logits), ref(logits), rtol=1e-6)
  np.testing.assert_allclose(jax.grad(ours)(logits), jax.grad(ref)(logits),
                             atol=1e-7)
  # bf16 logits: float32 loss, a bf16 gradient close to the float32 one.
  low = logits.astype(jnp.bfloat16)
  assert cross_entropy(low, targets).dtype == jnp.float32
  grad = jax.grad(ours)(low)
  assert grad.dtype == jnp.bfloat16
  np.testing.assert_allclose(grad.astype(jnp.float32), jax.grad(ref)(low),
                             atol=1e-3)


def test_with_schedule_sets_steps_schedule_and_branch_points():
  from wsd_jax.train.config import with_schedule
  base = tiny()
  c = with_schedule(base, schedules.cosine(0.1, 90), 90, keep_steps=[30, 60],
                    eval_every=15)
  assert schedules.from_config(c.schedule) == schedules.cosine(0.1, 90)
  assert (c.train.steps, c.train.checkpoint_every, tuple(c.train.keep_steps),
          c.train.keep_last, c.train.keep_every, c.train.eval_every) == (
              90, 30, (30, 60), 1, 0, 15)
  assert base.train.steps == 40  # the base is not changed
