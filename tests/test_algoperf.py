"""AlgoPerf-style benchmark: scoring against hand-computed values, Halton
points, time to target on synthetic eval tables, workloads, submissions,
the digits data and classifier, and the --quick pipeline end to end."""

import math
import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from wsd_jax import schedules
from wsd_jax.studies.algoperf import benchmark, scoring, search
from wsd_jax.studies.algoperf import submissions as subs_lib
from wsd_jax.studies.algoperf import targets as targets_lib
from wsd_jax.studies.algoperf import workloads

INF = math.inf

# Hand-computed fixture (medians over studies already taken):
#   w1: A 100, B 100 (a tie), C 500 (> 4 x 100: a miss)
#   w2: A missed, B 200, C 300 (ratio 1.5)
# rho_A = 1/2 everywhere -> 0.5; rho_B = 1 -> 1.0; rho_C = 0 below tau 1.5
# and 1/2 from the first grid point >= 1.5 (i = 17 of 100): trapezoid area
# (82 * 0.5 + 0.25) * 3/99 = 1.25, score 1.25 / 3.
TIMES = {"A": {"w1": 100.0, "w2": INF},
         "B": {"w1": 100.0, "w2": 200.0},
         "C": {"w1": 500.0, "w2": 300.0}}


def test_cutoff_and_ratios_by_hand():
  cut = scoring.apply_cutoff(TIMES)
  assert cut["C"]["w1"] == INF and cut["B"]["w1"] == 100.0
  r = scoring.ratios(TIMES)
  assert r == {"A": {"w1": 1.0, "w2": INF}, "B": {"w1": 1.0, "w2": 1.0},
               "C": {"w1": INF, "w2": 1.5}}


def test_cutoff_is_strict_at_four_times_the_best():
  r = scoring.ratios({"A": {"w": 10.0}, "B": {"w": 40.0}, "C": {"w": 40.1}})
  assert r["B"]["w"] == 4.0 and r["C"]["w"] == INF


def test_scores_by_hand():
  s = scoring.scores(TIMES)
  assert s["A"] == pytest.approx(0.5, abs=1e-12)
  assert s["B"] == pytest.approx(1.0, abs=1e-12)
  assert s["C"] == pytest.approx(1.25 / 3, abs=1e-12)


def test_profile_counts_workloads_present():
  rho = scoring.profiles(TIMES)
  grid = scoring.taus()
  assert len(grid) == 100 and grid[0] == 1.0 and grid[-1] == 4.0
  np.testing.assert_array_equal(rho["C"], np.where(grid >= 1.5, 0.5, 0.0))


def test_nobody_reaches_a_workload():
  s = scoring.scores({"A": {"w1": 1.0, "w2": INF},
                      "B": {"w1": 2.0, "w2": INF}})
  # w2 counts as a miss for both; on w1 B's ratio is 2.
  assert s["A"] == pytest.approx(0.5)
  assert s["B"] == pytest.approx(0.5 * (4 - 2) / 3, abs=0.01)


def test_study_time_earliest_evaluation_then_first_trial():
  trials = [
      {"global_step": [10, 20, 30], "score": [1.0, 2.0, 3.0],
       "m": [3.0, 2.0, 1.0]},   # reaches 1.5 at evaluation 2
      {"global_step": [10, 20, 30], "score": [1.0, 2.0, 3.0],
       "m": [3.0, 1.4, 1.0]},   # evaluation 1
      {"global_step": [10, 20, 30], "score": [1.0, 1.5, 3.0],
       "m": [3.0, 1.2, 0.5]},   # evaluation 1 too: a tie, the first wins
  ]
  assert scoring.study_time(trials, "m", 1.5, "global_step") == 20
  assert scoring.study_time(trials, "m", 1.5, "score") == 2.0
  assert scoring.study_time(trials, "m", 0.1, "score") == INF
  # maximising: >= target
  assert scoring.study_time(trials, "m", 2.5, "global_step",
                            minimize=False) == 10


def test_first_reached_ignores_nan_and_uses_le():
  assert scoring.first_reached([np.nan, 2.0, 1.0], 2.0) == 1
  assert scoring.first_reached([np.nan, np.nan], 2.0) == -1


def test_median_over_studies_with_misses():
  assert scoring.median_over_studies([100, INF, 300]) == 300
  assert scoring.median_over_studies([100, INF]) == INF
  assert scoring.median_over_studies([INF, INF, 100]) == INF
  assert scoring.median_over_studies([100, 200, 300]) == 200


def test_geomean_speedup():
  t = {"cosine": {"a": 100.0, "b": 200.0, "c": INF},
       "x": {"a": 50.0, "b": 200.0, "c": 10.0}}
  assert scoring.geomean_speedup(t, "x") == pytest.approx(math.sqrt(2))
  assert scoring.geomean_speedup(t, "cosine") == pytest.approx(1.0)


SPACE = {"lr": {"min": 1e-4, "max": 1e-1, "scaling": "log"},
         "wu": {"min": 0.0, "max": 0.2, "scaling": "linear"},
         "shape": {"feasible_points": ["linear", "1-sqrt"]}}


def test_halton_points_deterministic_and_in_range():
  a = search.points(SPACE, 64, seed=3)
  assert a == search.points(SPACE, 64, seed=3)
  assert a != search.points(SPACE, 64, seed=4)
  lrs = np.array([p["lr"] for p in a])
  assert (lrs >= 1e-4).all() and (lrs <= 1e-1).all()
  assert all(0.0 <= p["wu"] <= 0.2 for p in a)
  assert {p["shape"] for p in a} == {"linear", "1-sqrt"}
  # log scaling: about half the points below the geometric midpoint
  assert 24 <= (lrs < math.sqrt(1e-5)).sum() <= 40
  # quasirandom: the 64 points fill each linear dimension evenly
  counts = np.histogram([p["wu"] for p in a], bins=8, range=(0, 0.2))[0]
  assert counts.min() >= 6


@pytest.mark.parametrize("space", [
    {}, {"x": {"min": 1}}, {"x": {"min": 0, "max": 1, "scaling": "cubic"}},
    {"x": {"min": 0, "max": 1, "scaling": "log"}},
    {"x": {"min": 2, "max": 1}}, {"x": {"feasible_points": []}}])
def test_bad_space_refused(space):
  with pytest.raises(ValueError):
    search.check_space(space)


def _write_trial(root, sub, study, w, trial, steps, seconds, values,
                 metric="validation/loss"):
  d = benchmark.trial_dir(root, sub, study, w, trial)
  benchmark.write_csv(os.path.join(d, benchmark.MEASUREMENTS),
                      {"global_step": steps, "score": seconds,
                       metric: values})


def test_time_to_targets_on_synthetic_tables(tmp_path):
  root = str(tmp_path)
  w = workloads.get("bigram_quick")
  steps = [20, 40, 60, 80]
  # cosine: study 0 trial 1 reaches 2.0 at step 40, study 1 at 60 (trial 0).
  _write_trial(root, "cosine", 0, w.name, 0, steps, [1, 2, 3, 4],
               [3, 2.5, 2.1, 2.05])
  _write_trial(root, "cosine", 0, w.name, 1, steps, [1, 2, 3, 4],
               [3, 2.0, 1.9, 1.8])
  _write_trial(root, "cosine", 1, w.name, 0, steps, [2, 4, 6, 8],
               [3, 2.5, 1.99, 1.9])
  _write_trial(root, "cosine", 1, w.name, 1, steps, [2, 4, 6, 8],
               [3, 2.5, 2.5, 2.5])
  # constant: reaches only in study 1 (median of [inf, 80] is inf).
  for k in range(2):
    for i in range(2):
      _write_trial(root, "constant", k, w.name, i, steps, [1, 2, 3, 4],
                   [3, 2.9, 2.8, 1.0 if (k, i) == (1, 1) else 2.7])
  rows = benchmark.time_to_targets(root, ["cosine", "constant"], [w],
                                   {w.name: {"target": 2.0}}, 2, 2)
  cos, const = rows
  assert cos["steps"] == 50.0 and cos["seconds"] == 4.0  # medians
  assert cos["best_trials"] == [1, 0] and cos["studies_reached"] == 2
  assert const["steps"] == INF and const["studies_reached"] == 1
  table = benchmark.score_table(rows)
  assert table[0]["score_steps"] == pytest.approx(1.0)
  assert table[1]["score_steps"] == 0.0
  assert table[1]["workloads_reached"] == 0


def test_csv_round_trip(tmp_path):
  p = str(tmp_path / "m.csv")
  benchmark.write_csv(p, {"global_step": [1, 2], "score": [0.5, np.inf],
                          "validation/loss": [1.25, np.nan]})
  back = benchmark.read_csv(p)
  np.testing.assert_array_equal(back["global_step"], [1, 2])
  assert back["score"][1] == INF and np.isnan(back["validation/loss"][1])
  with open(p) as f:
    assert f.readline().strip() == "global_step,score,validation/loss"


def test_workloads_are_declarative_and_consistent():
  reg = workloads.registry()
  assert {"bigram", "bigram_quick", "mlp_text", "gpt_nano",
          "digits"} <= set(reg)
  for w in reg.values():
    assert w.metric in workloads.METRICS
    assert w.max_steps % w.eval_every == 0
    assert w.horizon == round(0.75 * w.step_hint)
    c = w.config()
    assert c.train.steps == w.max_steps and c.train.eval_every == w.eval_every
  assert reg["digits"].metric == "validation/error_rate"
  with pytest.raises(ValueError, match="known"):
    workloads.get("imagenet")


def test_submissions_build_their_schedules():
  w = workloads.get("bigram")
  for sub in subs_lib.SUBMISSIONS.values():
    point = search.points(sub.search_space, 1, seed=0)[0]
    c = sub.build(point, w.config(), w.horizon, w.max_steps)
    sched = schedules.from_config(c.schedule.to_dict())
    lrs = np.asarray(sched(np.arange(w.max_steps)))
    assert np.isfinite(lrs).all() and lrs.max() <= point["learning_rate"] * (
        1 + 1e-5)
    assert c.optimizer.name == sub.optimizer["name"]
  with pytest.raises(ValueError, match="known"):
    subs_lib.get("sgd")


def test_study_points_same_on_every_workload():
  sub = subs_lib.get("cosine")
  a = benchmark.trial_points(sub, 0, 5)
  assert a == benchmark.trial_points(sub, 0, 5)
  assert a != benchmark.trial_points(sub, 1, 5)


@pytest.mark.slow  # ~10 s: scikit-learn's loader and grain start-up
def test_digits_batches_and_classifier():
  from wsd_jax import data, models
  c = workloads.get("digits").config()
  train = next(iter(data.make_dataset(c.data, "train", seed=0)))
  assert train["inputs"].shape == (64, 64) and train["inputs"].max() <= 16
  assert (train["targets"] == train["targets"][:, :1]).all()
  ev1 = next(iter(data.make_dataset(c.data, "eval", seed=0)))
  ev2 = next(iter(data.make_dataset(c.data, "eval", seed=5)))
  np.testing.assert_array_equal(ev1["inputs"], ev2["inputs"])
  assert ev1["inputs"].shape == (360, 64)
  model = models.build(c.model, vocab_size=data.vocab_size(c.data),
                       max_seq_len=64, rngs=nnx.Rngs(0))
  logits = model(jnp.asarray(train["inputs"]))
  assert logits.shape == (64, 64, 10)
  np.testing.assert_array_equal(logits[:, 0], logits[:, 17])


def test_committed_targets_have_provenance():
  t = targets_lib.load()
  assert "bigram_quick" in t
  for name, entry in t.items():
    w = workloads.get(name)
    assert entry["metric"] == w.metric and entry["step_hint"] == w.step_hint
    p = entry["provenance"]
    assert len(p["search_log"]) >= 64 and len(p["seed_bests"]) >= 10
    assert entry["target"] == pytest.approx(np.median(p["seed_bests"]))
    assert "jax" in p["versions"]
  for name in ("bigram", "bigram_quick"):
    if name in t:  # near the known optimum (the fixed eval sample can put a
      # converged model a little below the corpus's exact entropy)
      assert abs(t[name]["target"] - t[name]["optimal_loss"]) < 0.05


@pytest.mark.slow
def test_quick_pipeline(tmp_path):
  from wsd_jax.studies.algoperf import app
  root = str(tmp_path)
  result = app.run(root, quick=True)
  for f in ("targets.json", "time_to_targets.csv", "scores.csv",
            "performance_profile_steps.png",
            "performance_profile_seconds.png", "report.md",
            "curves_bigram_quick.png", "robustness.png"):
    assert os.path.exists(os.path.join(root, f)), f
  for s in subs_lib.QUICK:
    for i in range(2):
      d = benchmark.trial_dir(root, s, 0, "bigram_quick", i)
      m = benchmark.read_csv(os.path.join(d, benchmark.MEASUREMENTS))
      np.testing.assert_array_equal(m["global_step"],
                                    np.arange(20, 241, 20))
      assert (np.diff(m["score"]) > 0).all()
      assert os.path.exists(os.path.join(d, "hparams.json"))
  with open(os.path.join(root, "scores.csv")) as f:
    assert f.readline().strip() == ("submission,score_steps,score_seconds,"
                                    "speedup_vs_cosine,workloads_reached")
  best = max(r["score_steps"] for r in result["scores"])
  assert best == pytest.approx(1.0)  # the fastest one is fastest everywhere
  # rerunning trains nothing and gives the same scores
  again = app.run(root, quick=True)
  assert [r["score_steps"] for r in again["scores"]] == [
      r["score_steps"] for r in result["scores"]]
