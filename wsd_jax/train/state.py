"""The train state: a pytree the jitted step takes and returns (donated)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# Tokens are counted exactly in int32 as (billions, remainder < 1e9), since
# JAX's default int32 would overflow after 2.1B tokens.
TOKEN_BASE = 1_000_000_000


class TrainState(NamedTuple):
  params: Any             # nnx.Param state of the model (float32)
  opt_state: Any          # optax state, inject_hyperparams at the root
  step: jax.Array         # int32: optimizer updates done (optax's count)
  tokens: jax.Array       # int32[2]: tokens seen, as (billions, remainder)
  rng: jax.Array          # PRNG key, folded with the step for stochastic layers
  nonfinite: jax.Array    # int32: steps whose loss or gradient was not finite
  first_nonfinite: jax.Array  # int32: the first such step, -1 if none


def add_tokens(tokens: jax.Array, n: int) -> jax.Array:
  """``tokens + n`` in the (billions, remainder) representation."""
  rem = tokens[1] + n
  return jnp.stack([tokens[0] + rem // TOKEN_BASE, rem % TOKEN_BASE])


def tokens_seen(state: TrainState) -> int:
  """The exact token count as a Python int (fetches from the device)."""
  billions, rem = np.asarray(jax.device_get(state.tokens)).tolist()
  return billions * TOKEN_BASE + rem


def create(params: Any, tx, seed: int) -> TrainState:
  # Every optimizer-state leaf gets a buffer of its own: the step donates the
  # state, and some optax states alias the params or a hyperparameter
  # (schedule-free's ``z`` and ``b1``), which donation refuses.
  opt_state = jax.tree.map(jnp.array, tx.init(params))
  return TrainState(
      params=params, opt_state=opt_state, step=jnp.zeros((), jnp.int32),
      tokens=jnp.zeros((2,), jnp.int32), rng=jax.random.PRNGKey(seed),
      nonfinite=jnp.zeros((), jnp.int32),
      first_nonfinite=jnp.full((), -1, jnp.int32))
