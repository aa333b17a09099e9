"""Held-out evaluation: the mean loss over the fixed eval batches, and per
token group when the data defines groups (``data.token_groups``)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wsd_jax.train import sharding
from wsd_jax.train.step import eval_step


def _schedule_free_state(opt_state):
  inner = getattr(opt_state, "inner_state", opt_state)
  return inner if isinstance(inner, optax.contrib.ScheduleFreeState) else None


def eval_params(state):
  """The parameters a train state is evaluated (and compared, fitted and
  branched) at: for a schedule-free optimizer (``optax.contrib.
  schedule_free*``) its average ``x`` (``optax.contrib.
  schedule_free_eval_params``), otherwise ``state.params``. Pure."""
  if (sf := _schedule_free_state(state.opt_state)) is not None:
    return optax.contrib.schedule_free_eval_params(sf, state.params)
  return state.params


def eval_params_fn(state, vmapped: bool = False) -> Callable:
  """``state -> eval_params(state)``, jitted (vmapped over a population's
  member axis) for a schedule-free state; plain ``state.params`` otherwise,
  which compiles nothing."""
  if _schedule_free_state(state.opt_state) is None:
    return lambda s: s.params
  return jax.jit(jax.vmap(eval_params) if vmapped else eval_params)


def make_eval_fn(graphdef, token_groups: np.ndarray | None) -> Callable:
  """``params, batch -> (loss sums, token counts)`` per token group (one
  group when the data has none); pure, so a population vmaps it."""
  num_groups = 1 if token_groups is None else int(token_groups.max()) + 1

  def fn(params, batch):
    loss_BxT = eval_step(params, batch, graphdef=graphdef)
    seg = (jnp.zeros(loss_BxT.size, jnp.int32) if token_groups is None else
           jnp.asarray(token_groups)[batch["inputs"]].reshape(-1))
    return (jax.ops.segment_sum(loss_BxT.reshape(-1), seg, num_groups),
            jax.ops.segment_sum(jnp.ones_like(loss_BxT).reshape(-1), seg,
                                num_groups))
  return fn


def eval_row(sums: np.ndarray, counts: np.ndarray) -> dict:
  """``eval_loss`` (and ``eval_loss_group{g}`` with several groups)."""
  out = {"eval_loss": float(sums.sum() / counts.sum())}
  if len(sums) > 1:
    out.update({f"eval_loss_group{g}": float(sums[g] / counts[g])
                for g in range(len(sums))})
  return out


def accumulate(eval_fn, params, eval_ds, mesh) -> tuple[np.ndarray, np.ndarray]:
  """Sums ``eval_fn``'s outputs over the eval batches (on the host)."""
  sums = counts = 0.0
  bsh = sharding.batch_sharding(mesh)
  for batch in eval_ds:
    g_sum, g_count = jax.device_get(
        eval_fn(params, sharding.global_batch(batch, bsh)))
    sums, counts = sums + g_sum, counts + g_count
  return np.asarray(sums), np.asarray(counts)


def evaluate(s, params) -> dict:
  """The eval row of one model's params (``s`` is a ``train.Setup``)."""
  fn = jax.jit(make_eval_fn(s.graphdef, s.token_groups))
  return eval_row(*accumulate(fn, params, s.eval_ds, s.mesh))
