"""The numerical side of a law's fit: the objective and the two optimizers.

``Problem`` holds one fit's data as arrays (the law's parameter-free terms at
the observed steps, the log losses) and evaluates the objective

    J(x) = sum_i w_i * huber(log L_pred(x)_i - log L_obs_i) / (sum_i w_i * delta^2)
           + prior_weight * sum_k m_k * (x_k - x0_k)^2

with per-point weights ``w`` (1 for a plain fit; 0 on a held-out tail; the
resampling counts of a bootstrap replicate) and an optional Gaussian prior on
the log parameters ``x_k`` toward the law's reference values ``x0_k``
(``Law.prior``; ``m_k`` is 1 for the parameters it names). Weights and prior
are arguments of one jitted ``value_and_grad`` per law class and coordinate
system, so every fit, tail fit and bootstrap refit of the same shapes
compiles once.

Two optimizers:

* ``lbfgs``: scipy's L-BFGS-B on the log coordinates (``L0`` as is), bounded
  (``Law.positive_bounds``), from a given start.
* ``adamw``: Luo et al.'s public fitting code (arXiv 2503.12811,
  ``src/fitting.py``): AdamW on the natural parameters, learning rate 5e-2
  for the offset and coefficients, 5e-3 for the exponents
  (``Law.exponent_names``), torch defaults (betas 0.9/0.999, eps 1e-8,
  weight decay 1e-2), at most 200 steps, stopped after 20 steps without
  improvement, returning the best iterate. Few steps from a fixed start is
  an implicit regulariser: the parameters stay near the start.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

HUBER_DELTA = 1e-3
# L-BFGS-B's stopping rule: a relative objective change below FTOL or a
# projected gradient below GTOL (the objective is O(1) in Huber units).
FTOL, GTOL = 1e-13, 1e-9

# Luo et al.'s AdamW settings (their src/config.py and torch.optim.AdamW).
ADAMW = dict(lr=5e-2, exponent_lr=5e-3, b1=0.9, b2=0.999, eps=1e-8,
             weight_decay=1e-2, steps=200, patience=20, grad_norm=1e-5)


def huber(r: jax.Array, delta: float = HUBER_DELTA) -> jax.Array:
  abs_r = jnp.abs(r)
  return jnp.where(abs_r < delta, 0.5 * r**2, delta * (abs_r - 0.5 * delta))


@dataclasses.dataclass
class Problem:
  """The arrays of one fit (call its methods inside ``jax.enable_x64``).

  Attributes:
    cls: the law class.
    terms: per curve, the law's blocked terms at the observed steps.
    log_obs: per curve, the log of the observed losses.
    bounds: L-BFGS-B bounds of the log coordinates.
    prior_x0, prior_mask: the prior's log reference values and which
      parameters it applies to (``Law.prior``).
    warmup_steps: the law's warmup option.
  """
  cls: Any
  terms: tuple[dict[str, jax.Array], ...]
  log_obs: tuple[jax.Array, ...]
  bounds: list[tuple[float, float]]
  prior_x0: np.ndarray
  prior_mask: np.ndarray
  warmup_steps: int = 0

  @property
  def sizes(self) -> list[int]:
    return [int(y.shape[0]) for y in self.log_obs]

  def data(self, weights: Sequence[np.ndarray] | None = None,
           prior_weight: float = 0.0) -> tuple:
    """The objective's data argument."""
    if weights is None:
      weights = [np.ones(n) for n in self.sizes]
    return (self.terms, self.log_obs,
            tuple(jnp.asarray(w, jnp.float64) for w in weights),
            (jnp.asarray(float(prior_weight)), jnp.asarray(self.prior_x0),
             jnp.asarray(self.prior_mask)))

  def value_and_grad(self, x: np.ndarray, data: tuple, natural: bool = False
                     ) -> tuple[float, np.ndarray]:
    v, g = _value_and_grad(self.cls, natural)(jnp.asarray(x), data)
    return float(v), np.asarray(g, np.float64)

  def predictions(self, params: dict[str, float]) -> list[np.ndarray]:
    """The law's losses at each curve's observed steps (blocked terms)."""
    p = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
    loss = _jitted_loss(self.cls)
    return [np.asarray(loss(p, t), np.float64) for t in self.terms]


@functools.cache
def _openblas_thread_setters() -> tuple[tuple[Callable, Callable], ...]:
  """``(get, set)`` of the number of threads of every loaded OpenBLAS."""
  try:
    with open("/proc/self/maps") as f:  # Linux; elsewhere: nothing to do
      paths = sorted({line.split()[-1] for line in f
                      if "openblas" in line.split()[-1].lower()})
  except OSError:
    return ()
  out = []
  for path in paths:
    try:
      lib = ctypes.CDLL(path)
    except OSError:
      continue
    names = [(f"{prefix}_get_num_threads{suffix}",
              f"{prefix}_set_num_threads{suffix}")
             for prefix in ("scipy_openblas", "openblas")
             for suffix in ("", "_", "64_")]
    for get, set_ in names:
      if hasattr(lib, get) and hasattr(lib, set_):
        out.append((getattr(lib, get), getattr(lib, set_)))
        break
  return tuple(out)


@contextlib.contextmanager
def single_threaded_blas():
  """Runs the block with every loaded OpenBLAS on one thread.

  L-BFGS-B makes tiny BLAS calls every iteration; OpenBLAS's threads then
  contend with XLA's and with other processes: on a shared 2-core machine
  one iteration took 4 ms with the default threads and 0.3 ms with one
  (measured). threadpoolctl does this job but is not a dependency, so the
  OpenBLAS setters are called directly (a no-op where none is found).
  """
  setters = _openblas_thread_setters()
  before = [int(get()) for get, _ in setters]
  for _, set_ in setters:
    set_(1)
  try:
    yield
  finally:
    for (_, set_), n in zip(setters, before):
      set_(n)


def lbfgs(problem: Problem, x0: np.ndarray, data: tuple, maxiter: int,
          record: bool = False) -> scipy.optimize.OptimizeResult:
  """L-BFGS-B from ``x0``; with ``record``, ``res.path`` holds the iterates
  (``path[k]`` after ``k`` iterations, ``path[0] = x0``)."""
  path = [np.array(x0, np.float64)]

  def fun(x):
    return problem.value_and_grad(x, data)

  callback = (lambda xk: path.append(np.array(xk))) if record else None
  with single_threaded_blas():
    res = scipy.optimize.minimize(
        fun, np.asarray(x0, np.float64), jac=True, method="L-BFGS-B",
        bounds=problem.bounds, callback=callback,
        options={"maxiter": int(maxiter), "ftol": FTOL, "gtol": GTOL})
  res.path = path
  return res


def adamw(problem: Problem, x0: np.ndarray, data: tuple,
          exponent_mask: np.ndarray, **settings: Any
          ) -> scipy.optimize.OptimizeResult:
  """Luo et al.'s AdamW fit on natural parameters from ``x0`` (natural).

  Returns an ``OptimizeResult`` with the best iterate ``x`` (natural), its
  objective ``fun``, ``nit`` (steps taken), ``nfev``, ``success`` (stopped by
  the patience or gradient rule rather than the step limit) and ``message``.
  """
  s = {**ADAMW, **settings}
  lr = np.where(exponent_mask, s["exponent_lr"], s["lr"])
  # Their objective is the summed Huber loss; the gradient-norm rule is on it.
  scale = float(sum(jnp.sum(w) for w in data[2])) * HUBER_DELTA**2
  run = _adamw_scan(problem.cls, int(s["steps"]))
  best_x, best_f, steps, stop = run(
      jnp.asarray(x0, jnp.float64), data, jnp.asarray(lr),
      jnp.asarray([s["b1"], s["b2"], s["eps"], s["weight_decay"],
                   s["grad_norm"] / scale, float(s["patience"])]))
  steps, stop = int(steps), int(stop)
  message = {0: f"step limit ({s['steps']} AdamW steps) reached",
             1: f"no improvement for {s['patience']} steps",
             2: "gradient norm below the threshold"}[stop]
  return scipy.optimize.OptimizeResult(
      x=np.asarray(best_x, np.float64), fun=float(best_f), nit=steps,
      nfev=steps, success=stop > 0, message=message)


# ---- jitted functions, one per law class (and coordinate system) -------------


def _objective(cls, natural: bool, x: jax.Array, data) -> jax.Array:
  terms, log_obs, weights, (prior_weight, x0, mask) = data
  p = cls._natural(x) if natural else cls._unpack(x)
  total, count = 0.0, 0.0
  for t, y, w in zip(terms, log_obs, weights):
    pred = cls._loss(p, t)
    safe = jnp.where(pred > 1e-8, pred, 1e-8)
    total = total + jnp.sum(w * huber(jnp.log(safe) - y))
    count = count + jnp.sum(w)
  penalty = 0.0 if natural else prior_weight * jnp.sum(mask * (x - x0)**2)
  return total / (count * HUBER_DELTA**2) + penalty


@functools.cache
def _value_and_grad(cls, natural: bool) -> Callable:
  return jax.jit(jax.value_and_grad(functools.partial(_objective, cls,
                                                      natural)))


@functools.cache
def _jitted_loss(cls) -> Callable:
  return jax.jit(cls._loss)


@functools.cache
def _adamw_scan(cls, steps: int) -> Callable:
  """The AdamW loop of ``adamw`` as one jitted ``lax.scan``."""
  value_and_grad = jax.value_and_grad(functools.partial(_objective, cls, True))

  def run(x0, data, lr, hyper):
    b1, b2, eps, wd, grad_norm, patience = (hyper[i] for i in range(6))

    def body(carry, t):
      x, m, v, best_x, best_f, since, stop, taken = carry
      f, g = value_and_grad(x, data)
      active = stop == 0
      # Torch AdamW: decoupled decay, then the bias-corrected Adam step.
      m_new = b1 * m + (1 - b1) * g
      v_new = b2 * v + (1 - b2) * g**2
      step = lr * (m_new / (1 - b1**t)) / (jnp.sqrt(v_new / (1 - b2**t)) + eps)
      x_new = x * (1 - lr * wd) - step
      better = jnp.isfinite(f) & (f < best_f)
      since_new = jnp.where(better, 0, since + 1)
      new_stop = jnp.where((t > patience) & (since_new >= patience), 1,
                           jnp.where(jnp.linalg.norm(g) < grad_norm, 2, 0))
      best_x = jnp.where(active & better, x, best_x)
      best_f = jnp.where(active & better, f, best_f)
      keep = lambda new, old: jnp.where(active, new, old)
      carry = (keep(x_new, x), keep(m_new, m), keep(v_new, v), best_x, best_f,
               keep(since_new, since), jnp.where(active, new_stop, stop),
               taken + active.astype(jnp.int32))
      return carry, None

    zeros = jnp.zeros_like(x0)
    init = (x0, zeros, zeros, x0, jnp.asarray(jnp.inf, x0.dtype),
            jnp.asarray(0), jnp.asarray(0), jnp.asarray(0))
    carry, _ = jax.lax.scan(body, init,
                            jnp.arange(1, steps + 1, dtype=x0.dtype))
    _, _, _, best_x, best_f, _, stop, taken = carry
    return best_x, best_f, taken, stop

  return jax.jit(run)
