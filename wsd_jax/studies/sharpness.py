"""Sharpness: the top Hessian eigenvalue of a loss by power iteration.

``top_eigenvalue(loss_fn, params)`` runs power iteration on Hessian-vector
products computed forward-over-reverse (``jax.jvp`` of ``jax.grad``), in
float32, on the parameter pytree; the whole iteration is one jitted
``lax.while_loop``. It stops when the relative residual ``||H v - lam
v|| / |lam|`` of the Rayleigh quotient ``lam`` is at most ``tol``, or after
``max_iters``; for a symmetric matrix an eigenvalue then lies within
``tol * |lam|`` of ``lam`` (the top one unless the random start vector
missed its eigenvector, or a near-equal eigenvalue stalls the iteration:
``Eigen.converged`` is False then).

Which eigenvalue: plain power iteration converges to the eigenvalue of
LARGEST MAGNITUDE, which may be negative (a saddle's direction of negative
curvature dominating). ``which="magnitude"`` returns that one, signed;
``which="algebraic"`` (the default: "sharpness" is the largest curvature)
returns the largest algebraic eigenvalue: when the magnitude-dominant one
``mu`` is negative, it runs power iteration again on ``H - mu I`` (whose
spectrum is ``>= 0``) and adds ``mu`` back.

``scale`` (a pytree like ``params``, positive) gives the eigenvalue of
``D H D`` with ``D = diag(scale)``: with ``scale = P**-0.5`` that is the
spectrum of ``P^-1 H``, the preconditioned sharpness of an adaptive
optimizer with diagonal preconditioner ``P`` (Cohen et al., arXiv
2207.14484: Adam is stable while it is below ``(2 + 2 b1) / ((1 - b1) lr)``,
38/lr for b1 = 0.9). :func:`adam_preconditioner` builds that ``scale`` from
an optax Adam state.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

WHICH = ("algebraic", "magnitude")


@dataclasses.dataclass(frozen=True)
class Eigen:
  """One power-iteration result.

  Attributes:
    value: the eigenvalue (see the module docstring for which one).
    iterations: Hessian-vector products spent (both passes with
      ``which="algebraic"`` on a negative-dominant spectrum).
    converged: whether ``residual <= tol``.
    residual: ``||Av - value v|| / |value|`` at the returned unit vector
      ``v`` (``A = D H D``; small when ``v`` is an eigenvector).
  """
  value: float
  iterations: int
  converged: bool
  residual: float


def _check(loss_fn, params, which, tol, max_iters, scale) -> None:
  if not callable(loss_fn):
    raise ValueError(f"loss_fn must be callable, got {loss_fn!r}")
  if which not in WHICH:
    raise ValueError(f"which={which!r}; known: {', '.join(WHICH)}")
  if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
    raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
  if isinstance(max_iters, bool) or not isinstance(max_iters, (int, np.integer)
                                                   ) or max_iters < 1:
    raise ValueError(f"max_iters must be an integer >= 1, got {max_iters!r}")
  leaves = jax.tree.leaves(params)
  if not leaves:
    raise ValueError("params has no array leaves")
  for path, x in jax.tree_util.tree_leaves_with_path(params):
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
      raise ValueError(f"params leaf {jax.tree_util.keystr(path)} has dtype "
                       f"{jnp.result_type(x)}; every leaf must be floating")
  if scale is not None:
    if jax.tree.structure(scale) != jax.tree.structure(params):
      raise ValueError("scale must have the structure of params: "
                       f"{jax.tree.structure(scale)} vs "
                       f"{jax.tree.structure(params)}")
    for path, (s, x) in zip(
        (p for p, _ in jax.tree_util.tree_leaves_with_path(scale)),
        zip(jax.tree.leaves(scale), leaves)):
      if np.shape(s) != np.shape(x):
        raise ValueError(f"scale leaf {jax.tree_util.keystr(path)} has shape "
                         f"{np.shape(s)}, params {np.shape(x)}")
      if not bool(np.all(np.asarray(s) > 0)) or not bool(
          np.all(np.isfinite(np.asarray(s)))):
        raise ValueError(f"scale leaf {jax.tree_util.keystr(path)} has "
                         "values that are not finite and > 0")


def hvp(loss_fn: Callable, params: Any) -> Callable:
  """``v -> H v`` at ``params`` (pytrees like ``params``), forward-over-
  reverse: ``jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]``."""
  grad = jax.grad(loss_fn)
  return lambda v: jax.jvp(grad, (params,), (v,))[1]


def _vdot(a, b):
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a),
                                            jax.tree.leaves(b)))


def _axpy(alpha, x, y):
  """``alpha * x + y`` on pytrees."""
  return jax.tree.map(lambda u, w: alpha * u + w, x, y)


def _op(loss_fn, params, d):
  """``v -> D H D v`` on pytrees like ``params``."""
  h = hvp(loss_fn, params)
  return lambda v: jax.tree.map(jnp.multiply, d,
                                h(jax.tree.map(jnp.multiply, d, v)))


@jax.jit(static_argnames=("loss_fn", "max_iters"))
def _power(loss_fn, params, d, shift, v0, tol, max_iters):
  """Power iteration on ``A - shift I``, ``A = D H D``: ``v <- (A - shift)
  v / ||.||`` until the residual ``||(A - shift) v - lam v||`` of the
  Rayleigh quotient ``lam = v.(A - shift)v``, relative to the eigenvalue
  of A it stands for (``|lam + shift|``), is at most ``tol``. Returns
  ``(lam, iterations, residual, v)``, all at the final unit vector
  ``v``."""
  a = _op(loss_fn, params, d)

  def op(v):
    return _axpy(-shift, v, a(v))

  def unit(w, fallback):
    norm = jnp.sqrt(_vdot(w, w))
    ok = norm > 0
    return jax.tree.map(lambda x, f: jnp.where(ok, x / jnp.where(ok, norm, 1),
                                               f), w, fallback)

  def body(c):
    v, _, _, i = c
    w = op(v)
    lam = _vdot(v, w)
    r = _axpy(-lam, v, w)
    res = jnp.sqrt(_vdot(r, r)) / jnp.maximum(jnp.abs(lam + shift), 1e-30)
    return unit(w, v), lam, res, i + 1

  def cond(c):
    _, _, res, i = c
    return (i < max_iters) & (res > tol)

  v0 = unit(v0, v0)
  v, lam, res, i = jax.lax.while_loop(
      cond, body, (v0, jnp.float32(0), jnp.float32(jnp.inf), 0))
  del lam, res
  w = op(v)  # the result at the returned vector
  lam = _vdot(v, w)
  r = _axpy(-lam, v, w)
  res = jnp.sqrt(_vdot(r, r)) / jnp.maximum(jnp.abs(lam + shift), 1e-30)
  return lam, i, res, v


def top_eigenvalue(loss_fn: Callable, params: Any, *, which: str = "algebraic",
                   scale: Any = None, tol: float = 1e-3, max_iters: int = 300,
                   seed: int = 0) -> Eigen:
  """The top eigenvalue of the Hessian of ``loss_fn`` at ``params``.

  Args:
    loss_fn: ``params -> scalar`` (close over a fixed batch set); traced,
      so it must be a pure JAX function. Hashable (it is a static argument):
      define it once and reuse it to reuse the compiled iteration.
    params: a pytree of floating arrays; cast to float32.
    which: "algebraic" (largest eigenvalue) or "magnitude" (the eigenvalue
      of largest absolute value, signed: what plain power iteration finds).
    scale: optional positive pytree like ``params``: the eigenvalue of
      ``D H D``, ``D = diag(scale)`` (preconditioned sharpness).
    tol: the relative residual that counts as converged (an eigenvalue of
      ``D H D`` then lies within ``tol * |value|`` of ``value``).
    max_iters: most Hessian-vector products per power iteration.
    seed: of the random start vector.

  Returns:
    An :class:`Eigen`.

  Raises:
    ValueError: on a bad argument (before any compute).
  """
  _check(loss_fn, params, which, tol, max_iters, scale)
  f32 = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), t)
  params = f32(params)
  d = jax.tree.map(jnp.ones_like, params) if scale is None else f32(scale)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  v0 = jax.tree.unflatten(treedef, [
      jax.random.normal(k, x.shape, jnp.float32) for k, x in zip(keys, leaves)])
  tol32, n = jnp.float32(tol), int(max_iters)
  lam, it, res, _ = _power(loss_fn, params, d, jnp.float32(0), v0, tol32, n)
  lam, it, res = float(lam), int(it), float(res)
  if which == "algebraic" and lam < 0:
    # H - lam I >= 0: its dominant eigenvalue is top - lam; the residual
    # ||(A - lam) v - mu v|| is that of A at top = mu + lam (and _power
    # divides it by |top|).
    mu, it2, res_mu, _ = _power(loss_fn, params, d, jnp.float32(lam), v0,
                                tol32, n)
    top = float(mu) + lam
    lam, it, res = top, it + int(it2), float(res_mu)
  return Eigen(lam, it, bool(res <= tol), res)


def adam_preconditioner(opt_state: Any, params: Any, eps: float = 1e-8,
                        b2: float = 0.95) -> Any:
  """``scale = P**-0.5`` with Adam's ``P = sqrt(nu_hat) + eps`` (``nu_hat =
  nu / (1 - b2**count)``) from the first ``optax.ScaleByAdamState`` in
  ``opt_state``; for :func:`top_eigenvalue`'s ``scale``."""
  found = [s for s in jax.tree.leaves(
      opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
      if isinstance(s, optax.ScaleByAdamState)]
  if not found:
    raise ValueError("opt_state holds no optax.ScaleByAdamState (not Adam?)")
  st = found[0]
  count = int(np.asarray(st.count))
  if count < 1:
    raise ValueError(f"Adam state count={count}: no step taken yet")
  nu = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), st.nu)
  if jax.tree.structure(nu) != jax.tree.structure(params):
    nu = jax.tree.unflatten(jax.tree.structure(params), jax.tree.leaves(nu))
  corr = 1.0 - b2 ** count
  return jax.tree.map(lambda n: (jnp.sqrt(n / corr) + eps) ** -0.5, nu)
