"""What AutoLRS computes on the host (Jin et al., arXiv 2105.10762): the
loss forecast of a short trial and the Bayesian optimisation that proposes
the next LR to try.

Forecast. A trial's training-loss series ``y[t]`` (``t = 0 .. n-1``: the loss
after ``t`` updates of the trial) is denoised as in the authors' code
(``autolrs_server.py``): 10 rounds of a degree-2 smoothing spline
(``scipy.interpolate.UnivariateSpline``), each dropping the
``round(0.03 n)`` points with the largest residuals among those in the first
half of the series; the spline through the kept points, evaluated at every
``t``, is then fitted with

    y(t) = a * exp(b * t) + c,    b < 0,

by variable projection (for a given ``b``, ``a`` and ``c`` are linear least
squares), and the forecast is ``y(tau)``: the loss after ``tau`` updates.

Two deviations from that code, both for short, low-noise series: the
splines smooth with ``s = n * sigma**2``, the noise ``sigma`` estimated from
the series (the median absolute deviation of its second differences), where
the code keeps scipy's default ``s = n``, which assumes unit noise: on a loss
series of order 1 that is a single parabola, which on a fast early decay
flags the first fifth of the points as outliers and then extrapolates over
them (a forecast off by far more than the noise); and the code drops *every*
first-half point when ``round(0.03 n)`` is 0 (a series under 17 points),
where this drops none.

Search. :class:`GPLCB` is Bayesian optimisation over ``u``, the log-LR
mapped to ``[0, 1]``: one random initial point, then the minimiser of the
lower confidence bound ``mu(u) - kappa * sigma(u)`` of a Gaussian process
(scikit-learn: Matern-5/2 + white noise on normalised targets, as
scikit-optimize's default GP; the length scale and noise of the highest
marginal likelihood on a grid) over a dense grid of ``u``, skipping points
already tried (ties go to the point farthest from those tried).
``kappa = 1e6`` is the authors' setting (nearly pure exploration: the
proposals spread over the range, and the stage keeps the
explored LR with the lowest forecast).
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
from scipy import interpolate, optimize
from sklearn import exceptions as sk_exceptions
from sklearn import gaussian_process
from sklearn.gaussian_process import kernels

SPLINE_DEGREE = 2
DENOISE_ROUNDS = 10
DROP_FRACTION = 0.03   # of the points, per round
DROP_BEFORE = 0.5      # only points in the first half are dropped
KAPPA = 1e6            # LCB weight of the authors' code
GRID_POINTS = 1025     # where the acquisition is minimised
MIN_POINTS = 5         # the shortest series a forecast is fitted to


class Forecast(NamedTuple):
  """``value = a * exp(b * horizon) + c`` fitted to a denoised series."""
  a: float
  b: float
  c: float
  horizon: int
  value: float

  def curve(self, t) -> np.ndarray:
    return self.a * np.exp(self.b * np.asarray(t, np.float64)) + self.c


def noise_level(losses) -> float:
  """The noise standard deviation of a series, robustly: the scaled median
  absolute deviation of its second differences (blind to a locally linear
  trend; their variance is ``6 sigma**2`` for white noise)."""
  d = np.diff(np.asarray(losses, np.float64), 2)
  if d.size == 0:
    return 0.0
  return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(6))


def _spline(t: np.ndarray, y: np.ndarray, sigma: float):
  return interpolate.UnivariateSpline(t, y, k=SPLINE_DEGREE,
                                      s=t.size * sigma ** 2)


def denoise(losses, rounds: int = DENOISE_ROUNDS,
            drop_fraction: float = DROP_FRACTION,
            drop_before: float = DROP_BEFORE) -> tuple[np.ndarray, np.ndarray]:
  """The points of ``losses`` that survive the iterative spline filter.

  Returns:
    ``(t, y)``: the kept steps (indices into ``losses``) and their losses.
  """
  y = np.asarray(losses, np.float64)
  t = np.arange(y.size, dtype=np.float64)
  bound = t[int((y.size - 1) * drop_before)]
  drop = int(round(y.size * drop_fraction))
  sigma = noise_level(y)
  for _ in range(rounds):
    if drop == 0 or t.size <= SPLINE_DEGREE + 1:
      break
    residual = np.abs(y - _spline(t, y, sigma)(t))
    worst = np.argsort(residual, kind="stable")[-drop:]
    worst = worst[t[worst] < bound]
    keep = np.ones(t.size, bool)
    keep[worst] = False
    t, y = t[keep], y[keep]
  return t, y


def smooth(losses) -> np.ndarray:
  """The denoised series: the spline through :func:`denoise`'s points,
  evaluated at every step."""
  t, y = denoise(losses)
  return _spline(t, y, noise_level(losses))(
      np.arange(len(losses), dtype=np.float64))


def _linear_fit(t: np.ndarray, y: np.ndarray, b: float
                ) -> tuple[float, float, float]:
  """``(a, c, squared error)`` of the best ``a exp(b t) + c`` for this b."""
  design = np.stack([np.exp(b * t), np.ones_like(t)], axis=1)
  (a, c), *_ = np.linalg.lstsq(design, y, rcond=None)
  return float(a), float(c), float(np.sum((design @ [a, c] - y) ** 2))


def fit_exponential(y, t=None) -> tuple[float, float, float]:
  """Least-squares ``(a, b, c)`` of ``y = a exp(b t) + c`` with ``b < 0``.

  ``b`` is searched on a log grid of ``|b| * span`` in ``[1e-3, 50]``
  (``span`` the series' length in steps), then refined by a bounded scalar
  minimisation around the best grid point; ``a`` and ``c`` follow by least
  squares.
  """
  y = np.asarray(y, np.float64)
  t = np.arange(y.size, dtype=np.float64) if t is None else np.asarray(
      t, np.float64)
  if y.size < 3 or not np.all(np.isfinite(y)):
    raise ValueError(f"need >= 3 finite losses to fit, got {y.size} "
                     f"({int(np.sum(~np.isfinite(y)))} non-finite)")
  span = max(float(t.max() - t.min()), 1.0)
  grid = np.linspace(math.log(1e-3 / span), math.log(50.0 / span), 161)
  error = lambda log_rate: _linear_fit(t, y, -math.exp(log_rate))[2]
  best = int(np.argmin([error(g) for g in grid]))
  lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
  log_rate = optimize.minimize_scalar(
      error, bounds=(lo, hi), method="bounded",
      options={"xatol": 1e-6}).x
  if error(grid[best]) < error(log_rate):
    log_rate = grid[best]
  b = -math.exp(log_rate)
  a, c, _ = _linear_fit(t, y, b)
  return a, b, c


def forecast(losses, horizon: int, denoised: bool = True) -> Forecast:
  """The loss after ``horizon`` updates, from a trial's losses
  (``losses[t]``: after ``t`` updates).

  Raises:
    ValueError: if the series is shorter than ``MIN_POINTS`` or not finite.
  """
  y = np.asarray(losses, np.float64)
  if y.size < MIN_POINTS or not np.all(np.isfinite(y)):
    raise ValueError(f"a forecast needs >= {MIN_POINTS} finite losses, got "
                     f"{y.size} with {int(np.sum(~np.isfinite(y)))} "
                     "non-finite")
  a, b, c = fit_exponential(smooth(y) if denoised else y)
  value = a * math.exp(b * horizon) + c
  return Forecast(a, b, c, int(horizon), float(value))


def to_unit(lr: float, bounds: tuple[float, float]) -> float:
  """``lr`` as its place in ``[0, 1]`` on the log scale of ``bounds``."""
  lo, hi = (math.log(v) for v in bounds)
  return (math.log(lr) - lo) / (hi - lo)


def from_unit(u: float, bounds: tuple[float, float]) -> float:
  lo, hi = (math.log(v) for v in bounds)
  return float(math.exp(lo + float(u) * (hi - lo)))


def _grid_optimizer(objective, initial_theta, bounds):
  """The kernel hyperparameters of the highest marginal likelihood on a log
  grid within ``bounds`` (scikit-learn's ``optimizer`` protocol). A grid of
  12 x 4 points costs ~20 ms for a handful of observations; L-BFGS with
  restarts took 0.2-0.5 s on the shared 2-core CPU, which would be a few
  percent of a short trial's wall time on its own."""
  del initial_theta
  axes = [np.linspace(lo, hi, n) for (lo, hi), n in zip(bounds, (12, 4))]
  thetas = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(
      -1, len(axes))
  losses = [objective(theta, eval_gradient=False) for theta in thetas]
  best = int(np.nanargmin(losses))
  return thetas[best], float(losses[best])


class GPLCB:
  """Bayesian optimisation of a noisy 1-D function on ``[0, 1]``.

  ``ask()`` proposes the next point, ``tell(u, value)`` records a result.
  Deterministic for a given ``seed`` and history (the random initial point
  and the GP's hyperparameter restarts are seeded).
  """

  def __init__(self, seed: int = 0, kappa: float = KAPPA,
               initial_points: int = 1):
    self.kappa, self.initial_points = float(kappa), int(initial_points)
    self._rng = np.random.default_rng(seed)
    self._seed = seed
    self.u: list[float] = []
    self.values: list[float] = []
    self.last: dict = {}  # how the last point was proposed

  def tell(self, u: float, value: float) -> None:
    self.u.append(float(u))
    self.values.append(float(value))

  def _gp(self) -> gaussian_process.GaussianProcessRegressor:
    kernel = (kernels.ConstantKernel(1.0, "fixed")  # targets are normalised
              # length scales under a tenth of the range fit two points
              # best and leave sigma flat (no guidance) between them
              * kernels.Matern(0.3, (0.1, 10.0), nu=2.5)
              + kernels.WhiteKernel(1e-3, (1e-6, 1.0)))
    gp = gaussian_process.GaussianProcessRegressor(
        kernel, normalize_y=True, optimizer=_grid_optimizer)
    with warnings.catch_warnings():  # a grid point on a bound is no news
      warnings.simplefilter("ignore", sk_exceptions.ConvergenceWarning)
      gp.fit(np.asarray(self.u)[:, None], np.asarray(self.values))
    return gp

  def ask(self) -> float:
    """The next point: random for the first ``initial_points``, then the
    grid point (not yet tried) of the lowest ``mu - kappa * sigma``."""
    if len(self.u) < self.initial_points:
      u = float(self._rng.uniform())
      self.last = {"proposed_by": "random"}
      return u
    grid = np.linspace(0.0, 1.0, GRID_POINTS)
    mu, sigma = self._gp().predict(grid[:, None], return_std=True)
    lcb = mu - self.kappa * sigma
    distance = np.min(np.abs(grid[:, None] - np.asarray(self.u)[None]),
                      axis=1)
    lcb[distance < 0.5 / (GRID_POINTS - 1)] = np.inf
    # ties (sigma at its prior value far from every point): the farthest
    tie = lcb <= lcb.min() + 1e-9 * max(1.0, abs(lcb.min()))
    i = int(np.argmax(np.where(tie, distance, -1.0)))
    self.last = {"proposed_by": "gp_lcb", "mu": float(mu[i]),
                 "sigma": float(sigma[i]), "kappa": self.kappa}
    return float(grid[i])
