"""Refined schedules (Defazio et al., arXiv 2310.07831): exact values."""

import time

import numpy as np
import pytest
from scipy import ndimage

from wsd_jax import adaptive, schedules


def test_constant_norms_give_exact_linear_decay():
  for norm in ("l2", "l1"):
    s = adaptive.refined_schedule(np.full(11, 3.0), peak_value=0.5, norm=norm)
    assert isinstance(s, schedules.Tabulated)
    np.testing.assert_allclose(s(np.arange(11)),
                               0.5 * (10 - np.arange(11)) / 10, rtol=1e-6)
  values = adaptive.refined_values(np.full(7, 2.0), peak_value=1.0,
                                   smoothing=0.5)
  np.testing.assert_allclose(values, (6 - np.arange(7)) / 6, rtol=1e-12)


def test_hand_computed_case():
  g = [1.0, 2.0, 1.0, 0.5]
  # l2: w = 1, 1/4, 1, 4; eta = w_t * sum(w[t+1:]) = 5.25, 1.25, 4, 0
  np.testing.assert_allclose(
      adaptive.refined_values(g, peak_value=2.0, smoothing=0),
      2.0 * np.array([5.25, 1.25, 4.0, 0.0]) / 5.25, rtol=1e-12)
  # l1 (Adam): w = 1, 1/2, 1, 2; eta = 3.5, 1.5, 2, 0
  np.testing.assert_allclose(
      adaptive.refined_values(g, peak_value=2.0, norm="l1", smoothing=0),
      2.0 * np.array([3.5, 1.5, 2.0, 0.0]) / 3.5, rtol=1e-12)


def test_smoothing_is_the_papers_recipe():
  rng = np.random.default_rng(1)
  g = np.exp(rng.normal(size=301)) + np.linspace(2, 0.5, 301)
  width = 2 * (int(0.1 * 301) // 2) + 1          # 31
  pad = 2 * width
  expected = ndimage.median_filter(np.pad(g, (0, pad), mode="reflect"),
                                   size=width, mode="nearest")[:-pad]
  np.testing.assert_allclose(adaptive.refined.smooth(g, 0.1), expected)
  w = expected ** -2.0
  eta = np.append(w[:-1] * np.cumsum(w[::-1])[::-1][1:], 0.0)
  np.testing.assert_allclose(
      adaptive.refined_values(g, peak_value=1.0), eta / eta.max(), rtol=1e-10)
  # the smoothed schedule differs from the raw one
  raw = adaptive.refined_values(g, peak_value=1.0, smoothing=0)
  assert np.abs(raw - eta / eta.max()).max() > 1e-2


def test_resampling_to_total_steps():
  g = np.array([1.0, 3.0])   # resampled to 1, 1.5, 2, 2.5, 3
  got = adaptive.refined_values(g, peak_value=1.0, total_steps=5, smoothing=0)
  w = np.array([1.0, 1.5, 2.0, 2.5, 3.0]) ** -2
  eta = np.append(w[:-1] * np.cumsum(w[::-1])[::-1][1:], 0.0)
  np.testing.assert_allclose(got, eta / eta.max(), rtol=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    (dict(grad_norms=[1.0]), "at least 2"),
    (dict(grad_norms=[1.0, 0.0]), "grad_norms\\[1\\]"),
    (dict(grad_norms=[1.0, 2.0], norm="l3"), "norm"),
    (dict(grad_norms=[1.0, 2.0], peak_value=-1.0), "peak_value"),
    (dict(grad_norms=[1.0, 2.0], total_steps=1), "total_steps"),
])
def test_bad_arguments(kwargs, match):
  kwargs = dict(dict(peak_value=1.0), **kwargs)
  with pytest.raises(ValueError, match=match):
    adaptive.refined_values(kwargs.pop("grad_norms"), **kwargs)


def test_million_steps_fast():
  g = np.abs(np.random.default_rng(0).normal(size=1_000_000)) + 1
  start = time.perf_counter()
  adaptive.refined_values(g, peak_value=1.0)
  assert time.perf_counter() - start < 3.0   # bench/adaptive.py: < 1 s
