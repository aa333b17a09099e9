"""The LR-scaling study: the power-law fit, the optimum of a cell, the
verdict on fabricated numbers (it must fail when the exponents differ
across batch sizes), and the quick form end to end (the JSON agrees with
the run directories)."""

import json
import os

import numpy as np
import pytest

from wsd_jax import runs
from wsd_jax.runs import rundir
from wsd_jax.studies import lr_scaling as study

TOKENS = (1e4, 3e4, 1e5, 3e5, 1e6)


def test_fit_recovers_a_and_b_exactly():
  t = np.asarray(TOKENS)
  a, b = study.fit_power_law(t, 3.7 * t ** -0.51)
  assert a == pytest.approx(3.7, rel=1e-9)
  assert b == pytest.approx(-0.51, abs=1e-12)


def test_fit_recovers_b_from_noisy_optima():
  rng = np.random.default_rng(0)
  t = np.geomspace(1e4, 1e7, 12)
  eta = 2.0 * t ** -0.4 * np.exp(0.05 * rng.standard_normal(t.size))
  a, b = study.fit_power_law(t, eta)
  assert b == pytest.approx(-0.4, abs=0.03)
  assert a == pytest.approx(2.0, rel=0.3)


def test_optimum_is_the_parabola_vertex_in_log_lr():
  lrs = study.log_grid(1e-3, 7, 4)
  x_star = np.log10(4.2e-3)
  loss = 2.0 + (np.log10(lrs) - x_star) ** 2
  eta, inside = study.optimum(lrs, loss)
  assert inside and eta == pytest.approx(4.2e-3, rel=1e-6)


def test_optimum_at_the_edge_and_non_finite_losses():
  lrs = (1e-3, 1e-2, 1e-1, 1.0)
  assert study.optimum(lrs, [1.0, 2.0, 3.0, 4.0]) == (1e-3, False)
  assert study.optimum(lrs, [4.0, 3.0, 2.0, 1.0]) == (1.0, False)
  # A diverged neighbour (NaN) is the worst point; no parabola through it.
  assert study.optimum(lrs, [3.0, 2.0, 1.0, np.nan]) == (0.1, True)
  assert study.optimum(lrs, [3.0, 1.0, np.nan, 0.5])[0] == pytest.approx(1.0)


def test_cell_optimum_is_the_argmin_of_the_seed_mean():
  p = study.Plan("text", tokens=(1,), batches=(1,), lrs=(1e-3, 1e-2, 1e-1,
                                                          1.0),
                 seeds=(0, 1))
  # Seed 0 alone prefers 1e-2, seed 1 alone 1e-1; the mean: 1e-1 (2.0 vs
  # 2.25), and its neighbours' mean (3.0, 2.25) refine it towards 1e-2.
  losses = np.array([[3.0, 3.0], [1.5, 3.0], [2.5, 1.5], [3.0, 3.0]])
  eta, inside = study.optima(p, losses[None, None])
  mean = losses.mean(axis=1)
  assert int(np.argmin(mean)) == 2 and inside[0, 0]
  assert eta[0, 0] == pytest.approx(study.optimum(p.lrs, mean)[0])
  assert 1e-2 < eta[0, 0] < 1e-1


def fabricated(p: study.Plan, exponents, noise=0.002, seed=0):
  """``losses[B, T, LR, S]``: a parabola in log10 LR around ``a_B T^b_B``
  (a_B proportional to B) plus per-seed noise."""
  rng = np.random.default_rng(seed)
  x = np.log10(p.lrs)
  out = np.empty((len(p.batches), len(p.tokens), len(p.lrs), len(p.seeds)))
  for bi, (batch, b) in enumerate(zip(p.batches, exponents)):
    for ti, t in enumerate(p.tokens):
      opt = np.log10(0.5 * batch * t ** b * TOKENS[0] ** -b / 64)
      out[bi, ti] = (2.0 + 0.5 * (x - opt)[:, None] ** 2
                     + noise * rng.standard_normal((len(x), len(p.seeds))))
  return out


PLAN = study.Plan("text", tokens=TOKENS[:4], batches=(8, 16, 32),
                  lrs=study.log_grid(1e-3, 16, 4), seeds=(0, 1, 2))


@pytest.mark.parametrize("exponents, expected", [
    ((-0.5, -0.5, -0.5), "reproduced"),
    ((-0.2, -0.5, -0.8), "refuted"),    # the claim violated
])
def test_verdict_flips_when_the_exponents_differ(exponents, expected):
  res = study.analyse(PLAN, fabricated(PLAN, exponents), n_boot=200)
  assert res["verdict"] == expected
  assert res["all_interior"]
  np.testing.assert_allclose([f["b"] for f in res["fits"]], exponents,
                             atol=0.05)
  for f in res["fits"]:
    assert f["b_ci"][0] <= f["b"] + 1e-9 and f["b"] - 1e-9 <= f["b_ci"][1]
  if len(set(exponents)) == 1:  # eta_opt proportional to B: slope 1 in log-log
    assert res["eta_vs_batch_slope"] == pytest.approx(1.0, abs=0.1)


def test_optimum_at_the_grid_edge_is_inconclusive():
  p = study.Plan("text", tokens=PLAN.tokens, batches=PLAN.batches,
                 lrs=PLAN.lrs[:6], seeds=PLAN.seeds)  # optima above 10^-1.75
  res = study.analyse(p, fabricated(p, (-0.5, -0.5, -0.5)), n_boot=50)
  assert not res["all_interior"] and res["verdict"] == "inconclusive"


def test_within_margin_rule():
  assert study.within([-0.1, 0.1], 0.2) == "reproduced"
  assert study.within([0.25, 0.4], 0.2) == "refuted"
  assert study.within([-0.4, -0.25], 0.2) == "refuted"
  assert study.within([0.1, 0.3], 0.2) == "inconclusive"


@pytest.mark.slow
def test_quick_study_end_to_end(tmp_path):
  root = str(tmp_path)
  r = study.run(root, quick=True)
  p = study.plan(quick=True)
  saved = json.loads(open(os.path.join(root, "results.json")).read())
  assert saved["analysis"]["verdict"] == r["analysis"]["verdict"]
  for bi, batch in enumerate(p.batches):
    for ti, t in enumerate(p.tokens):
      d = study.cell_dir(root, t, batch)
      members = rundir.read_json(os.path.join(d, "population.json"))
      assert len(members["members"]) == len(p.lrs) * len(p.seeds)
      for m in members["members"]:
        run = runs.Run(os.path.join(d, m["workdir"]))
        assert run.last_step == p.steps(t, batch)
        assert run.config["data"]["batch_size"] == batch
        i = p.lrs.index(m["values"]["peak_value"])
        j = p.seeds.index(m["values"]["seed"])
        assert saved["losses"][bi][ti][i][j] == pytest.approx(run.final_eval)
        assert max(run.column("lr")[1]) == pytest.approx(
            m["values"]["peak_value"], rel=1e-6)
  for name in saved["figures"].values():
    assert os.path.getsize(os.path.join(root, name)) > 0
  report = open(os.path.join(root, "report.md")).read()
  assert saved["analysis"]["verdict"] in report
