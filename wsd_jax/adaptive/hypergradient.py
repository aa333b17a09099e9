"""Hypergradient descent: SGD-HD and Adam-HD (Baydin et al., arXiv 1703.04782).

The LR is part of the optimizer state and moves by ``hypergrad_lr`` times the
hypergradient ``h``, one global dot product over all leaves of the gradient
and the previous update direction (equations in DESIGN.md, "Adaptive
methods"). Both are ``optax.GradientTransformation``s whose numeric arguments
can be injected (``optax.inject_hyperparams``), so ``jax.vmap`` over stacked
states sweeps ``hypergrad_lr`` (or the initial LR) as a population.

``lr_scale`` multiplies the adapted LR in the update: the trainer injects the
scheduled LR there (a ``constant(1.0)`` schedule gives pure HD), so the LR an
update uses is ``lr_scale * lr_t`` (:func:`applied_lr`). The hypergradient is
the papers' ``h``, not scaled by ``lr_scale``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

# The hyperparameter of the HD optimizers that the trainer sets to the
# scheduled LR at every step (the others' is ``learning_rate``).
SCALE = "lr_scale"


# ``lr`` is initialised with ``jnp.array`` (a copy): under inject_hyperparams
# ``learning_rate`` arrives as the hyperparameter's own buffer, and a donated
# state must not hold one buffer twice.


class SGDHDState(NamedTuple):
  lr: jax.Array        # float32: the adapted LR alpha_t (last one used)
  direction: Any       # d_{t-1}: the last update direction (the momentum
                       # trace), zeros before the first step


class AdamHDState(NamedTuple):
  count: jax.Array     # int32: updates done (t - 1 at step t)
  lr: jax.Array        # float32: the adapted LR alpha_t (last one used)
  mu: Any              # m_{t-1}: first moment
  nu: Any              # v_{t-1}: second moment


def _dot(a: Any, b: Any) -> jax.Array:
  """One global dot product over all leaves, in float32."""
  return optax.tree_utils.tree_vdot(
      jax.tree.map(lambda x: x.astype(jnp.float32), a),
      jax.tree.map(lambda x: x.astype(jnp.float32), b))


def _scaled(tree: Any, factor: jax.Array) -> Any:
  return jax.tree.map(lambda x: (factor * x).astype(x.dtype), tree)


def sgd_hd(learning_rate: float, hypergrad_lr: float, momentum: float = 0.0,
           lr_scale: float = 1.0) -> optax.GradientTransformation:
  """SGD (with heavy-ball momentum) whose LR follows its hypergradient.

  At step t, with ``d_t = momentum * d_{t-1} + g_t`` (``d_0 = 0``)::

    h_t = <g_t, d_{t-1}>,  lr_t = lr_{t-1} + hypergrad_lr * h_t,
    update_t = -lr_scale * lr_t * d_t.

  Args:
    learning_rate: the initial LR ``lr_0``.
    hypergrad_lr: the hypergradient step ``beta`` (Baydin et al. use 1e-3).
    momentum: heavy-ball momentum; 0 is plain SGD-HD.
    lr_scale: multiplies the adapted LR (the trainer's scheduled LR).
  """
  def init(params):
    return SGDHDState(lr=jnp.array(learning_rate, jnp.float32),
                      direction=jax.tree.map(jnp.zeros_like, params))

  def update(grads, state, params=None):
    del params
    lr = state.lr + hypergrad_lr * _dot(grads, state.direction)
    direction = jax.tree.map(lambda d, g: momentum * d + g,
                             state.direction, grads)
    return (_scaled(direction, -lr_scale * lr),
            SGDHDState(lr=lr, direction=direction))

  return optax.GradientTransformation(init, update)


def adam_hd(learning_rate: float, hypergrad_lr: float, b1: float = 0.9,
            b2: float = 0.999, eps: float = 1e-8, lr_scale: float = 1.0
            ) -> optax.GradientTransformation:
  """Adam whose LR follows its hypergradient.

  At step t (1-based), for ``t > 1``::

    h_t = <g_t, m_{t-1} / (sqrt(v_{t-1}) + eps)>
          * sqrt(1 - b2**(t-1)) / (1 - b1**(t-1)),
    lr_t = lr_{t-1} + hypergrad_lr * h_t;

  then Adam's moments ``m_t, v_t`` and the update
  ``-lr_scale * lr_t * sqrt(1 - b2**t) / (1 - b1**t) * m_t / (sqrt(v_t) + eps)``.

  Args:
    learning_rate: the initial LR ``lr_0``.
    hypergrad_lr: the hypergradient step ``beta`` (Baydin et al. use 1e-7).
    b1, b2, eps: Adam's.
    lr_scale: multiplies the adapted LR (the trainer's scheduled LR).
  """
  def init(params):
    zeros = lambda: jax.tree.map(jnp.zeros_like, params)
    return AdamHDState(count=jnp.zeros((), jnp.int32),
                       lr=jnp.array(learning_rate, jnp.float32),
                       mu=zeros(), nu=zeros())

  def direction(mu, nu, t):
    """``sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(v) + eps)``: the Adam
    direction after ``t`` moment updates (zero for t = 0)."""
    t = t.astype(jnp.float32)
    correction = jnp.where(
        t > 0, jnp.sqrt(1 - b2**t) / jnp.where(t > 0, 1 - b1**t, 1.0), 0.0)
    return jax.tree.map(
        lambda m, v: (correction * m / (jnp.sqrt(v) + eps)).astype(m.dtype),
        mu, nu)

  def update(grads, state, params=None):
    del params
    lr = state.lr + hypergrad_lr * _dot(
        grads, direction(state.mu, state.nu, state.count))
    mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
    nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, grads)
    count = state.count + 1
    return (_scaled(direction(mu, nu, count), -lr_scale * lr),
            AdamHDState(count=count, lr=lr, mu=mu, nu=nu))

  return optax.GradientTransformation(init, update)


# The optimizers the trainer builds by ``config.optimizer.name``.
OPTIMIZERS = {"sgd_hd": sgd_hd, "adam_hd": adam_hd}


def _hd_state(opt_state: Any) -> SGDHDState | AdamHDState | None:
  """The HD state inside ``opt_state`` (bare or under inject_hyperparams)."""
  for s in (opt_state, getattr(opt_state, "inner_state", None)):
    if isinstance(s, (SGDHDState, AdamHDState)):
      return s
  return None


def current_lr(opt_state: Any) -> jax.Array:
  """The adapted LR ``lr_t`` held in an SGD-HD / Adam-HD state.

  Raises:
    ValueError: if ``opt_state`` is not one.
  """
  if (s := _hd_state(opt_state)) is None:
    raise ValueError(f"not a hypergradient optimizer state: "
                     f"{type(opt_state).__name__}")
  return s.lr


def applied_lr(opt_state: Any) -> jax.Array | None:
  """The LR the last update used, ``lr_scale * lr_t``, for an HD state under
  ``inject_hyperparams``; None for any other optimizer (whose LR is the
  injected ``learning_rate``)."""
  if (s := _hd_state(opt_state)) is None:
    return None
  scale = getattr(opt_state, "hyperparams", {}).get(SCALE, 1.0)
  return jnp.asarray(scale, jnp.float32) * s.lr
