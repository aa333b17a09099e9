"""Rematerialisation (config.model.remat): every policy gives the loss and
gradients of no remat, is really applied (one checkpoint per block), composes
with gradient accumulation, and an unknown value fails before any compute."""

import functools
import re

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from tiny import tiny_config
from wsd_jax import models, schedules
from wsd_jax.train import state as state_lib
from wsd_jax.train import train_and_evaluate
from wsd_jax.train.step import loss_fn, make_optimizer, train_step

B, T, V, LAYERS = 4, 16, 64, 2


def gpt(remat: str):
  return models.build(ml_collections.ConfigDict(dict(
      name="gpt", size="nano", num_layers=LAYERS, d_model=32, num_heads=2,
      remat=remat)), vocab_size=V, max_seq_len=T, rngs=nnx.Rngs(0))


def batch(b: int = B) -> dict:
  tokens = np.random.default_rng(0).integers(0, V, (b, T + 1), dtype=np.int32)
  return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}


def checkpoints(jaxpr) -> list[str]:
  """The policy of each checkpoint (remat) equation of a jaxpr."""
  return re.findall(r"\b(?:remat\w*|checkpoint)\[.*?policy=([^\s\]]+)",
                    str(jaxpr), re.S)


@pytest.mark.slow
def test_every_policy_gives_the_gradients_of_none():
  results = {}
  for remat in models.gpt.REMAT_POLICIES:
    graphdef, params = nnx.split(gpt(remat))
    grad_fn = jax.value_and_grad(loss_fn)
    jaxpr = jax.make_jaxpr(grad_fn, static_argnums=1)(params, graphdef,
                                                      batch())
    found = checkpoints(jaxpr)
    assert len(found) == (0 if remat == "none" else LAYERS), (remat, found)
    if remat == "dots":
      assert all("Dots" in f for f in found), found
    results[remat] = jax.jit(grad_fn, static_argnums=1)(params, graphdef,
                                                        batch())
  loss, grads = results["none"]
  for remat in ("block", "dots"):
    np.testing.assert_allclose(results[remat][0], loss, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(results[remat][1]),
                    jax.tree.leaves(grads), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_remat_inside_gradient_accumulation():
  """remat="block" with K=2 microbatches: the update of remat="none", K=1."""
  schedule = schedules.constant(1e-2)
  out = []
  for remat, k in (("none", 1), ("block", 2)):
    graphdef, params = nnx.split(gpt(remat))
    tx = make_optimizer(ml_collections.ConfigDict(dict(name="adamw")))
    step = jax.jit(functools.partial(
        train_step, graphdef=graphdef, tx=tx, grad_clip=1.0,
        tokens_per_step=B * T, grad_accum_steps=k))
    state, metrics = step(state_lib.create(params, tx, 0), batch(), schedule)
    out.append((state.params, jax.device_get(metrics)))
  for key in ("loss", "grad_norm"):
    np.testing.assert_allclose(out[1][1][key], out[0][1][key], rtol=1e-6)
  # Adam's first update is lr * sign(g) where |g| is above rounding noise
  for a, b in zip(jax.tree.leaves(out[1][0]), jax.tree.leaves(out[0][0]),
                  strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_unknown_remat_is_refused_before_any_compute(tmp_path):
  with pytest.raises(ValueError, match=r"unknown remat 'full' "
                     r"\(config.model.remat\); known: none, block, dots"):
    models.GPTConfig(remat="full")
  c = tiny_config()
  c.model = ml_collections.ConfigDict(dict(name="gpt", size="nano",
                                           remat="everything"))
  with pytest.raises(ValueError, match="unknown remat 'everything'"):
    train_and_evaluate(c, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
