"""Shared machinery of the loss-curve laws: the base class and the fit.

A law predicts ``L = L0 + A * u(s; theta) - X * v(s; theta)`` where ``L0``,
``A`` and ``X`` enter linearly and ``theta`` (exponents and shape constants)
does not. Both papers fit by minimising the Huber loss (delta 1e-3) of the
log residuals ``log L_pred - log L_obs`` (Tissue et al., arXiv 2408.11029;
Luo et al., arXiv 2503.12811). ``Law.fit`` does that in one of two ways
(``method``):

* ``"lbfgs"`` (the default): starting points from a grid over the nonlinear
  parameters, the linear ones by least squares at each grid point, ranked by
  the least-squares residual; L-BFGS-B (``solvers.lbfgs``) on log
  coordinates (``L0`` as is), bounded, from the best few. Options that make
  the fit generalise beyond the fitted steps:

  - ``prior_weight``: a Gaussian prior on the log of the parameters
    ``Law.prior`` names, toward its reference values;
  - ``select="tail"``: hold out the last ``tail_fraction`` of every fit
    curve's observed steps, fit every candidate (start x prior weight) on
    the rest, and keep the candidate whose fit predicts the held-out tails
    best (mean relative error), then refit it on every point;
  - ``early_stopping`` (with ``select="tail"``): also choose the number of
    L-BFGS-B iterations by the tail error, and stop the final fit there.

* ``"adamw"``: Luo et al.'s public fitting code (``solvers.adamw``): from
  ``Law._paper_start`` (their surrogate fit for the multi-power law), at most
  200 AdamW steps on the natural parameters, the best iterate.

Every jitted function is built once per law class (``functools.cache``) and
takes the data, the point weights and the prior as arguments, so fits, tail
fits and bootstrap refits on curves of the same shapes compile once.

A fit is checked at three levels:

* unusable (the objective or the parameters are not finite from every
  start, or R^2 on the fitted curves is NaN or below ``min_r2``):
  ``FitError``;
* usable but to be read with care (the optimizer stopped without converging,
  other than by early stopping; bootstrap refits that did not converge; a
  parameter that only an LR decrease identifies, fitted on curves without
  one): a ``FitWarning`` and the same sentence in ``fit_info["warnings"]``;
* a law that cannot be fitted at all without an LR decrease
  (``requires_decrease``): ``FitError`` before any optimisation.

``fit(..., bootstrap=N)`` adds ``N`` bootstrap refits (``uncertainty``);
``predict(..., return_interval=True)`` then gives a prediction band.
"""

from __future__ import annotations

import functools
import itertools
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from wsd_jax.laws import solvers, uncertainty
from wsd_jax.laws.curve import Curve, validate_lrs
from wsd_jax.laws.solvers import HUBER_DELTA, huber

DECREASE_TOL = 1e-6  # a relative LR fall below this is not a decrease

# Law.fit options for predicting runs longer than the fit runs: the prior
# weight (and start) chosen by how well a fit of the first 40% of each fit
# run's observed steps predicts the rest, a 2.5x extrapolation. Best of the
# variants of the extrapolation protocol (docs/law_extrapolation.md); not the
# default because it costs about 20 fits.
EXTRAPOLATE: Mapping[str, Any] = {
    "prior_weight": (0.0, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0), "select": "tail",
    "tail_fraction": 0.6}
METHODS = ("lbfgs", "adamw")
SELECTS = ("objective", "tail")
DEFAULT_MAXITER = {"lbfgs": 3000, "adamw": solvers.ADAMW["steps"]}


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


def r_squared(observed: np.ndarray, predicted: np.ndarray) -> float:
  observed = np.asarray(observed, np.float64)
  ss_res = float(np.sum((observed - predicted)**2))
  ss_tot = float(np.sum((observed - observed.mean())**2))
  return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")



class Prediction(NamedTuple):
  """A prediction with its band (``Law.predict(..., return_interval=True)``)."""
  loss: np.ndarray   # the fitted law's prediction
  lower: np.ndarray  # the band's lower edge
  upper: np.ndarray  # the band's upper edge


class Law:
  """Base class of a fitted loss-curve law.

  Subclasses define ``param_names``, ``linear_names`` (the three linear
  parameters: offset, power-law coefficient, annealing coefficient),
  ``positive_bounds`` (natural-space bounds of the positive parameters),
  ``start_grid`` (values of the nonlinear parameters), ``default_options``,
  ``_terms`` (parameter-free precomputation from the LRs) and ``_loss``;
  ``law_name`` (words for messages), ``decay_params`` (the parameters only
  an LR decrease in the fit curves identifies), ``requires_decrease``
  (fitting without one is an error rather than a warning), ``prior``
  (reference values of ``prior_weight``'s prior), ``exponent_names`` (the
  ``"adamw"`` method's slower group) and ``_paper_start``.
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
  prior: ClassVar[Mapping[str, float]] = {}
  exponent_names: ClassVar[tuple[str, ...]] = ()

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
    # Set by fit(..., bootstrap=N): the refits' parameters and the fit's
    # relative residuals (obs / pred - 1), for predict's band.
    self.ensemble: list[dict[str, float]] = []
    self.residuals = np.zeros(0)

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

  @classmethod
  def _paper_start(cls, curves: Sequence[Curve], options: Mapping[str, Any],
                   starts: np.ndarray) -> np.ndarray:
    """The ``"adamw"`` method's start (natural parameters): by default the
    best grid start; the multi-power law uses Luo et al.'s surrogate fit."""
    del curves, options
    return np.asarray([cls._unpack_np(starts[0])[k] for k in cls.param_names])

  # ---- prediction ------------------------------------------------------
  def predict_jax(self, lrs: jax.Array, steps: np.ndarray) -> jax.Array:
    """Differentiable (in ``lrs``) prediction; call inside ``enable_x64``."""
    eff = effective_lrs(lrs, self.options["warmup_steps"],
                        self.options["count_warmup_at_peak"])
    terms = self._terms(eff, np.asarray(steps), self.options, "dense")
    p = {k: jnp.asarray(v) for k, v in self._params.items()}
    return self._loss(p, terms)

  def predict(self, lrs: Any, steps: Any = None, *,
              return_interval: bool = False, level: float = 0.9,
              noise: bool = True) -> np.ndarray | Prediction:
    """Predicted losses at ``steps``.

    Args:
      lrs: per-step LRs, ``lrs[i] = schedule(i)``.
      steps: steps (>= 1, < len(lrs)) to predict; when omitted every step
        ``1 .. len(lrs) - 1``. The loss at step ``s`` uses ``lrs[:s]`` (see
        ``wsd_jax.laws.curve`` for a worked example).
      return_interval: also return a ``level`` band from the bootstrap
        refits of ``fit(..., bootstrap=N)`` (``uncertainty.band``).
      level: the band's nominal coverage.
      noise: the band is for an observed point (the refits' spread and the
        fit's residual noise) rather than for the law's curve alone.

    Returns:
      float64 losses, one per step; with ``return_interval`` a
      ``Prediction(loss, lower, upper)``.

    Raises:
      ValueError: bad LRs or steps; an interval from a law fitted without
        bootstrap refits.
    """
    lrs = np.asarray(lrs, np.float64)
    steps = (np.arange(1, len(lrs)) if steps is None
             else np.atleast_1d(np.asarray(steps, np.int64)))
    validate_lrs(lrs, steps)
    if return_interval and not self.ensemble:
      raise ValueError(
          f"{type(self).__name__}.predict(return_interval=True) needs "
          "bootstrap refits: fit with bootstrap=N (e.g. 64)")
    with jax.enable_x64(True):
      terms = self._curve_terms(lrs, steps, self.options, "sparse")
      loss_fn = solvers._jitted_loss(type(self))  # pylint: disable=protected-access
      at = lambda params: np.asarray(loss_fn(
          {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}, terms),
                                     np.float64)
      pred = at(self._params)
      if not return_interval:
        return pred
      replicates = np.stack([at(p) for p in self.ensemble])
    lower, upper = uncertainty.band(replicates,
                                    self.residuals if noise else None, level)
    # The band always contains the fitted law's own prediction.
    return Prediction(pred, np.minimum(lower, pred), np.maximum(upper, pred))

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
          maxiter: int | None = None, method: str = "lbfgs",
          prior_weight: float | Sequence[float] = 0.0,
          select: str = "objective", tail_fraction: float = 0.25,
          num_starts: int | None = None, early_stopping: bool = False,
          bootstrap: int = 0, bootstrap_kind: str = "blocks", seed: int = 0,
          **options: Any) -> Law:
    """Fits the law to ``curves`` (see the module docstring for the method).

    Args:
      curves: one or more curves, fitted jointly.
      min_r2: a fit whose R^2 on ``curves`` is below this raises FitError.
      maxiter: iteration limit of each L-BFGS-B run (default 3000) or the
        number of AdamW steps (default 200).
      method: "lbfgs" or "adamw" (Luo et al.'s code).
      prior_weight: weight of the prior on the log parameters ``Law.prior``
        names (in units of the objective); several with ``select="tail"``,
        which chooses one.
      select: "objective" (the start with the lowest objective) or "tail"
        (the candidate that best predicts the held-out tails).
      tail_fraction: the share of each curve's observed steps held out by
        ``select="tail"``.
      num_starts: grid starts refined (default ``n_refine``).
      early_stopping: choose the iteration count by the tail error too.
      bootstrap: number of bootstrap refits for ``predict``'s band.
      bootstrap_kind: "blocks" or "curves" (``uncertainty``).
      seed: of the bootstrap resampling.
      **options: law options (see the subclass's ``default_options``);
        ``warmup_steps`` defaults to the curves' (``Curve.warmup_steps``).

    Returns:
      The fitted law. ``law.fit_info`` holds ``r2``, ``objective`` (the
      minimised one, prior included), ``huber`` (the mean Huber loss of the
      log residuals in units of ``HUBER_DELTA**2``, no prior), ``n_points``, the final optimizer run's ``success``, ``message``,
      ``nit`` and ``nfev``, ``early_stopped``, ``method``,
      ``prior_weight`` (the one used), ``selection`` (every candidate of
      ``select="tail"``: prior weight, start, iterations, tail error),
      ``bootstrap`` (refits asked, fitted, failed, unconverged),
      ``unidentified`` (parameters the curves do not identify), ``seconds``
      and ``warnings`` (the sentences also issued as ``FitWarning``).

    Raises:
      ValueError: bad curves or options, too few points.
      FitError: the law needs an LR decrease the curves lack
        (``requires_decrease``), or the fit is unusable (not finite, R^2
        below ``min_r2``).
    """
    start_time = time.perf_counter()
    curves = [curves] if isinstance(curves, Curve) else list(curves)
    if not curves or not all(isinstance(c, Curve) for c in curves):
      raise ValueError(f"fit needs a non-empty list of Curve; got {curves!r}")
    n_points = sum(len(c) for c in curves)
    if n_points < len(cls.param_names) + 1:
      raise ValueError(
          f"too few points to fit {cls.__name__}: n_points={n_points}, need "
          f"at least {len(cls.param_names) + 1} (number of parameters + 1)")
    lams = (tuple(float(w) for w in prior_weight)
            if isinstance(prior_weight, Sequence) else (float(prior_weight),))
    _check_fit_args(cls, method, select, lams, tail_fraction, early_stopping,
                    bootstrap, bootstrap_kind)
    maxiter = DEFAULT_MAXITER[method] if maxiter is None else int(maxiter)
    if "warmup_steps" not in options:
      options["warmup_steps"] = _curves_warmup(curves)
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
    with jax.enable_x64(True):
      problem = _problem(cls, curves, options)
      starts = cls._starts(problem.terms, curves, problem.bounds)
      final = _Final(method, lams[0], maxiter, None)
      selection = []
      if method == "adamw":
        final.start = cls._paper_start(curves, options, starts)
        best = _adamw(cls, problem, final.start, problem.data(), maxiter)
        params = cls._natural_np(best.x)
      else:
        n = num_starts or cls.n_refine
        if select == "tail":
          final, selection = _select_by_tail(
              cls, problem, curves, starts[:n], lams, tail_fraction,
              early_stopping, maxiter)
          best = _run_final(problem, final)
        else:
          best = _best_of_starts(problem, starts[:n],
                                 problem.data(None, lams[0]), maxiter)
          final.start = best.x  # bootstrap refits start from the fit
        params = cls._unpack_np(best.x)
      law = cls(params, **options)
      early = final.iterations is not None
      if not best.success and not early:
        notes.append(
            f"{cls.__name__}.fit: the optimizer did not converge "
            f"({str(best.message).strip() or 'no message'}) after {best.nit} "
            f"iterations and {best.nfev} evaluations; the parameters may be "
            "inexact")
      fitted = problem.predictions(law.params)
    obs = np.concatenate([c.losses for c in curves])
    pred = np.concatenate(fitted)
    r2 = r_squared(obs, pred)
    law.residuals = obs / pred - 1
    data_fit = float(np.mean(np.asarray(huber(np.log(pred / obs))))
                     / HUBER_DELTA**2)
    law.fit_info = {
        "r2": r2, "objective": float(best.fun), "huber": data_fit,
        "n_points": n_points,
        "success": bool(best.success), "message": str(best.message),
        "nit": int(best.nit), "nfev": int(best.nfev), "early_stopped": early,
        "method": method, "prior_weight": final.prior_weight,
        "select": select, "selection": selection,
        "unidentified": unidentified, "warnings": notes}
    flat = len(curves) == 1 and np.ptp(curves[0].losses) == 0
    if not flat and (not np.isfinite(r2) or r2 < min_r2):
      # A flat curve has no variance to explain; anything else must.
      raise FitError(
          f"{cls.__name__}.fit did not converge to a usable fit: R^2={r2:.4g} "
          f"(min_r2={min_r2}), optimizer: {best.message}, params {law.params}")
    if bootstrap:
      with jax.enable_x64(True):
        law.ensemble, law.fit_info["bootstrap"] = _bootstrap(
            cls, problem, final, bootstrap, bootstrap_kind, seed)
      info = law.fit_info["bootstrap"]
      if info["unconverged"]:
        notes.append(
            f"{cls.__name__}.fit: {info['unconverged']} of {info['fitted']} "
            "bootstrap refits did not converge; the band may be too wide")
      if info["fitted"] < 2:
        raise FitError(
            f"{cls.__name__}.fit: only {info['fitted']} of {bootstrap} "
            f"bootstrap refits ({bootstrap_kind}) could be fitted; use "
            "bootstrap_kind='blocks'")
    law.fit_info["seconds"] = time.perf_counter() - start_time
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
  def _natural(cls, x: jax.Array) -> dict[str, jax.Array]:
    return {k: x[i] for i, k in enumerate(cls.param_names)}

  @classmethod
  def _natural_np(cls, x: np.ndarray) -> dict[str, float]:
    return {k: float(x[i]) for i, k in enumerate(cls.param_names)}

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


# ---- the steps of Law.fit -----------------------------------------------------


class _Final:
  """What the final fit runs (and each bootstrap refit repeats): the method,
  its start, the prior weight and the iteration limit; ``iterations`` is set
  when early stopping chose it."""

  def __init__(self, method: str, prior_weight: float, maxiter: int,
               iterations: int | None, start: np.ndarray | None = None):
    self.method, self.prior_weight, self.maxiter = method, prior_weight, maxiter
    self.iterations, self.start = iterations, start


def _check_fit_args(cls, method, select, lams, tail_fraction, early_stopping,
                    bootstrap, bootstrap_kind) -> None:
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}; got {method!r}")
  if select not in SELECTS:
    raise ValueError(f"select must be one of {SELECTS}; got {select!r}")
  if any(not np.isfinite(w) or w < 0 for w in lams) or not lams:
    raise ValueError(f"prior_weight must be finite and >= 0; got {lams}")
  if any(lams) and not cls.prior:
    raise ValueError(f"{cls.__name__} has no prior (Law.prior); "
                     "prior_weight must be 0")
  if len(lams) > 1 and select != "tail":
    raise ValueError(f"several prior weights {lams} need select='tail' to "
                     "choose one")
  if early_stopping and select != "tail":
    raise ValueError("early_stopping needs select='tail' (the iterations are "
                     "chosen by the tail error)")
  if method == "adamw" and (select != "objective" or any(lams)):
    raise ValueError("method='adamw' (Luo et al.'s recipe) takes no prior "
                     "and no tail selection")
  if select == "tail" and not 0 < tail_fraction < 1:
    raise ValueError(f"tail_fraction must be in (0, 1); got {tail_fraction}")
  if bootstrap < 0:
    raise ValueError(f"bootstrap must be >= 0; got {bootstrap}")
  if bootstrap_kind not in uncertainty.BOOTSTRAP_KINDS:
    raise ValueError(f"bootstrap_kind must be one of "
                     f"{uncertainty.BOOTSTRAP_KINDS}; got {bootstrap_kind!r}")


def _curves_warmup(curves: Sequence[Curve]) -> int:
  """The warmup the curves share (``Curve.warmup_steps``)."""
  found = sorted({int(c.warmup_steps) for c in curves})
  if len(found) > 1:
    named = ", ".join(f"{c.name or i}: {c.warmup_steps}"
                      for i, c in enumerate(curves))
    raise ValueError(f"the fit curves have different warmups ({named}); pass "
                     "warmup_steps=N to fit them with one")
  return found[0]


def _problem(cls, curves: Sequence[Curve], options: Mapping[str, Any]
             ) -> solvers.Problem:
  max_loss = max(float(c.losses.max()) for c in curves)
  bounds = [(0.0, 2.0 * max_loss) if k == cls.linear_names[0]
            else tuple(np.log(cls.positive_bounds[k])) for k in cls.param_names]
  x0 = np.array([np.log(cls.prior.get(k, 1.0)) for k in cls.param_names])
  mask = np.array([float(k in cls.prior) for k in cls.param_names])
  return solvers.Problem(
      cls, tuple(cls._curve_terms(c.lrs, c.steps, options, "blocked")
                 for c in curves),
      tuple(jnp.asarray(np.log(c.losses)) for c in curves), bounds, x0, mask,
      int(options["warmup_steps"]))


def _finite(res: scipy.optimize.OptimizeResult) -> bool:
  return bool(np.isfinite(res.fun) and np.all(np.isfinite(res.x)))


def _best_of_starts(problem: solvers.Problem, starts: np.ndarray, data,
                    maxiter: int) -> scipy.optimize.OptimizeResult:
  """L-BFGS-B from each start; the lowest finite end."""
  best = None
  for start in starts:
    res = solvers.lbfgs(problem, start, data, maxiter)
    if _finite(res) and (best is None or res.fun < best.fun):
      best = res
  if best is None:
    raise FitError(f"{problem.cls.__name__}.fit: the objective or the "
                   "parameters are not finite from any starting point")
  return best


def _adamw(cls, problem, x0, data, steps) -> scipy.optimize.OptimizeResult:
  mask = np.array([k in cls.exponent_names for k in cls.param_names])
  res = solvers.adamw(problem, x0, data, mask, steps=steps)
  if not _finite(res):
    raise FitError(f"{cls.__name__}.fit: the objective or the parameters are "
                   "not finite at any AdamW step")
  return res


def tail_weights(curves: Sequence[Curve], tail_fraction: float
                 ) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """Head and tail masks: the tail of a curve is its observed steps beyond
  ``first + (1 - tail_fraction) * (last - first)``."""
  head, tail = [], []
  for c in curves:
    cut = c.steps[0] + (1 - tail_fraction) * (c.steps[-1] - c.steps[0])
    head.append((c.steps <= cut).astype(np.float64))
    tail.append((c.steps > cut).astype(np.float64))
  return head, tail


def _select_by_tail(cls, problem, curves, starts, lams, tail_fraction,
                    early_stopping, maxiter) -> tuple[_Final, list[dict]]:
  """Fits every (prior weight, start) on the heads; the best on the tails."""
  head, tail = tail_weights(curves, tail_fraction)
  if sum(h.sum() for h in head) < len(cls.param_names) + 1 or not any(
      t.any() for t in tail):
    raise ValueError(f"tail_fraction={tail_fraction} leaves too few points "
                     "on the heads or none on the tails of the fit curves")
  heads = [c.observed_until(int(c.steps[h > 0][-1])) for c, h in
           zip(curves, head) if h.any()]
  warmup = problem.warmup_steps
  if cls.decay_params and not any(lr_decrease(c, warmup) > DECREASE_TOL
                                  for c in heads):
    raise ValueError(
        f"select='tail' with tail_fraction={tail_fraction}: the fit curves "
        "have no LR decrease before the tails, so the head fits cannot "
        f"identify {', '.join(cls.decay_params)}; use a smaller "
        "tail_fraction")
  obs = [c.losses for c in curves]

  def tail_error(x):
    preds = problem.predictions(cls._unpack_np(x))
    errs = [np.sum(t * np.abs(p / y - 1)) / t.sum()
            for p, y, t in zip(preds, obs, tail) if t.any()]
    return float(np.mean(errs))

  candidates, best = [], None
  for lam in lams:
    data = problem.data(head, lam)
    for i, x0 in enumerate(starts):
      res = solvers.lbfgs(problem, x0, data, maxiter, record=early_stopping)
      if not _finite(res):
        continue
      if early_stopping:
        errs = [tail_error(x) for x in res.path[1:]]
        k = int(np.nanargmin(errs)) + 1
        err, start, iterations = errs[k - 1], x0, k
      else:
        err, start, iterations = tail_error(res.x), res.x, None
      candidates.append({"prior_weight": lam, "start": i,
                         "iterations": iterations, "head_nit": int(res.nit),
                         "tail_rel_err": err})
      if np.isfinite(err) and (best is None or err < best[0]):
        best = (err, _Final("lbfgs", lam, iterations or maxiter, iterations,
                            start))
  if best is None:
    raise FitError(f"{cls.__name__}.fit: no candidate fit of the heads is "
                   "finite")
  return best[1], candidates


def _run_final(problem, final: _Final, weights=None
               ) -> scipy.optimize.OptimizeResult:
  res = solvers.lbfgs(problem, final.start,
                      problem.data(weights, final.prior_weight), final.maxiter)
  if not _finite(res):
    raise FitError(f"{problem.cls.__name__}.fit: the objective or the "
                   "parameters are not finite")
  return res


def _bootstrap(cls, problem, final: _Final, n: int, kind: str, seed: int
               ) -> tuple[list[dict[str, float]], dict[str, Any]]:
  """``n`` refits on resampled points (``uncertainty.bootstrap_weights``)."""
  rng = np.random.default_rng(seed)
  ensemble, failed, unconverged = [], 0, 0
  for _ in range(n):
    weights = uncertainty.bootstrap_weights(problem.sizes, kind, rng)
    if not _identifiable(cls, problem, weights):
      failed += 1
      continue
    try:
      if final.method == "adamw":
        res = _adamw(cls, problem, final.start,
                     problem.data(weights), final.maxiter)
        params = cls._natural_np(res.x)
      else:
        res = _run_final(problem, final, weights)
        params = cls._unpack_np(res.x)
    except FitError:
      failed += 1
      continue
    unconverged += int(not res.success and final.iterations is None)
    ensemble.append(params)
  return ensemble, {"kind": kind, "requested": n, "fitted": len(ensemble),
                    "failed": failed, "unconverged": unconverged, "seed": seed}


def _identifiable(cls, problem, weights) -> bool:
  """Whether a resample keeps points on a curve with an LR decrease (for a
  law that needs one) and enough points overall."""
  if sum(w.sum() > 0 for w in weights) == 0:
    return False
  if not cls.requires_decrease:
    return True
  return any(w.sum() > 0 and bool(np.any(np.asarray(t["drop"]) != 0))
             for w, t in zip(weights, problem.terms))


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


@functools.cache
def _jitted_features(cls: type[Law]):
  return jax.jit(functools.partial(_start_features, cls))
