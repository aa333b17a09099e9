"""Refined schedules from the gradient norms of an earlier run (Defazio,
Cutkosky, Mehta, Mishchenko, "When, Why and How Much? Adaptive Learning Rate
Scheduling by Refinement", arXiv 2310.07831).

With weights ``w_t = ||g_t||**-2`` (``||g_t||_1**-1`` for Adam-type
optimizers), the refined schedule is::

  eta_t = w_t * sum_{s > t} w_s   (t < T - 1),   eta_{T-1} = 0,

scaled so that its largest value is the peak. Constant norms give exactly the
linear decay ``peak * (T - 1 - t) / (T - 1)``. The norms are first
median-filtered as in the authors' code: window ``2*floor(s*n/2)+1`` over the
``n`` norms, the end reflect-padded by twice the window (cut off again), the
start padded with its nearest value (``scipy.ndimage.median_filter``'s
``nearest`` mode).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from wsd_jax import runs, schedules

NORM_KEYS = {"l2": "grad_norm", "l1": "grad_l1"}


def smooth(grad_norms: np.ndarray, smoothing: float) -> np.ndarray:
  """The median-filtered norms (the paper's recipe); ``smoothing=0``: as
  given."""
  g = np.asarray(grad_norms, np.float64)
  n = len(g)
  width = 2 * int(smoothing * n // 2) + 1
  if smoothing <= 0 or width == 1:
    return g
  pad = 2 * width
  padded = np.pad(g, (0, pad), mode="reflect")
  return ndimage.median_filter(padded, size=width, mode="nearest")[:n]


def refined_values(grad_norms: np.ndarray, *, peak_value: float,
                   total_steps: int | None = None, norm: str = "l2",
                   smoothing: float = 0.1) -> np.ndarray:
  """The refined LR of every step as a float64 array (see module doc).

  Raises:
    ValueError: naming the bad argument.
  """
  g = np.asarray(grad_norms, np.float64)
  if g.ndim != 1 or len(g) < 2:
    raise ValueError(f"grad_norms must be 1-D with at least 2 steps, got "
                     f"shape {g.shape}")
  if not np.all(np.isfinite(g)) or np.any(g <= 0):
    bad = int(np.argmax(~np.isfinite(g) | (g <= 0)))
    raise ValueError(f"grad_norms must be finite and > 0; grad_norms[{bad}]="
                     f"{g[bad]}")
  if norm not in NORM_KEYS:
    raise ValueError(f"norm={norm!r} must be one of {sorted(NORM_KEYS)}")
  if not np.isfinite(peak_value) or peak_value <= 0:
    raise ValueError(f"peak_value={peak_value} must be finite and > 0")
  if not 0 <= smoothing < 1:
    raise ValueError(f"smoothing={smoothing} must be in [0, 1)")
  if total_steps is not None:
    if int(total_steps) != total_steps or total_steps < 2:
      raise ValueError(f"total_steps={total_steps} must be an integer >= 2")
    g = np.interp(np.linspace(0, len(g) - 1, int(total_steps)),
                  np.arange(len(g)), g)
  g = smooth(g, smoothing)
  w = g ** (-2.0 if norm == "l2" else -1.0)
  after = np.cumsum(w[::-1])[::-1]   # after[t] = sum(w[t:])
  eta = np.zeros_like(w)
  eta[:-1] = w[:-1] * after[1:]
  return eta * (peak_value / eta.max())


def refined_schedule(grad_norms: np.ndarray, *, peak_value: float,
                     total_steps: int | None = None, norm: str = "l2",
                     smoothing: float = 0.1) -> schedules.Schedule:
  """A ``schedules.tabulated`` refined schedule (Defazio et al., 2023).

  Args:
    grad_norms: ``grad_norms[t]`` is the gradient norm (l2, or l1 for
      ``norm="l1"``) of step ``t`` of an earlier run.
    peak_value: the schedule's largest value.
    total_steps: the new run's length: the norms are resampled linearly to it
      (default: one step per norm).
    norm: ``"l2"`` (weights ``g**-2``, SGD) or ``"l1"`` (``g**-1``, Adam).
    smoothing: the median filter's width as a fraction of the run (0: none).
  """
  return schedules.get("tabulated", values=refined_values(
      grad_norms, peak_value=peak_value, total_steps=total_steps, norm=norm,
      smoothing=smoothing))


def refined_schedule_from_run(workdir: str, *, peak_value: float,
                              total_steps: int | None = None,
                              norm: str = "l2", smoothing: float = 0.1
                              ) -> schedules.Schedule:
  """:func:`refined_schedule` of a run directory's per-step norms
  (``grad_norm``, or ``grad_l1`` for ``norm="l1"``; see ``runs.Run.per_step``).
  """
  if norm not in NORM_KEYS:
    raise ValueError(f"norm={norm!r} must be one of {sorted(NORM_KEYS)}")
  norms = runs.Run(workdir).per_step(NORM_KEYS[norm])
  return refined_schedule(norms, peak_value=peak_value,
                          total_steps=total_steps, norm=norm,
                          smoothing=smoothing)
