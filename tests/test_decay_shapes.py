"""The decay-shapes study: plan validation, peak selection, the verdicts on
fabricated numbers (they must fail when the claims are violated), the law's
predicted optimum against an independent NumPy recomputation, and the quick
form end to end (the JSON agrees with the run directories)."""

import json
import os

import numpy as np
import pytest
from scipy import stats

from wsd_jax import runs, schedules
from wsd_jax.laws import AnnealingLaw
from wsd_jax.studies import decay_shapes as study

QUICK = study.plan(quick=True)


@pytest.mark.parametrize("field, value, match", [
    ("shapes", ("linear", "wiggle"), "shapes='wiggle'"),
    ("shapes", ("1-sqrt",), "must include 'linear'"),
    ("eval_seeds", (10, 11), "overlap the selection seeds"),
    ("eval_seeds", (0,), ">= 2 seeds"),
    ("peaks", (0.01, -0.1, 0.2), "peaks="),
    ("peaks", (0.1, 0.01, 0.2), "strictly increasing"),
    ("fractions", (0.1, 0.5, 1.5), "fractions=1.5"),
    ("multipliers", (2, 1), "multipliers=(2, 1)"),
    ("inv_final", 0.0, "inv_final=0.0"),
    ("law_every", 100, "law_every=100"),
])
def test_bad_plan_is_a_clear_error(field, value, match):
  import dataclasses
  with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(
      ")", r"\)")):
    dataclasses.replace(QUICK, **{field: value})


def test_full_plan_meets_the_protocol():
  p = study.plan()
  assert len(p.peaks) >= 6
  assert np.log10(p.peaks[-1] / p.peaks[0]) >= 1.5 - 1e-9
  assert len(p.eval_seeds) >= 5 and not set(p.eval_seeds) & set(
      p.select_seeds)
  assert set(p.shapes) == {"linear", "1-sqrt", "square", "cosine",
                           "inverse-linear"}
  assert p.lengths == (128, 256, 512)


def test_schedules_have_the_stated_shape():
  p = study.plan()
  n, d = p.steps, round(p.cooldown * p.steps)
  lr = {m: schedules.values(study.method_schedule(p, m, 0.05), n + 1)
        for m in p.methods}
  t = np.arange(n - d, n + 1)
  prog = (t - (n - d)) / d
  np.testing.assert_allclose(lr["wsd_1-sqrt"][t], 0.05 * (1 - np.sqrt(prog)),
                             atol=1e-7)
  np.testing.assert_allclose(lr["wsd_square"][t], 0.05 * (1 - prog ** 2),
                             atol=1e-7)
  np.testing.assert_allclose(lr["wsd_inverse-linear"][t],
                             0.05 / (1 + (1 / p.inv_final - 1) * prog),
                             rtol=1e-5)
  for m in p.methods:  # equal budget: all reach the peak, all end at final
    assert lr[m].max() == pytest.approx(0.05, rel=1e-6)
    if m == study.COSINE:
      assert lr[m][n] == pytest.approx(0.0, abs=1e-9)
  # The tabulated copy the trainer uses is the same schedule.
  tab = study.tabulate(study.method_schedule(p, "wsd_1-sqrt", 0.05), n)
  np.testing.assert_array_equal(schedules.values(tab, n),
                                lr["wsd_1-sqrt"][:n])


def test_select_peaks_is_the_argmin_of_the_seed_mean():
  peaks = (1e-3, 1e-2, 1e-1, 1.0)
  losses = np.array([
      [[3, 3], [1.5, 3.0], [2.5, 1.5], [3, 3]],      # mean argmin: 1e-1
      [[1, 1], [2, 2], [3, 3], [4, 4]],              # edge (low)
      [[3, 3], [2, 2], [np.nan, 1], [4, 4]],         # NaN is the worst
  ], np.float64)
  assert study.select_peaks(peaks, losses) == [(0.1, True), (1e-3, False),
                                               (1e-2, True)]


def _fabricated_shapes(offsets, n=6, noise=0.002, seed=0):
  rng = np.random.default_rng(seed)
  base = 2.0 + 0.05 * rng.standard_normal(n)   # seed effect shared by all
  return {m: base + off + noise * rng.standard_normal(n)
          for m, off in offsets.items()}


@pytest.mark.parametrize("offset, expected", [
    (0.0, "reproduced"), (0.05, "refuted"), (-0.05, "refuted")])
def test_matches_cosine_verdict_flips(offset, expected):
  methods = (study.COSINE, "wsd_linear", "wsd_1-sqrt")
  losses = _fabricated_shapes({study.COSINE: 0.0, "wsd_linear": 0.03,
                               "wsd_1-sqrt": offset})
  res = study.compare_shapes(methods, losses, dict.fromkeys(methods, True))
  assert res["claim_1sqrt_matches_cosine"] == expected
  assert res["margin"] == pytest.approx(0.005 * np.mean(
      losses[study.COSINE]))
  row = {r["method"]: r for r in res["rows"]}["wsd_1-sqrt"]
  d = losses["wsd_1-sqrt"] - losses[study.COSINE]   # independent t-interval
  half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
  assert row["vs_cosine"]["ci"] == pytest.approx([d.mean() - half,
                                                  d.mean() + half])
  assert row["vs_wsd_linear"]["mean"] == pytest.approx(
      np.mean(losses["wsd_1-sqrt"] - losses["wsd_linear"]))
  # Linear is 0.03 worse: it is refuted as matching cosine either way.
  lin = {r["method"]: r for r in res["rows"]}["wsd_linear"]
  assert lin["vs_cosine"]["matches"] == "refuted"
  if offset < 0:
    assert row["vs_cosine"]["better"] == "reproduced"


def test_a_chosen_peak_at_the_edge_makes_it_inconclusive():
  methods = (study.COSINE, "wsd_linear", "wsd_1-sqrt")
  losses = _fabricated_shapes({m: 0.0 for m in methods})
  interior = {study.COSINE: False, "wsd_linear": True, "wsd_1-sqrt": True}
  res = study.compare_shapes(methods, losses, interior)
  assert res["claim_1sqrt_matches_cosine"] == "inconclusive"


FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.5)
LENGTHS = (128, 256, 512)


def _fabricated_fractions(optima, seeds=5, noise=0.001, seed=0):
  """``losses[M, F, S]``: a parabola in log10 fraction around ``optima``."""
  rng = np.random.default_rng(seed)
  x = np.log10(FRACTIONS)
  return np.stack([2.0 + 0.3 * (x - np.log10(o))[:, None] ** 2
                   + noise * rng.standard_normal((len(x), seeds))
                   for o in optima])


@pytest.mark.parametrize("optima, in_range, shrinks", [
    ((0.18, 0.14, 0.11), "reproduced", "reproduced"),
    ((0.12, 0.15, 0.19), "reproduced", "refuted"),   # grows with length
    ((0.3, 0.28, 0.26), "refuted", "reproduced"),    # outside 10-20%
])
def test_fraction_verdicts(optima, in_range, shrinks):
  res = study.analyse_fractions(FRACTIONS, LENGTHS,
                                _fabricated_fractions(optima), n_boot=300)
  got = [r["optimum"] for r in res["per_length"]]
  np.testing.assert_allclose(np.log10(got), np.log10(optima), atol=0.03)
  assert res["in_range"] == in_range and res["shrinks"] == shrinks
  expected_slope = np.polyfit(np.log10(LENGTHS), np.log10(got), 1)[0]
  assert res["slope"] == pytest.approx(expected_slope)
  for r in res["per_length"]:
    assert r["ci"][0] <= r["optimum"] + 1e-9 <= r["ci"][1] + 2e-9


def test_an_optimum_at_the_edge_leaves_the_slope_unknown():
  res = study.analyse_fractions(FRACTIONS, LENGTHS,
                                _fabricated_fractions((0.02, 0.02, 0.02)),
                                n_boot=100)
  assert not res["per_length"][0]["interior"]
  assert res["shrinks"] == "inconclusive"
  assert res["in_range"] == "refuted"   # the edge 0.05 is below 10%


def test_edge_optima_keep_a_one_sided_slope_verdict():
  # Upper edge (0.5) at the longer lengths: the true optima are larger
  # still, so the measured slope is a lower bound and "refuted" stands.
  res = study.analyse_fractions(FRACTIONS, LENGTHS,
                                _fabricated_fractions((0.25, 0.7, 0.9)),
                                n_boot=100)
  assert [r["interior"] for r in res["per_length"]] == [True, False, False]
  assert res["shrinks"] == "refuted"
  # Lower edge at the longest length: an upper bound keeps "reproduced".
  res = study.analyse_fractions(FRACTIONS, LENGTHS,
                                _fabricated_fractions((0.3, 0.1, 0.02)),
                                n_boot=100)
  assert res["shrinks"] == "reproduced"
  # Upper edge at the shortest length moves the slope the other way.
  assert study.slope_verdict(FRACTIONS, LENGTHS, (0.5, 0.2, 0.3),
                             (False, True, True), (0.1, 0.3)) == (
                                 "inconclusive")
  assert study.slope_verdict(FRACTIONS, LENGTHS, (0.5, 0.2, 0.1),
                             (False, True, True), (-0.3, -0.1)) == (
                                 "reproduced")


def _numpy_annealing_loss(params, lrs, step, warmup, lam=0.999):
  """Tissue et al.'s law from its definition (independent of wsd_jax)."""
  eta = np.array(lrs[:step], np.float64)
  eta[:warmup] = lrs[warmup]                     # warmup counted at peak
  drops = np.concatenate([[0.0], eta[:-1] - eta[1:]])
  drops[:warmup + 1] = 0.0
  m, s2 = 0.0, 0.0
  for d in drops:
    m = lam * m + d
    s2 += m
  return (params["L0"] + params["A"] * eta.sum() ** -params["alpha"]
          - params["C"] * s2)


@pytest.mark.parametrize("c", [0.0, 20.0])
def test_law_optimum_against_numpy(c):
  p = QUICK
  params = {"L0": 1.5, "A": 0.8, "alpha": 0.5, "C": c}
  law = AnnealingLaw(params, warmup_steps=p.frac_warmup)
  res = study.law_predictions(law, p)
  for n, q in zip(p.lengths, res["per_length"]):
    lrs = lambda f: schedules.values(study.fraction_schedule(p, n, f), n + 1)
    np.testing.assert_allclose(
        q["grid_losses"],
        [_numpy_annealing_loss(params, lrs(f), n, p.frac_warmup)
         for f in p.fractions], rtol=1e-9)
    fine = [_numpy_annealing_loss(params, lrs(f), n, p.frac_warmup)
            for f in q["fine_fractions"]]
    assert q["optimum"] == pytest.approx(
        q["fine_fractions"][int(np.argmin(fine))])
    if c == 0:   # no annealing bonus: any decay only costs area
      assert q["optimum"] == pytest.approx(1 / n)
    else:
      assert q["optimum"] > 1 / n


def test_law_verdict_rule():
  measured = [{"ci": [0.1, 0.2], "interior": True},
              {"ci": [0.08, 0.15], "interior": True}]
  inside = [{"optimum": 0.15}, {"optimum": 0.1}]
  outside = [{"optimum": 0.15}, {"optimum": 0.3}]
  assert study.law_verdict(measured, inside) == "reproduced"
  assert study.law_verdict(measured, outside) == "refuted"
  measured[1]["interior"] = False
  assert study.law_verdict(measured, outside) == "inconclusive"


def test_in_range_rule():
  assert study.in_range([0.12, 0.18], 0.1, 0.2) == "reproduced"
  assert study.in_range([0.25, 0.4], 0.1, 0.2) == "refuted"
  assert study.in_range([0.02, 0.08], 0.1, 0.2) == "refuted"
  assert study.in_range([0.05, 0.15], 0.1, 0.2) == "inconclusive"


@pytest.mark.slow
def test_quick_study_end_to_end(tmp_path):
  root = str(tmp_path)
  r = study.run(root, quick=True, n_boot=200)
  p = QUICK
  saved = json.loads(open(os.path.join(root, "results.json")).read())
  assert saved["shapes"]["claim_1sqrt_matches_cosine"] == r["shapes"][
      "claim_1sqrt_matches_cosine"]
  # The chosen peak is the argmin of the selection runs' mean, read back.
  for i, m in enumerate(p.methods):
    mean = [np.mean([runs.Run(study.select_dir(root, m, x, s)).final_eval
                     for s in p.select_seeds]) for x in p.peaks]
    assert saved["chosen"][i]["peak"] == p.peaks[int(np.argmin(mean))]
    for j, s in enumerate(p.eval_seeds):
      run = runs.Run(study.eval_dir(root, m, s))
      assert run.last_step == p.steps and run.config["seed"] == s
      assert saved["eval_losses"][m][j] == pytest.approx(run.final_eval)
      np.testing.assert_allclose(
          run.lrs(p.steps), schedules.values(study.method_schedule(
              p, m, saved["chosen"][i]["peak"]), p.steps), rtol=1e-6)
  for i, n in enumerate(p.lengths):
    for k, f in enumerate(p.fractions):
      for j, s in enumerate(p.eval_seeds):
        run = runs.Run(study.frac_dir(root, n, f, s))
        assert run.last_step == n
        assert saved["frac_losses"][i][k][j] == pytest.approx(run.final_eval)
  law_run = runs.Run(study.law_dir(root, "constant", p.eval_seeds[0]))
  steps, _ = law_run.eval_curve()
  assert list(steps) == list(range(p.law_every, p.lengths[-1] + 1,
                                   p.law_every))
  for name in saved["figures"].values():
    assert os.path.getsize(os.path.join(root, name)) > 0
  report = open(os.path.join(root, "report.md")).read()
  for v in (saved["shapes"]["claim_1sqrt_matches_cosine"],
            saved["fractions"]["in_range"], saved["fractions"]["shrinks"],
            saved["law_verdict"]):
    assert f"**{v}**" in report or f": {v}.**" in report
