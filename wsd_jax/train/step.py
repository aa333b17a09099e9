"""The optimizer, the pure train step and the eval step.

The learning rate is not baked into the optimizer: the step takes the
schedule as an argument (a pytree), evaluates it at ``state.step`` and writes
it into the ``inject_hyperparams`` state before the update. A sweep over
schedule numbers therefore reuses one compiled step, and ``jax.vmap`` over a
stacked schedule and stacked states trains a population in one program.
A hypergradient optimizer (``wsd_jax.adaptive``: ``sgd_hd``, ``adam_hd``)
gets the schedule as ``lr_scale``, a multiplier of the LR it adapts; the
step's ``lr`` metric is always the LR the update used.

Gradient accumulation (``config.train.grad_accum_steps = K``) splits the
global batch into K equal microbatches inside the step and scans over them
(``jax.lax.scan``: one traced microbatch, whatever K), so only one
microbatch's activations are live at a time. The mean of the microbatch mean
losses and gradients is the full batch's, so the update, the loss and the
grad norm equal the unsplit step's to float rounding. K is static: changing
it compiles the step once more.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from wsd_jax.adaptive import hypergradient
from wsd_jax.train.state import TrainState, add_tokens


def make_optimizer(opt_config) -> optax.GradientTransformation:
  """Any optax optimizer by name, with its LR injected at every step.

  ``opt_config.name`` is an optax factory (``adamw``, ``adam``, ``sgd``,
  ``nadamw``, ``lion``, ``contrib.schedule_free_adamw``, ...); the other
  fields are its keyword arguments: unset (None) ones are dropped, and ones
  the factory does not take are dropped with a warning
  (``train.config.optimizer_kwargs``).
  """
  from wsd_jax.train import config as config_lib
  r = config_lib.optimizer_kwargs(opt_config)
  factory = config_lib.optimizer_factory(r.name)
  # The schedule goes to ``learning_rate``, or to an adaptive optimizer's
  # ``lr_scale`` (its ``learning_rate`` is the initial adapted LR).
  key = (hypergradient.SCALE if r.name in hypergradient.OPTIMIZERS
         else "learning_rate")
  try:
    return optax.inject_hyperparams(factory)(**{key: 0.0}, **r.kwargs)
  except TypeError as e:
    raise ValueError(f"optimizer {r.name!r}: {e}") from None


@jax.custom_vjp
def cross_entropy(logits_BxTxV: jax.Array, targets_BxT: jax.Array) -> jax.Array:
  """Per-token cross-entropy in nats, float32, from logits of any float dtype.

  Computed in float32 without materialising float32 logits: the forward pass
  keeps only the log-normaliser, and the backward pass writes the gradient
  ``softmax - onehot`` straight in the logits' dtype. With bf16 logits this
  saves several passes over the largest tensor of a language model.
  """
  return _cross_entropy_fwd(logits_BxTxV, targets_BxT)[0]


def _cross_entropy_fwd(logits, targets):
  lse = jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1)
  target = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  return lse - target.astype(jnp.float32), (logits, targets, lse)


def _cross_entropy_bwd(residuals, g):
  logits, targets, lse = residuals
  probs = jnp.exp(logits.astype(jnp.float32) - lse[..., None])
  onehot = jax.nn.one_hot(targets, logits.shape[-1], dtype=jnp.float32)
  return ((probs - onehot) * g[..., None]).astype(logits.dtype), None


cross_entropy.defvjp(_cross_entropy_fwd, _cross_entropy_bwd)


def loss_fn(params, graphdef, batch) -> jax.Array:
  model = nnx.merge(graphdef, params)
  return cross_entropy(model(batch["inputs"]), batch["targets"]).mean()


def microbatches(batch: dict, k: int) -> dict:
  """Splits every ``[B, ...]`` leaf into ``[K, B/K, ...]`` microbatches.

  Microbatch ``i`` holds rows ``i, i + K, i + 2K, ...``: the batch's rows are
  sharded in contiguous blocks over the devices (and processes), so this
  strided split gives every device ``1/K`` of its own rows in each
  microbatch, with no data movement, whenever ``B/K`` divides by the
  devices (``train.config.validate`` checks it).

  Raises:
    ValueError: if ``B`` is not divisible by ``k``.
  """
  def split(x):
    b = x.shape[0]
    if b % k:
      raise ValueError(f"a batch of {b} rows does not split into "
                       f"grad_accum_steps={k} equal microbatches")
    return jnp.swapaxes(x.reshape(b // k, k, *x.shape[1:]), 0, 1)
  return jax.tree.map(split, batch)


def loss_and_grads(params, graphdef, batch: dict, grad_accum_steps: int = 1
                   ) -> tuple[jax.Array, Any]:
  """The batch's mean loss and its gradient, over ``grad_accum_steps``
  microbatches of equal size (a ``lax.scan``; sums kept in the parameters'
  dtype, float32)."""
  grad_fn = jax.value_and_grad(loss_fn)
  if grad_accum_steps == 1:
    return grad_fn(params, graphdef, batch)

  def add_microbatch(total, micro):
    return jax.tree.map(jnp.add, total, grad_fn(params, graphdef, micro)), None

  zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
  total, _ = jax.lax.scan(add_microbatch, zeros,
                          microbatches(batch, grad_accum_steps))
  return jax.tree.map(lambda x: x / grad_accum_steps, total)


def train_step(state: TrainState, batch: dict, schedule: Callable, *,
               graphdef: Any, tx: optax.GradientTransformation,
               grad_clip: float | None, tokens_per_step: int,
               grad_accum_steps: int = 1) -> tuple[TrainState, dict]:
  """One update. Pure: jit it once (see ``step_fn``) and vmap it freely.

  With ``grad_accum_steps = K > 1`` the gradient is accumulated over K
  microbatches of the batch (:func:`loss_and_grads`); K must divide the
  batch's rows.

  A non-finite loss or gradient leaves params and optimizer state untouched
  (the step counter still moves on) and is recorded in ``state.nonfinite`` and
  ``state.first_nonfinite``; the loop decides whether to stop or go on.
  """
  loss, grads = loss_and_grads(state.params, graphdef, batch, grad_accum_steps)
  grad_norm = optax.global_norm(grads)
  grad_l1 = sum(jnp.abs(g).sum(dtype=jnp.float32)  # for Adam-type refinement
                for g in jax.tree.leaves(grads))
  if grad_clip:
    scale = jnp.minimum(1.0, grad_clip / (grad_norm + 1e-12))
    grads = jax.tree.map(lambda g: g * scale.astype(g.dtype), grads)
  lr = schedule(state.step)
  key = (hypergradient.SCALE if hypergradient.SCALE in
         state.opt_state.hyperparams else "learning_rate")
  hyperparams = dict(state.opt_state.hyperparams, **{key: lr.astype(
      state.opt_state.hyperparams[key].dtype)})
  opt_state = state.opt_state._replace(hyperparams=hyperparams)
  updates, new_opt_state = tx.update(grads, opt_state, state.params)
  if (applied := hypergradient.applied_lr(new_opt_state)) is not None:
    lr = applied  # the scheduled LR times the adapted one: what was used
  new_params = optax.apply_updates(state.params, updates)

  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  keep = lambda new, old: jax.tree.map(
      lambda n, o: jnp.where(finite, n, o), new, old)
  state = TrainState(
      params=keep(new_params, state.params),
      opt_state=keep(new_opt_state, state.opt_state),
      step=state.step + 1,
      tokens=add_tokens(state.tokens, tokens_per_step),
      rng=state.rng,
      nonfinite=state.nonfinite + (~finite).astype(jnp.int32),
      first_nonfinite=jnp.where((~finite) & (state.first_nonfinite < 0),
                                state.step + 1, state.first_nonfinite))
  return state, {"loss": loss, "grad_norm": grad_norm, "grad_l1": grad_l1,
                 "lr": lr,
                 "first_nonfinite": state.first_nonfinite,
                 "nonfinite": state.nonfinite}


def eval_step(params, batch: dict, *, graphdef) -> jax.Array:
  """Per-token held-out loss ``[B, T]``."""
  model = nnx.merge(graphdef, params)
  return cross_entropy(model(batch["inputs"]), batch["targets"])


def step_fn(config, setup) -> Callable:
  """The pure step of a run: ``(state, batch, schedule) -> (state, metrics)``
  with the run's model, optimizer, clipping, batch size and gradient
  accumulation bound; the trainer jits it (vmapped for a population) with
  the state donated."""
  return functools.partial(
      train_step, graphdef=setup.graphdef, tx=setup.tx,
      grad_clip=float(config.train.grad_clip) or None,
      tokens_per_step=int(config.data.batch_size) * int(config.data.seq_len),
      grad_accum_steps=int(config.train.get("grad_accum_steps", 1)))
