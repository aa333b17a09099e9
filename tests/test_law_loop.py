"""The loop study's pieces on synthetic curves: the comparison table, the
noise estimate and the proposals."""

import numpy as np
import pytest

from configs import law_extrapolation as config_module
from wsd_jax import laws, schedules
from wsd_jax.studies import law_loop

PEAK = 3e-4
LUO_25M = dict(L0=3.040, A=0.525, alpha=0.508, B=363.8, C=2.066, beta=0.583,
               gamma=0.641)


def test_end_noise_of_iid_noise_around_a_trend():
  rng = np.random.default_rng(0)
  steps = np.arange(1, 1001)
  losses = 2.0 - 1e-4 * steps + 0.02 * rng.standard_normal(1000)
  curve = laws.Curve(np.ones(1001), steps, losses)
  assert law_loop.end_noise(curve, points=1000) == pytest.approx(
      0.02 / np.mean(losses), rel=0.1)
  exact = laws.Curve(np.ones(1001), steps, 2.0 - 1e-4 * steps)
  assert law_loop.end_noise(exact) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.filterwarnings("ignore::wsd_jax.laws.FitWarning")
def test_compare_against_the_best_baselines():
  truth = laws.AnnealingLaw(dict(L0=2.9, A=0.45, alpha=0.45, C=0.8))
  n, steps = 1000, np.arange(100, 1001, 100)
  rng = np.random.default_rng(0)
  constant = np.full(n + 1, PEAK)
  law = laws.AnnealingLaw.fit([laws.Curve(constant, steps, truth.predict(
      constant, steps) * (1 + 1e-3 * rng.standard_normal(10)))], bootstrap=4)
  scheds = {"a": schedules.wsd(PEAK, n, 200), "b": schedules.cosine(PEAK, n),
            "c": schedules.wsd(PEAK, n, 500)}
  observed = {"a": 3.00, "b": 3.03, "c": 2.97}
  curves = {k: laws.Curve(np.asarray(v(np.arange(n + 1)), np.float64), steps,
                          np.r_[np.full(9, 3.2), observed[k]])
            for k, v in scheds.items()}
  kinds = {"a": "wsd", "b": "cosine", "c": "proposed"}
  rows = {r["run"]: r for r in law_loop.compare(law, curves, kinds, 0.9)}
  assert rows["c"]["vs_best_baseline"] == pytest.approx(2.97 / 3.00 - 1)
  assert rows["b"]["vs_best_wsd"] == pytest.approx(3.03 / 3.00 - 1)
  for k, c in curves.items():
    pred = law.predict(c.lrs, c.steps, return_interval=True)
    assert rows[k]["predicted_final"] == pred.loss[-1]
    assert rows[k]["band"] == (pred.lower[-1], pred.upper[-1])
    assert rows[k]["final_in_band"] == bool(
        pred.lower[-1] <= observed[k] <= pred.upper[-1])


@pytest.mark.slow
def test_proposals_stay_under_the_peak_with_the_runs_warmup():
  config = config_module.get_config("quick")
  s = config.study
  s.peak_value, s.predict_steps, s.warmup_steps = PEAK, 600, 30
  config.loop.num_iters = 30
  law = laws.MultiPowerLaw(LUO_25M, warmup_steps=30)
  proposed = law_loop.proposals(law, config)
  assert set(proposed) == {"proposed_free", "proposed_wsd"}
  warm = PEAK * np.arange(31) / 30
  for sched in proposed.values():
    lrs = np.asarray(sched(np.arange(601)), np.float64)
    np.testing.assert_allclose(lrs[:31], warm, rtol=1e-5, atol=1e-12)
    assert lrs.max() <= PEAK * (1 + 1e-6)
  wsd = proposed["proposed_wsd"]
  assert isinstance(wsd, schedules.WSD) and wsd.warmup_steps == 30
