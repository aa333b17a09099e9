"""The adaptive study: its statistics and verdict rules on fabricated numbers
(each rule must fail on numbers that violate its claim), and the quick form
end to end (the JSON agrees with the run directories)."""

import json
import math
import os
import types

import numpy as np
import pytest
from scipy import stats

from wsd_jax import adaptive, runs
from wsd_jax.studies import adaptive as study
from wsd_jax.studies import adaptive_report, verdicts

SEEDS3 = np.array([0.0, 1.0, -1.0])


def test_paired_differences_and_t_interval():
  a, b = [2.0, 2.5, 2.2], [1.0, 1.4, 1.3]
  out = verdicts.paired(a, b)
  np.testing.assert_allclose(out["per_seed"], np.subtract(a, b))
  d = np.subtract(a, b)
  half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
  np.testing.assert_allclose(out["ci"], [d.mean() - half, d.mean() + half])
  assert out["mean"] == pytest.approx(d.mean()) and out["n"] == 3
  one = verdicts.paired([1.0], [0.0])   # one seed: no interval, no verdict
  assert one["ci"] == [-math.inf, math.inf]
  assert verdicts.verdict(one["ci"], 0.5) == "inconclusive"


def test_verdict_rule():
  assert verdicts.verdict([-0.3, -0.1], 0.0) == "reproduced"
  assert verdicts.verdict([0.1, 0.3], 0.0) == "refuted"
  assert verdicts.verdict([-0.1, 0.1], 0.0) == "inconclusive"
  assert verdicts.verdict([0.0, 0.1], 0.0) == "refuted"   # at the margin fails
  assert verdicts.combine(["reproduced", "reproduced"]) == "reproduced"
  assert verdicts.combine(["reproduced", "inconclusive"]) == "inconclusive"
  assert verdicts.combine(["reproduced", "refuted"]) == "refuted"


def test_best_index_is_argmin_of_seed_mean_and_nan_is_worst():
  losses = np.array([[3.0, 3.1], [2.0, 2.6], [2.2, 2.3], [np.nan, 1.0]])
  assert study.best_index(losses) == 2   # means 3.05, 2.3, 2.25, (nan)
  assert study.best_index(losses[:3]) == 2


@pytest.mark.parametrize("shift, expected", [
    (-0.05, "reproduced"),  # refined clearly better
    (0.0, "reproduced"),    # equal within the 0.1% margin
    (0.01, "refuted"),      # clearly worse than the margin (0.1% of 2.0)
])
def test_match_claim_flips_with_the_numbers(shift, expected):
  reference = 2.0 + 0.01 * SEEDS3
  method = reference + shift + 0.0002 * np.array([1.0, -1.0, 0.0])
  c = study.claim_match("a", "", method, reference, "linear")
  assert c["verdict"] == expected
  assert c["margin"] == pytest.approx(study.MATCH_MARGIN * 2.0)
  np.testing.assert_allclose(c["per_seed"], method - reference)


def test_sensitivity_claim_flips_with_the_numbers():
  peaks = np.logspace(-3, 0, 7)
  steep = np.stack([4.0 - 0.3 * np.arange(7) + 0.01 * s for s in SEEDS3], 1)
  flat = np.stack([2.2 - 0.005 * np.arange(7) + 0.001 * s for s in SEEDS3], 1)
  good = study.claim_sensitivity(peaks, steep, flat, worst=4.16)
  assert good["verdict"] == "reproduced"
  np.testing.assert_allclose(good["spread_adam"], steep.std(axis=0))
  bad = study.claim_sensitivity(peaks, steep, steep * 1.01, worst=4.16)
  assert bad["verdict"] == "refuted"
  # A diverged (non-finite) run counts as the untrained loss.
  nan = steep.copy()
  nan[-1] = np.nan
  np.testing.assert_allclose(study.spread(nan, 9.0)[0],
                             np.r_[steep[:-1, 0], 9.0].std())
  # The LR band within 2% of the best: flat covers the whole 3 decades.
  np.testing.assert_allclose(study.band_decades(peaks, flat), [3.0] * 3)
  np.testing.assert_allclose(study.band_decades(peaks, steep), [0.0] * 3)


def test_autolrs_claim_counts_compute_steps_and_can_fail():
  steps = np.array([100, 200, 300, 400], float)
  base = [(steps, np.array([3.0, 2.5, 2.2, 2.0 + 0.01 * s])) for s in SEEDS3]
  early = [(np.array([150.0, 300.0]), np.array([2.1, 1.9])) for _ in SEEDS3]
  out = study.claim_autolrs(base, early)
  assert out["verdict"] == "reproduced"
  assert out["autolrs_compute_steps"] == [300.0] * 3
  assert out["baseline_steps"] == [400.0] * 3
  late = [(np.array([300.0, 600.0]), np.array([2.1, 1.9])) for _ in SEEDS3]
  assert study.claim_autolrs(base, late)["verdict"] == "refuted"
  never = early[:2] + [(np.array([300.0, 600.0]), np.array([2.5, 1.9915]))]
  out = study.claim_autolrs(base, never)
  assert out["reached"] == [True, True, False] and out["verdict"] == "refuted"
  # The secondary measure: the target 0.1% above the baseline's final loss.
  assert out["within_match_margin"]["reached"] == [True, True, True]


def test_federation_claim_needs_both_client_lrs():
  better = {"client_lr": 1.0, "fedavg": [1.0, 1.1, 1.2],
            "fedhyper_g": [0.9, 1.0, 1.1]}
  worse = dict(better, fedhyper_g=[1.1, 1.2, 1.3])
  assert study.claim_federation({"good": better, "poor": better}
                                )["verdict"] == "reproduced"
  assert study.claim_federation({"good": better, "poor": worse}
                                )["verdict"] == "refuted"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("adaptive"))
  return root, adaptive_report.run(root, quick=True)


@pytest.mark.slow
def test_quick_study_numbers_agree_with_the_run_dirs(quick):
  root, out = quick
  saved = json.loads(open(os.path.join(root, "results.json")).read())
  assert saved["claims"] == json.loads(json.dumps(out["claims"]))
  for f in saved["figures"].values():
    assert os.path.getsize(os.path.join(root, f)) > 1000
  report = open(os.path.join(root, "report.md")).read()
  assert "## Verdicts" in report and "Student-t" in report
  (wl,) = study.plan(quick=True).workloads
  r = saved["workloads"]["bigram"]
  seeds = saved["seeds"]
  for m, sweep in r["sweep"].items():
    beta = r["hypergrad_lr"] if m == "adam_hd" else None
    for p, row in zip(sweep["peaks"], sweep["losses"]):
      for s, loss in zip(seeds, row):
        run = runs.Run(study.run_dir(root, wl, m, p, s, beta))
        assert run.last_step == wl.steps
        assert loss == pytest.approx(run.final_eval, abs=1e-12)
    # The chosen peak is the argmin of the seed-mean loss over the grid.
    means = np.mean(sweep["losses"], axis=1)
    assert r["best_peak"][m] == sweep["peaks"][int(np.argmin(means))]
    assert r["at_best"][m] == sweep["losses"][int(np.argmin(means))]
  for m, dirs in r["run_dirs"].items():
    assert r["at_best"][m] == [runs.Run(os.path.join(root, d)).final_eval
                               for d in dirs]
  # Paired differences are the per-seed differences of the losses at the
  # chosen peaks.
  claims = {c["claim"]: c for c in r["claims"]}
  np.testing.assert_allclose(claims["a"]["per_seed"], np.subtract(
      r["at_best"]["refined"], r["at_best"]["linear"]))
  np.testing.assert_allclose(claims["d"]["per_seed"], np.subtract(
      r["at_best"]["schedule_free"], r["at_best"][r["baseline"]]))
  assert claims["c"]["verdict"].startswith("not run")
  for c in saved["claims"]:
    assert c["verdict"] in ("reproduced", "refuted", "inconclusive") or (
        c["claim"] == "c")


@pytest.mark.slow
def test_quick_study_runs_are_what_they_claim(quick):
  root, out = quick
  r = out["workloads"]["bigram"]
  (wl,) = study.plan(quick=True).workloads
  # The refined run uses the l1 refinement of the tuned linear run's norms.
  linear = runs.Run(os.path.join(root, r["run_dirs"]["linear"][0]))
  refined = runs.Run(os.path.join(root, r["run_dirs"]["refined"][0]))
  peak = r["best_peak"]["linear"]
  np.testing.assert_allclose(
      refined.per_step("lr"),
      adaptive.refined_values(linear.per_step("grad_l1"), peak_value=peak,
                              norm="l1"), rtol=1e-6, atol=1e-12)
  # Adam-HD starts at its initial LR and adapts it; constant stays put.
  for p in wl.peaks:
    hd = runs.Run(study.run_dir(root, wl, "adam_hd", p, 0, r["hypergrad_lr"]))
    lrs = hd.per_step("lr")
    assert lrs[0] == pytest.approx(p) and np.ptp(lrs) > 0
    const = runs.Run(study.run_dir(root, wl, "constant", p, 0))
    np.testing.assert_allclose(const.per_step("lr"), p, rtol=1e-6)
  sf = runs.Run(study.run_dir(root, wl, "schedule_free", peak, 0))
  assert sf.config["optimizer"]["name"] == "contrib.schedule_free_adamw"
  # The federation: both methods, every seed, per client LR.
  for rows in out["federation"].values():
    assert len(rows["fedavg"]) == len(rows["fedhyper_g"]) == len(out["seeds"])


def test_autolrs_curve_is_eval_loss_against_compute_steps():
  rows = [{"step": 10, "loss": 3.0, "compute_steps": 60},
          {"step": 20, "loss": 2.8, "eval_loss": 2.9, "compute_steps": 70},
          {"step": 30, "eval_loss": float("nan"), "compute_steps": 130},
          {"step": 40, "eval_loss": 2.5, "compute_steps": 140}]
  steps, losses = study._compute_curve(types.SimpleNamespace(metrics=rows))
  np.testing.assert_array_equal(steps, [70, 140])
  np.testing.assert_array_equal(losses, [2.9, 2.5])
