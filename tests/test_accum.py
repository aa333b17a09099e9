"""Gradient accumulation (config.train.grad_accum_steps): K microbatches give
the update, loss and grad norm of the unsplit batch, in one run, in a vmapped
population, under FSDP on 8 devices and in 2 processes; bad K values fail
before any compute."""

import functools
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from test_scale import (assert_same_curves, run_configs, run_processes, tiny,
                        with_mesh)
from tiny import tiny_config
from wsd_jax import models, schedules
from wsd_jax.runs import rundir
from wsd_jax.train import config as config_lib
from wsd_jax.train import state as state_lib
from wsd_jax.train import train_and_evaluate
from wsd_jax.train.step import make_optimizer, microbatches, train_step

B, T, V = 8, 16, 64


def gpt_step(k: int, grad_clip: float = 0.05):
  """A GPT (1 layer, d=32) train step with K=k, and its initial state."""
  model = models.build(ml_collections.ConfigDict(dict(
      name="gpt", size="nano", num_layers=1, d_model=32, num_heads=2)),
      vocab_size=V, max_seq_len=T, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  tx = make_optimizer(ml_collections.ConfigDict(dict(name="adamw",
                                                     weight_decay=0.1)))
  step = functools.partial(train_step, graphdef=graphdef, tx=tx,
                           grad_clip=grad_clip, tokens_per_step=B * T,
                           grad_accum_steps=k)
  return step, state_lib.create(params, tx, 0)


def batches(n: int, seed: int = 0, lead: tuple = ()) -> list[dict]:
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    tokens = rng.integers(0, V, (*lead, B, T + 1), dtype=np.int32)
    out.append({"inputs": tokens[..., :-1], "targets": tokens[..., 1:]})
  return out


def assert_trees_close(a, b, rtol=2e-5, atol=1e-5):
  """Leaves equal to float rounding; Adam turns a gradient entry at rounding
  noise into an update of up to lr, hence the atol of lr * 1e-3."""
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol,
                               atol=atol)


def test_microbatches_are_strided_and_checked():
  batch = {"inputs": np.arange(8)[:, None] * np.ones((1, 3), np.int32)}
  split = microbatches(batch, 4)["inputs"]
  assert split.shape == (4, 2, 3)
  # microbatch i holds rows i, i + K: every device's block of rows is split
  np.testing.assert_array_equal(split[:, :, 0], [[0, 4], [1, 5], [2, 6],
                                                 [3, 7]])
  with pytest.raises(ValueError, match="8 rows does not split into "
                     "grad_accum_steps=3"):
    microbatches(batch, 3)


@pytest.mark.slow
def test_accumulated_steps_equal_the_unsplit_steps():
  schedule = schedules.wsd(3e-2, 20, 5, warmup_steps=1)
  results = {}
  for k in (1, 4):
    step, state = gpt_step(k)
    jitted = jax.jit(step)
    if k > 1:  # one traced microbatch, scanned
      jaxpr = str(jax.make_jaxpr(step)(state, batches(1)[0], schedule))
      assert "scan" in jaxpr
    metrics = []
    for batch in batches(3):
      state, m = jitted(state, batch, schedule)
      metrics.append(jax.device_get(m))
    results[k] = (state, metrics)
  (one, m1), (four, m4) = results[1], results[4]
  for key in ("loss", "grad_norm", "lr"):
    np.testing.assert_allclose([m[key] for m in m4], [m[key] for m in m1],
                               rtol=2e-6, err_msg=key)
  assert m1[0]["grad_norm"] > 0.05  # clipping was active
  assert_trees_close(four.params, one.params)
  assert_trees_close(four.opt_state, one.opt_state)
  assert int(four.step) == 3 and state_lib.tokens_seen(four) == 3 * B * T


@pytest.mark.slow
@pytest.mark.parametrize("shared_batch", [True, False])
def test_accumulation_composes_with_vmap(shared_batch):
  """Two members (own seeds and peaks) vmapped as the Population strategy
  does, on one shared batch or a batch each."""
  stack = lambda trees: jax.tree.map(lambda *x: jnp.stack(x), *trees)
  schedule = stack([schedules.wsd(p, 20, 5, warmup_steps=1)
                    for p in (1e-2, 3e-2)])
  lead = () if shared_batch else (2,)
  out = {}
  for k in (1, 2):
    step, state = gpt_step(k)
    _, other = gpt_step(k)
    other = other._replace(params=jax.tree.map(lambda x: 0.5 * x,
                                               other.params))
    state = stack([state, other])
    fn = jax.jit(jax.vmap(step, in_axes=(0, None if shared_batch else 0, 0)))
    for batch in batches(2, lead=lead):
      state, m = fn(state, batch, schedule)
    out[k] = (state, jax.device_get(m))
  np.testing.assert_allclose(out[2][1]["loss"], out[1][1]["loss"], rtol=2e-6)
  np.testing.assert_allclose(out[2][1]["grad_norm"], out[1][1]["grad_norm"],
                             rtol=2e-6)
  assert out[1][1]["loss"][0] != out[1][1]["loss"][1]
  assert_trees_close(out[2][0].params, out[1][0].params)


@pytest.mark.slow
def test_runs_and_populations_train_the_same_with_accumulation(tmp_path):
  """The trainer end to end: a run and a 2-member population (Single and
  Population strategies) with K=4 log the metrics of K=1."""
  for k in (1, 4):
    c = tiny_config(steps=10, log_every=2, eval_every=5, checkpoint_every=5,
                    grad_accum_steps=k)
    train_and_evaluate(c, str(tmp_path / f"run{k}"))
    c.population.grid = "peak_value=0.02,0.05"
    train_and_evaluate(c, str(tmp_path / f"pop{k}"))
  assert_same_curves(rundir.read_metrics(tmp_path / "run1"),
                     rundir.read_metrics(tmp_path / "run4"), rtol=2e-6)
  members = sorted((tmp_path / "pop1" / "members").iterdir())
  assert len(members) == 2
  for m in members:
    assert_same_curves(
        rundir.read_metrics(m),
        rundir.read_metrics(tmp_path / "pop4" / "members" / m.name),
        rtol=2e-6)


def test_bad_grad_accum_steps_fail_before_compute():
  def check(k, batch=16, process_count=1, mesh=None):
    c = tiny_config()  # a config read back from JSON takes any type
    c.train = ml_collections.ConfigDict(dict(c.train.to_dict(),
                                             grad_accum_steps=k))
    c.data.batch_size = batch
    return config_lib.validate(c, mesh=mesh, process_count=process_count)

  for k in (0, -2, 1.5, "2", True):
    with pytest.raises(ValueError, match=r"grad_accum_steps must be an "
                       r"integer >= 1, got " + repr(k).replace(".", r"\.")):
      check(k)
  with pytest.raises(ValueError, match=r"batch_size=16 \(16 rows per process\)"
                     r" is not divisible by config.train.grad_accum_steps=3"):
    check(3)
  with pytest.raises(ValueError, match=r"batch_size=16 \(8 rows per process\) "
                     r"is not divisible by config.train.grad_accum_steps=16"):
    check(16, process_count=2)
  mesh = types.SimpleNamespace(shape={"data": 2, "fsdp": 4})
  with pytest.raises(ValueError, match=r"grad_accum_steps=4: microbatches of "
                     r"4 rows .* do not split over data=2 x fsdp=4 = 8"):
    check(4, mesh=mesh)
  check(2, mesh=mesh)
  check(8, batch=64, mesh=mesh)


@pytest.mark.slow
def test_accumulation_under_fsdp_and_in_two_processes(tmp_path):
  """GPT nano with K=2 on 8 CPU devices (FSDP data=2 x fsdp=4, and pure data
  parallelism) and in 2 processes x 2 devices gives the losses of K=1 on one
  device; a K the devices cannot split fails by name."""
  c = tiny("gpt", eval_every=5, checkpoint_every=5, steps=6)
  c.schedule.peak_value = 3e-3
  k2 = ml_collections.ConfigDict(c.to_dict())
  k2.train.grad_accum_steps = 2
  bad = with_mesh(k2, data=2, fsdp=4)
  bad.train.grad_accum_steps = 4
  out = run_configs({"fsdp": with_mesh(k2, data=2, fsdp=4),
                     "dp8": with_mesh(k2, data=8), "bad": bad}, tmp_path, 8)
  train_and_evaluate(c, str(tmp_path / "one"))  # this process: 1 device
  run_processes(k2, tmp_path / "multi", 2, 2)
  assert "error" not in out["fsdp"], out["fsdp"]
  assert out["fsdp"]["qkv"] == str(P(None, "fsdp"))  # the state is sharded
  one = rundir.read_metrics(tmp_path / "one")
  for name in ("fsdp", "dp8", "multi"):
    assert_same_curves(one, rundir.read_metrics(tmp_path / name), rtol=2e-5)
  assert "grad_accum_steps=4: microbatches of 4 rows" in out["bad"]["error"]
