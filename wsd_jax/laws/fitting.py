"""Shared machinery of the loss-curve laws: the base class and the fitter.

A law predicts ``L = L0 + A * u(s; theta) - X * v(s; theta)`` where ``L0``,
``A`` and ``X`` enter linearly and ``theta`` (exponents and shape constants)
does not. Both papers fit by minimising the Huber loss (delta 1e-3) of the
log residuals ``log L_pred - log L_obs`` (Tissue et al., arXiv 2408.11029;
Luo et al., arXiv 2503.12811). Here:

* every parameter is kept in its valid range by L-BFGS-B bounds on a
  transformed coordinate (log for positive parameters, identity for ``L0``);
* the objective is one jitted float64 ``value_and_grad`` (64-bit only inside
  ``jax.enable_x64`` contexts, never globally);
* starting points: a grid over the nonlinear parameters; at each grid point
  the linear parameters come from least squares, the grid points are ranked
  by the objective, and L-BFGS-B runs from the best few.

A fit is checked at three levels:

* unusable (the objective or the parameters are not finite from every
  start, or R^2 on the fitted curves is NaN or below ``min_r2``):
  ``FitError``;
* usable but to be read with care (the optimizer stopped without converging,
  or a parameter that only an LR decrease identifies, fitted on curves without
  one): a ``FitWarning`` and the same sentence in ``fit_info["warnings"]``;
* a law that cannot be fitted at all without an LR decrease
  (``requires_decrease``): ``FitError`` before any optimisation.

Every jitted function of the fit is built once per law class
(``functools.cache``) with the data as arguments, so fits on curves of the
same shapes compile once.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from wsd_jax.laws.curve import Curve, validate_lrs

HUBER_DELTA = 1e-3
DECREASE_TOL = 1e-6  # a relative LR fall below this is not a decrease


class FitError(ValueError, RuntimeError):
  """A law cannot be fitted to the given curves, or the fit is unusable.

  A ``ValueError`` (the curves given cannot support the fit), so apps report
  it in one line (``experiments.cli.friendly_errors``); also a
  ``RuntimeError``, as it always was.
  """


class FitWarning(UserWarning):
  """A fit returned parameters that need care (see the module docstring)."""


def effective_lrs(lrs: jax.Array, warmup_steps: int,
                  count_warmup_at_peak: bool) -> jax.Array:
  """The LRs a law sees: warmup steps replaced by the peak when asked.

  Tissue et al.'s script counts every warmup step at the peak LR
  (``count_warmup_at_peak=True``); otherwise warmup LRs are summed as run
  (Luo et al.'s ``S_W``). ``lrs[warmup_steps]`` is taken as the peak.
  """
  lrs = jnp.asarray(lrs)
  if warmup_steps and count_warmup_at_peak:
    peak = lrs[min(warmup_steps, lrs.shape[0] - 1)]
    lrs = jnp.where(jnp.arange(lrs.shape[0]) < warmup_steps, peak, lrs)
  return lrs


def lr_drops(lrs: jax.Array, warmup_steps: int = 0) -> jax.Array:
  """Per-step LR drops ``delta_k = eta_{k-1} - eta_k`` (0-based index k-1).

  ``eta_0 = eta_1`` (no drop before the first step) and drops during warmup
  (index ``<= warmup_steps``) are zero: annealing starts after warmup.
  """
  prev = jnp.concatenate([lrs[:1], lrs[:-1]])
  drops = prev - lrs
  return jnp.where(jnp.arange(lrs.shape[0]) <= warmup_steps, 0.0, drops)


def lr_decrease(curve: Curve, warmup_steps: int = 0) -> float:
  """The largest relative fall of the LR below its running maximum.

  Only LRs after warmup that the observed losses depend on count
  (``lrs[warmup_steps : max(steps)]``), so a decay after the last
  observation, or a warmup ramp, is no decrease.
  """
  lrs = curve.lrs[warmup_steps:int(curve.steps.max())]
  if lrs.size < 2:
    return 0.0
  peak = np.maximum.accumulate(lrs)
  return float(np.max((peak - lrs) / np.where(peak > 0, peak, 1.0)))


def huber(r: jax.Array, delta: float = HUBER_DELTA) -> jax.Array:
  abs_r = jnp.abs(r)
  return jnp.where(abs_r < delta, 0.5 * r**2, delta * (abs_r - 0.5 * delta))


def r_squared(observed: np.ndarray, predicted: np.ndarray) -> float:
  observed = np.asarray(observed, np.float64)
  ss_res = float(np.sum((observed - predicted)**2))
  ss_tot = float(np.sum((observed - observed.mean())**2))
  return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


class Law:
  """Base class of a fitted loss-curve law.

  Subclasses define ``param_names``, ``linear_names`` (the three linear
  parameters: offset, power-law coefficient, annealing coefficient),
  ``positive_bounds`` (natural-space bounds of the positive parameters),
  ``start_grid`` (values of the nonlinear parameters), ``default_options``,
  ``_terms`` (parameter-free precomputation from the LRs) and ``_loss``;
  ``law_name`` (words for messages), ``decay_params`` (the parameters only
  an LR decrease in the fit curves identifies) and ``requires_decrease``
  (fitting without one is an error rather than a warning).
  """

  param_names: ClassVar[tuple[str, ...]] = ()
  linear_names: ClassVar[tuple[str, str, str]] = ("L0", "A", "C")
  positive_bounds: ClassVar[Mapping[str, tuple[float, float]]] = {}
  start_grid: ClassVar[Mapping[str, Sequence[float]]] = {}
  default_options: ClassVar[Mapping[str, Any]] = {}
  n_refine: ClassVar[int] = 3
  law_name: ClassVar[str] = "law"
  decay_params: ClassVar[tuple[str, ...]] = ()
  requires_decrease: ClassVar[bool] = False

  def __init__(self, params: Mapping[str, float], **options: Any):
    missing = set(self.param_names) - set(params)
    if missing:
      raise ValueError(f"missing parameters {sorted(missing)}")
    unknown = set(options) - set(self.default_options)
    if unknown:
      raise ValueError(f"unknown options {sorted(unknown)}; known: "
                       f"{sorted(self.default_options)}")
    self._params = {k: float(params[k]) for k in self.param_names}
    self.options = {**self.default_options, **options}
    self.fit_info: dict[str, Any] = {}

  @property
  def params(self) -> dict[str, float]:
    return dict(self._params)

  def __repr__(self) -> str:
    inner = ", ".join(f"{k}={v:.6g}" for k, v in self._params.items())
    return f"{type(self).__name__}({inner})"

  # ---- subclass hooks --------------------------------------------------
  @classmethod
  def _terms(cls, lrs: jax.Array, steps: np.ndarray, options: Mapping[str, Any],
             mode: str) -> dict[str, jax.Array]:
    """Parameter-free arrays for the observed ``steps`` (1-based).

    ``mode``: "dense" (traceable in ``lrs``), "sparse" (exact, concrete LRs)
    or "blocked" (the fit objective; may approximate, see the subclass).
    """
    raise NotImplementedError

  @staticmethod
  def _loss(p: Mapping[str, jax.Array], terms: Mapping[str, jax.Array]
            ) -> jax.Array:
    raise NotImplementedError

  # ---- prediction ------------------------------------------------------
  def predict_jax(self, lrs: jax.Array, steps: np.ndarray) -> jax.Array:
    """Differentiable (in ``lrs``) prediction; call inside ``enable_x64``."""
    eff = effective_lrs(lrs, self.options["warmup_steps"],
                        self.options["count_warmup_at_peak"])
    terms = self._terms(eff, np.asarray(steps), self.options, "dense")
    p = {k: jnp.asarray(v) for k, v in self._params.items()}
    return self._loss(p, terms)

  def predict(self, lrs: Any, steps: Any = None) -> np.ndarray:
    """Predicted losses at ``steps``.

    Args:
      lrs: per-step LRs, ``lrs[i] = schedule(i)``.
      steps: steps (>= 1, < len(lrs)) to predict; when omitted every step
        ``1 .. len(lrs) - 1``. The loss at step ``s`` uses ``lrs[:s]``.

    Returns:
      float64 losses, one per step.
    """
    lrs = np.asarray(lrs, np.float64)
    steps = (np.arange(1, len(lrs)) if steps is None
             else np.atleast_1d(np.asarray(steps, np.int64)))
    validate_lrs(lrs, steps)
    with jax.enable_x64(True):
      terms = self._curve_terms(lrs, steps, self.options, "sparse")
      p = {k: jnp.asarray(v, jnp.float64) for k, v in self._params.items()}
      return np.asarray(_jitted_loss(type(self))(p, terms), np.float64)

  def score(self, curve: Curve) -> dict[str, float]:
    """Relative errors and R^2 of the prediction of ``curve``."""
    pred = self.predict(curve.lrs, curve.steps)
    rel = np.abs(pred - curve.losses) / curve.losses
    return {"mean_rel_err": float(rel.mean()), "max_rel_err": float(rel.max()),
            "r2": r_squared(curve.losses, pred)}

  @classmethod
  def _curve_terms(cls, lrs: np.ndarray, steps: np.ndarray,
                   options: Mapping[str, Any], mode: str
                   ) -> dict[str, jax.Array]:
    eff = effective_lrs(jnp.asarray(lrs, jnp.float64), options["warmup_steps"],
                        options["count_warmup_at_peak"])
    terms = cls._terms(eff, steps, options, mode)
    return {k: jnp.asarray(v, jnp.float64) for k, v in terms.items()}

  # ---- fitting ---------------------------------------------------------
  @classmethod
  def fit(cls, curves: Curve | Sequence[Curve], *, min_r2: float = 0.9,
          maxiter: int = 3000, **options: Any) -> Law:
    """Fits the law to ``curves`` (see the module docstring for the method).

    Args:
      curves: one or more curves, fitted jointly.
      min_r2: a fit whose R^2 on ``curves`` is below this raises FitError.
      maxiter: L-BFGS-B iteration limit from each starting point.
      **options: law options (see the subclass's ``default_options``).

    Returns:
      The fitted law. ``law.fit_info`` holds ``r2``, ``objective``,
      ``n_points``, the optimizer's ``success``, ``message``, ``nit`` and
      ``nfev`` (of the best start), ``unidentified`` (parameters the curves
      do not identify) and ``warnings`` (the sentences also issued as
      ``FitWarning``).

    Raises:
      ValueError: bad curves or options, too few points.
      FitError: the law needs an LR decrease the curves lack
        (``requires_decrease``), or the fit is unusable (not finite, R^2
        below ``min_r2``).
    """
    curves = [curves] if isinstance(curves, Curve) else list(curves)
    if not curves or not all(isinstance(c, Curve) for c in curves):
      raise ValueError(f"fit needs a non-empty list of Curve; got {curves!r}")
    n_points = sum(len(c) for c in curves)
    if n_points < len(cls.param_names) + 1:
      raise ValueError(
          f"too few points to fit {cls.__name__}: n_points={n_points}, need "
          f"at least {len(cls.param_names) + 1} (number of parameters + 1)")
    options = {**cls.default_options, **options}
    cls(dict.fromkeys(cls.param_names, 1.0), **options)  # validates options
    notes, unidentified = [], []
    if cls.decay_params and not any(
        lr_decrease(c, options["warmup_steps"]) > DECREASE_TOL for c in curves):
      names = ", ".join(c.name or f"curve {i}" for i, c in enumerate(curves))
      why = (f"the fit curves ({names}) contain no LR decrease after "
             f"warmup_steps={options['warmup_steps']}")
      if cls.requires_decrease:
        raise FitError(
            f"the {cls.law_name} needs at least one fit curve whose LR "
            f"decreases (a decay or cosine run) to identify "
            f"{', '.join(cls.decay_params)}; {why}")
      unidentified = list(cls.decay_params)
      notes.append(
          f"{cls.__name__}.fit: {', '.join(unidentified)} (the response to "
          f"an LR decay) is not identified because {why}; the law's "
          "predictions of decaying schedules are not meaningful")
    best = _minimize(cls, curves, options, maxiter)
    law = cls(cls._unpack_np(best.x), **options)
    if not best.success:
      notes.append(
          f"{cls.__name__}.fit: the optimizer did not converge "
          f"({str(best.message).strip() or 'no message'}) after {best.nit} "
          f"iterations and {best.nfev} evaluations; the parameters may be "
          "inexact")
    preds = [law.predict(c.lrs, c.steps) for c in curves]
    r2 = r_squared(np.concatenate([c.losses for c in curves]),
                   np.concatenate(preds))
    law.fit_info = {"r2": r2, "objective": float(best.fun),
                    "n_points": n_points, "success": bool(best.success),
                    "message": str(best.message), "nit": int(best.nit),
                    "nfev": int(best.nfev), "unidentified": unidentified,
                    "warnings": notes}
    flat = len(curves) == 1 and np.ptp(curves[0].losses) == 0
    if not flat and (not np.isfinite(r2) or r2 < min_r2):
      # A flat curve has no variance to explain; anything else must.
      raise FitError(
          f"{cls.__name__}.fit did not converge to a usable fit: R^2={r2:.4g} "
          f"(min_r2={min_r2}), optimizer: {best.message}, params {law.params}")
    for note in notes:
      warnings.warn(note, FitWarning, stacklevel=2)
    return law

  @classmethod
  def _unpack(cls, x: jax.Array) -> dict[str, jax.Array]:
    return {k: (x[i] if k == cls.linear_names[0] else jnp.exp(x[i]))
            for i, k in enumerate(cls.param_names)}

  @classmethod
  def _unpack_np(cls, x: np.ndarray) -> dict[str, float]:
    return {k: float(x[i] if k == cls.linear_names[0] else np.exp(x[i]))
            for i, k in enumerate(cls.param_names)}

  @classmethod
  def _nonlinear_names(cls) -> list[str]:
    return [k for k in cls.param_names if k not in cls.linear_names]

  @classmethod
  def _starts(cls, terms, curves, bounds) -> np.ndarray:
    """Grid over nonlinear params, linear ones by least squares; best first.

    Grid points are ranked by their least-squares residual (loss space).
    """
    offset, coef_a, coef_x = cls.linear_names
    nonlinear = cls._nonlinear_names()
    grid = np.array(list(itertools.product(
        *(cls.start_grid[k] for k in nonlinear))), np.float64)
    y = np.concatenate([c.losses for c in curves])
    u, v = _jitted_features(cls)(jnp.asarray(grid), terms)
    u, v = np.asarray(u), np.asarray(v)
    starts, residuals = [], []
    for g, ug, vg in zip(grid, u, v):
      design = np.stack([np.ones_like(ug), ug, -vg], axis=1)
      if not np.all(np.isfinite(design)):
        continue
      coef = np.linalg.lstsq(design, y, rcond=None)[0]
      residuals.append(float(np.sum((design @ coef - y)**2)))
      natural = dict(zip(nonlinear, g))
      natural.update({offset: coef[0], coef_a: coef[1], coef_x: coef[2]})
      x = []
      for i, k in enumerate(cls.param_names):
        lo, hi = bounds[i]
        val = natural[k] if k == offset else np.log(max(natural[k], 1e-300))
        x.append(np.clip(val if np.isfinite(val) else lo, lo, hi))
      starts.append(x)
    if not starts:
      raise FitError(f"{cls.__name__}.fit: the law is not finite at any "
                     "starting point")
    return np.asarray(starts, np.float64)[np.argsort(residuals)]


def _minimize(cls: type[Law], curves: Sequence[Curve],
              options: Mapping[str, Any], maxiter: int
              ) -> scipy.optimize.OptimizeResult:
  """L-BFGS-B from the best ``cls.n_refine`` starts; the lowest finite end."""
  log_obs = [np.log(c.losses) for c in curves]
  max_loss = max(float(c.losses.max()) for c in curves)
  bounds = [(0.0, 2.0 * max_loss) if k == cls.linear_names[0]
            else tuple(np.log(cls.positive_bounds[k])) for k in cls.param_names]
  best = None
  with jax.enable_x64(True):
    terms = tuple(cls._curve_terms(c.lrs, c.steps, options, "blocked")
                  for c in curves)
    data = (terms, tuple(jnp.asarray(y) for y in log_obs))
    starts = cls._starts(terms, curves, bounds)  # best first
    value_and_grad = _value_and_grad(cls)

    def fun(x):
      v, g = value_and_grad(jnp.asarray(x), data)
      return float(v), np.asarray(g, np.float64)

    for start in starts[:cls.n_refine]:
      res = scipy.optimize.minimize(
          fun, start, jac=True, method="L-BFGS-B", bounds=bounds,
          options={"maxiter": maxiter, "ftol": 1e-15, "gtol": 1e-11})
      usable = np.isfinite(res.fun) and np.all(np.isfinite(res.x))
      if usable and (best is None or res.fun < best.fun):
        best = res
  if best is None:
    raise FitError(f"{cls.__name__}.fit: the objective or the parameters are "
                   "not finite from any starting point")
  return best


def _objective(cls: type[Law], x: jax.Array, data) -> jax.Array:
  """Mean Huber loss of the log residuals, in units of ``HUBER_DELTA**2``."""
  terms, log_obs = data
  p = cls._unpack(x)
  total, count = 0.0, 0
  for t, y in zip(terms, log_obs):
    pred = cls._loss(p, t)
    safe = jnp.where(pred > 1e-8, pred, 1e-8)
    total = total + jnp.sum(huber(jnp.log(safe) - y))
    count += y.shape[0]
  return total / (count * HUBER_DELTA**2)


def _start_features(cls: type[Law], grid: jax.Array, terms
                    ) -> tuple[jax.Array, jax.Array]:
  """The power-law and annealing features (``u``, ``v``) at each grid point."""
  offset, coef_a, coef_x = cls.linear_names
  nonlinear = cls._nonlinear_names()

  def features(point):
    p = {k: point[i] for i, k in enumerate(nonlinear)}
    u = jnp.concatenate([cls._loss({**p, offset: 0.0, coef_a: 1.0,
                                    coef_x: 0.0}, t) for t in terms])
    v = jnp.concatenate([-cls._loss({**p, offset: 0.0, coef_a: 0.0,
                                     coef_x: 1.0}, t) for t in terms])
    return u, v

  return jax.lax.map(features, grid)


# One jitted function per law class, the data passed as arguments: each
# compiles once per shape, however many fits run.
@functools.cache
def _value_and_grad(cls: type[Law]):
  return jax.jit(jax.value_and_grad(functools.partial(_objective, cls)))


@functools.cache
def _jitted_features(cls: type[Law]):
  return jax.jit(functools.partial(_start_features, cls))


@functools.cache
def _jitted_loss(cls: type[Law]):
  return jax.jit(cls._loss)
