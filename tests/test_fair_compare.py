"""The fair equal-compute comparison: equal compute of every WSD variant, the
peak selection (selection seeds only), the verdicts on fabricated numbers
(they must fail when the order is violated), bad plans, and the quick study
end to end (its numbers against the run directories and the invariants of
the schedules)."""

import json
import os

import numpy as np
import pytest
from scipy import stats

from wsd_jax import runs
from wsd_jax.studies import fair_compare as study


def test_full_plan_sweeps_enough_peaks_and_fresh_seeds():
  p = study.plan()
  assert len(p.peaks) >= 6
  assert np.log10(p.peaks[-1] / p.peaks[0]) >= 1.5
  assert {120.0, 30.0} <= set(p.peaks) and len(p.eval_seeds) >= 5
  assert not set(p.selection_seeds) & set(p.eval_seeds)
  # None of the seeds the river-valley study (and its review) used.
  assert not set(p.seeds) & {0, 1, 2}


def test_the_toy_is_the_river_valley_studys_sgd_bigram_setup():
  from configs import river_valley
  ours, theirs = study.toy_config(), river_valley.get_config().run
  for key in ("data", "model", "optimizer"):
    assert ours[key].to_dict() == theirs[key].to_dict(), key
  assert ours.optimizer.name == "sgd" and ours.train.grad_clip == 0.0


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.3])
def test_every_wsd_variant_spends_the_same_compute(fraction):
  p = study.plan()
  steps, decays = p.wsd_lengths(fraction)
  # Main run to the fork B_i - d_i, plus every branch so far.
  for i, e in enumerate(p.ends):
    fork = steps[i] - decays[i]
    assert fork + sum(decays[:i + 1]) == e
    assert decays[i] % p.quantum == 0
    assert abs(decays[i] - fraction * steps[i]) <= p.quantum / 2
  if fraction == 0.1:   # WSD-S's own decays: the plan's budgets exactly
    assert steps == p.budgets and decays == p.ec(30.0).decays


def test_wsd_lengths_by_hand():
  assert study.wsd_lengths((400, 840, 1720), 0.2, 40) == (
      (400, 760, 1480), (80, 160, 280))


@pytest.mark.parametrize("change, word", [
    ({"peaks": (30.0, 10.0, 120.0)}, "peaks"),
    ({"peaks": (-1.0, 30.0, 120.0)}, "peaks"),
    ({"fixed_peaks": (240.0,)}, "240"),
    ({"eval_seeds": (100, 5)}, "share no seed"),
    ({"eval_seeds": (5,)}, "eval_seeds"),
    ({"shapes": ("linear", "sqrt-1")}, "sqrt-1"),
    ({"fractions": (0.1, 1.5)}, "1.5"),
    ({"budgets": (80, 40)}, "budgets"),
])
def test_bad_plans_fail_naming_the_value(change, word):
  kw = dict(peaks=(30.0, 60.0, 120.0), budgets=(400, 800),
            selection_seeds=(100,), eval_seeds=(1000, 1001))
  kw.update(change)
  with pytest.raises(ValueError, match=word):
    study.Plan(**kw)


def test_select_is_the_argmin_of_the_seed_mean():
  # [peaks, seeds, budgets]: seed 0 alone prefers peak 1, seed 1 peak 2;
  # the mean prefers peak 2 at budget 0; a NaN is the worst at budget 1.
  v = np.array([[[3.0, 2.0], [3.0, 2.0]],
                [[1.0, 5.0], [3.0, np.nan]],
                [[2.5, 1.0], [1.0, 1.0]]])
  idx, inside = study.select(v)
  assert idx.tolist() == [2, 2] and inside.tolist() == [False, False]
  idx, inside = study.select(v[:, :1])
  assert idx.tolist() == [1, 2] and inside.tolist() == [True, False]


def fabricated(p, order, noise=1e-4, seed=0):
  """``losses[m][P, S, B]``: a parabola in log peak with the optimum at
  peak index 2 plus an offset per method (``order``: method -> offset),
  plus per-seed noise shared by all methods (pairing) and a little own."""
  rng = np.random.default_rng(seed)
  x = np.log2(np.asarray(p.peaks) / p.peaks[2])
  shape = (len(p.peaks), len(p.seeds), len(p.budgets))
  common_noise = 0.01 * rng.standard_normal(shape[1:])
  out = {}
  for m in p.methods:
    out[m] = (2.4 + 0.01 * x[:, None, None] ** 2 + order.get(m, 0.0)
              + common_noise[None] + noise * rng.standard_normal(shape))
  return out


PLAN = study.Plan(peaks=(7.5, 15.0, 30.0, 60.0, 120.0),
                  budgets=(400, 800, 1600), selection_seeds=(100, 101),
                  eval_seeds=tuple(range(1000, 1006)))


@pytest.mark.parametrize("offsets, expected", [
    ({"wsd_s": -0.01, "cyclic_cosine": 0.01}, "reproduced"),
    ({"wsd_s": 0.0, "cyclic_cosine": -0.02}, "refuted"),   # cyclic wins
    ({"wsd_s": 0.02, "cyclic_cosine": 0.03}, "refuted"),   # WSD-S loses
])
def test_order_verdict_follows_the_numbers(offsets, expected):
  res = study.analyse(PLAN, fabricated(PLAN, offsets))
  assert res["verdict"] == expected
  assert set(res["order_by_budget"]) == {expected}
  assert res["all_interior"]
  for m in PLAN.methods:
    assert [c["peak"] for c in res["chosen"][m]] == [30.0] * 3


def test_an_exact_tie_counts_as_less_or_equal():
  losses = fabricated(PLAN, {"cyclic_cosine": 0.01})
  losses["wsd_s"] = losses[PLAN.paper_wsd].copy()
  res = study.analyse(PLAN, losses)
  part = res["order"][0]["wsd_s_minus_wsd"]
  assert part["mean"] == 0.0 and part["ci"] == [0.0, 0.0]
  assert part["verdict"] == "reproduced"


def test_peaks_are_chosen_on_selection_seeds_and_judged_on_fresh_ones():
  p = PLAN
  ns = len(p.selection_seeds)
  losses = fabricated(p, {"wsd_s": -0.01, "cyclic_cosine": 0.01})
  # The selection seeds see a lucky dip at peak 60 for cyclic cosine; the
  # evaluation seeds do not.
  losses["cyclic_cosine"][3, :ns, :] -= 0.05
  res = study.analyse(p, losses)
  assert [c["peak"] for c in res["chosen"]["cyclic_cosine"]] == [60.0] * 3
  tuned = np.asarray(res["tuned"]["cyclic_cosine"]["losses"])
  np.testing.assert_array_equal(tuned, losses["cyclic_cosine"][3, ns:, :])
  np.testing.assert_allclose(
      [c["selection_mean"] for c in res["chosen"]["cyclic_cosine"]],
      losses["cyclic_cosine"][3, :ns, :].mean(axis=0))
  # The order is judged on the evaluation seeds at 60, where cyclic cosine
  # is worse than at 30: WSD <= cyclic still holds.
  assert res["verdict"] == "reproduced"


def test_paired_intervals_by_independent_recomputation():
  losses = fabricated(PLAN, {"wsd_s": -0.003, "cyclic_cosine": 0.002},
                      noise=2e-3)
  res = study.analyse(PLAN, losses)
  ns = len(PLAN.selection_seeds)
  for c in res["comparisons"]:
    for i, t in enumerate(c["budgets"]):
      ka = res["chosen"][c["a"]][i]["index"]
      kb = res["chosen"][c["b"]][i]["index"]
      d = losses[c["a"]][ka, ns:, i] - losses[c["b"]][kb, ns:, i]
      half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
      assert t["mean"] == pytest.approx(d.mean(), abs=1e-12)
      assert t["ci"] == pytest.approx([d.mean() - half, d.mean() + half])
      want = ("reproduced" if d.mean() + half < study.MARGIN else "refuted"
              if d.mean() - half >= study.MARGIN else "inconclusive")
      assert t["verdict"] == want
  names = {(c["a"], c["b"]) for c in res["comparisons"]}
  assert ("wsd_s", "wsd_20_1-sqrt") in names
  assert ("wsd_10_linear", "cyclic_cosine") in names
  assert ("wsd_10_1-sqrt", "wsd_10_linear") in names
  assert ("wsd_20_linear", "wsd_10_linear") in names


def test_sensitivity_reads_the_fixed_peaks_from_the_sweep():
  losses = fabricated(PLAN, {"wsd_s": -0.01, "cyclic_cosine": 0.01})
  ns = len(PLAN.selection_seeds)
  # At peak 120 cyclic cosine wins clearly: the untuned order is refuted
  # while the tuned one (at 30) is reproduced.
  losses["cyclic_cosine"][4] -= 0.05
  res = study.analyse(PLAN, losses)
  assert res["verdict"] == "reproduced"
  assert res["sensitivity"]["120"]["verdict"] == "refuted"
  np.testing.assert_allclose(res["sensitivity"]["30"]["means"]["wsd_s"],
                             losses["wsd_s"][2, ns:].mean(axis=0))


def test_elapsed_spans_sessions_that_overlap():
  s = [{"started_utc": "2026-01-01 00:00:00", "wall_s": 100.0},
       {"started_utc": "2026-01-01 00:00:50", "wall_s": 100.0},
       {"started_utc": "2026-01-01 00:05:00", "wall_s": 10.0}]
  assert study.elapsed(s) == 310.0


def test_cyclic_cosine_has_less_lr_area_than_wsd_s():
  p = study.plan()
  ratio = study.lr_area_ratio(p)
  assert all(0.4 < r < 1.0 for r in ratio)
  # Independently, up to E_1 = 400 in closed form (LR area in peak units):
  # warmup triangle 20 x 1/2; WSD-S constant to 360 then a linear decay of
  # 40 steps to 0.1; cyclic cosine a cosine from 1 to 0.1 over 380 steps.
  assert p.ends[0] == 400 and p.warmup == 20
  wsd_s = 10 + 340 + 40 * 1.1 / 2
  cyclic = 10 + 380 * (0.1 + 0.9 / 2)
  assert ratio[0] == pytest.approx(cyclic / wsd_s, rel=0.01)


# ---------------------------------------------------------------- quick study
# About 45 s of CPU (66 runs: compiles, Orbax saves and restores, grain
# prefetch threads), so the slow lane, like the other quick studies.

@pytest.fixture(scope="module")
def quick(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("fair_compare"))
  return root, study.run(root, quick=True)


@pytest.mark.slow
def test_quick_numbers_come_from_the_run_directories(quick):
  root, r = quick
  p = study.plan(quick=True)
  saved = json.loads(open(os.path.join(root, "results.json")).read())
  for m in p.methods:
    for k, peak in enumerate(p.peaks):
      for j, s in enumerate(p.seeds):
        for i in range(len(p.budgets)):
          d, step = study.model(p, root, m, peak, s, i)
          run = runs.Run(d)
          assert saved["losses"][m][k][j][i] == pytest.approx(
              run.eval_at(step))
          lrs = run.lrs()
          if m.startswith("wsd_") and m != "wsd_s":
            # A branch: decays from the peak to 0.1 x peak, ending at step.
            assert run.last_step == step
            assert run.fork_step == step - p.wsd_lengths(
                0.1 if "_10_" in m else 0.2)[1][i]
            assert max(lrs) == pytest.approx(peak, rel=1e-6)
          else:
            assert max(lrs[:step]) == pytest.approx(peak, rel=1e-6)
  assert saved["analysis"]["verdict"] == r["analysis"]["verdict"]


@pytest.mark.slow
def test_quick_equal_compute_invariant_wsd_s_is_wsd_at_the_first_budget(
    quick):
  """Up to the first budget WSD-S and WSD-10%-linear are one schedule: the
  same seed gives the same loss."""
  root, r = quick
  p = study.plan(quick=True)
  a = np.asarray(r["losses"]["wsd_s"], np.float64)[:, :, 0]
  b = np.asarray(r["losses"][p.paper_wsd], np.float64)[:, :, 0]
  np.testing.assert_allclose(a, b, atol=1e-5)
  # ... and different seeds give different data.
  assert np.ptp(a, axis=1).min() > 0


@pytest.mark.slow
def test_quick_tuned_table_by_independent_selection(quick):
  _, r = quick
  p = study.plan(quick=True)
  a = r["analysis"]
  ns = len(p.selection_seeds)
  for m in p.methods:
    v = np.asarray(r["losses"][m], np.float64)
    for i in range(len(p.budgets)):
      k = int(np.argmin(v[:, :ns, i].mean(axis=1)))
      assert a["chosen"][m][i]["peak"] == p.peaks[k]
      assert a["tuned"][m]["mean"][i] == pytest.approx(v[k, ns:, i].mean())
  for key, s in a["sensitivity"].items():
    k = p.peaks.index(float(key))
    for m in p.methods:
      np.testing.assert_allclose(
          s["means"][m], np.asarray(r["losses"][m])[k, ns:].mean(axis=0))
  assert a["verdict"] == study.combine(a["order_by_budget"])


@pytest.mark.slow
def test_quick_report_states_verdicts_time_and_regime(quick):
  root, r = quick
  report = open(os.path.join(root, "report.md")).read()
  assert "Toy illustration" in report
  assert f"over budgets: **{r['analysis']['verdict']}**" in report
  assert len(r["sessions"]) == 1 and r["sessions"][0]["cpu_s"] > 0
  assert f"{r['total_wall_s']:.0f} s wall" in report
  assert "load average" in report and r["machine"] in report
  for name in r["figures"].values():
    assert f"]({name})" in report
    assert os.path.getsize(os.path.join(root, name)) > 10_000


@pytest.mark.slow
def test_quick_rerun_trains_nothing_and_adds_a_session(quick, capsys):
  root, r = quick
  again = study.run(root, quick=True)
  out = capsys.readouterr().out
  p = study.plan(quick=True)
  assert out.count("already done") == 2 + len(p.variants) * len(p.budgets)
  assert "steps in" not in out   # no stage trained anything
  assert again["losses"] == r["losses"]
  assert len(again["sessions"]) == 2
  assert again["total_cpu_s"] == pytest.approx(
      sum(x["cpu_s"] for x in again["sessions"]))
  # Run one after the other: elapsed covers both sessions' wall time.
  assert again["elapsed_s"] >= again["total_wall_s"] - 2
