"""Tests of wsd_jax.laws: areas, recovery of known parameters, bad inputs,
fit diagnostics (non-convergence, unidentified parameters), compile once."""

import json
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from wsd_jax import laws
from wsd_jax import schedules
from wsd_jax.laws import fitting
from wsd_jax.laws import report
from wsd_jax.laws import solvers
from wsd_jax.laws import uncertainty
from wsd_jax.laws.multipower import MultiPowerLaw

PEAK = 3e-4
LUO_25M = dict(L0=3.040, A=0.525, alpha=0.508, B=363.8, C=2.066, beta=0.583,
               gamma=0.641)
ANNEALING_TRUTH = dict(L0=2.9, A=0.45, alpha=0.45, C=0.8)


def noisy_curve(law, lrs, steps, rng, noise=1e-4):
  losses = law.predict(lrs, steps)
  return laws.Curve(lrs, steps, losses * (1 + noise * rng.standard_normal(
      len(steps))))


# ---- S1 and S2 against closed forms ---------------------------------------


def test_areas_constant():
  s1, s2 = laws.annealing_areas(np.full(100, 0.5))
  s = np.arange(1, 101)
  np.testing.assert_allclose(s1, 0.5 * s)
  np.testing.assert_allclose(s2, 0.0, atol=1e-12)


def test_areas_linear():
  # lrs[i] = 1 - d i: the drop is d from step 2 on, m_k = d (1 - lam^(k-1)) /
  # (1 - lam), S2(s) = d / (1 - lam) * (s - (1 - lam^s) / (1 - lam)).
  d, lam, n = 1e-3, 0.99, 500
  lrs = 1.0 - d * np.arange(n)
  with jax.enable_x64(True):
    s1, s2 = laws.annealing_areas(lrs, lam=lam)
  s = np.arange(1, n + 1)
  np.testing.assert_allclose(s1, s - d * s * (s - 1) / 2, rtol=1e-12)
  closed = d / (1 - lam) * (s - (1 - lam**s) / (1 - lam))
  np.testing.assert_allclose(s2, closed, rtol=1e-10, atol=1e-14)


def test_areas_step():
  # eta = a before step j0 (0-based), b after: one drop (a - b) at 1-based
  # step j0 + 1, so S2(s) = (a - b) (1 - lam^(s - j0)) / (1 - lam), s > j0.
  a, b, j0, lam, n = 1.0, 0.25, 40, 0.9, 120
  lrs = np.where(np.arange(n) < j0, a, b)
  with jax.enable_x64(True):
    s1, s2 = laws.annealing_areas(lrs, lam=lam)
  s = np.arange(1, n + 1)
  np.testing.assert_allclose(s1, np.where(s <= j0, a * s, a * j0 + b * (s - j0)))
  closed = np.where(s <= j0, 0.0, (a - b) * (1 - lam**(s - j0)) / (1 - lam))
  np.testing.assert_allclose(s2, closed, rtol=1e-12, atol=1e-14)


def test_warmup_counted_at_peak_or_as_run():
  lrs = np.r_[np.linspace(0, 1, 10, endpoint=False), np.ones(10)]
  at_peak, _ = laws.annealing_areas(lrs, warmup_steps=10)
  as_run, s2 = laws.annealing_areas(lrs, warmup_steps=10,
                                    count_warmup_at_peak=False)
  np.testing.assert_allclose(at_peak[-1], 20.0)
  np.testing.assert_allclose(as_run[-1], 14.5, rtol=1e-6)
  np.testing.assert_allclose(s2, 0.0, atol=1e-7)  # warmup is not annealing


# ---- the multi-power sum ----------------------------------------------------


def test_multipower_sum_matches_naive_loop():
  rng = np.random.default_rng(0)
  lrs = np.sort(rng.uniform(1e-5, 3e-4, 60))[::-1].copy()
  lrs[:20] = 3e-4
  law = MultiPowerLaw(LUO_25M)
  p = LUO_25M
  naive = []
  eta = np.r_[lrs[0], lrs]  # eta[0] = eta[1]; eta[tau] = lrs[tau - 1]
  for t in range(1, 60):
    ld = sum((eta[k - 1] - eta[k]) * (1 - (p["C"] * eta[k]**-p["gamma"] *
             eta[k:t + 1].sum() + 1)**-p["beta"]) for k in range(1, t + 1))
    naive.append(p["L0"] + p["A"] * eta[1:t + 1].sum()**-p["alpha"]
                 - p["B"] * ld)
  np.testing.assert_allclose(law.predict(lrs), naive, rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cosine", "wsd", "two_stage"])
def test_blocked_fit_objective_matches_exact_sum(kind):
  n = 20_001
  if kind == "cosine":
    sched = schedules.cosine(PEAK, n - 1, final_value=0.1 * PEAK)
  elif kind == "wsd":
    sched = schedules.wsd(PEAK, n - 1, 4000, decay_shape="1-sqrt")
  else:
    sched = schedules.splice(schedules.constant(PEAK), 12_000,
                             schedules.constant(3e-5))
  lrs = np.asarray(sched(np.arange(n)), np.float64)
  steps = np.unique(np.r_[np.arange(100, n, 100), np.arange(12_001, 12_050)])
  law = MultiPowerLaw(LUO_25M)
  with jax.enable_x64(True):
    params = {k: jnp.asarray(v) for k, v in LUO_25M.items()}
    blocked = MultiPowerLaw._loss(params, MultiPowerLaw._curve_terms(
        lrs, steps, law.options, "blocked"))
  np.testing.assert_allclose(blocked, law.predict(lrs, steps), rtol=1e-6)


# ---- recovery of known parameters ----------------------------------------


def test_annealing_law_recovers_parameters():
  n = 4000
  truth = laws.AnnealingLaw(ANNEALING_TRUTH)
  rng = np.random.default_rng(0)
  steps = np.arange(20, n + 1, 20)
  constant = np.full(n + 1, PEAK)
  wsd = np.asarray(schedules.wsd(PEAK, n, 1000)(np.arange(n + 1)), np.float64)
  curves = [noisy_curve(truth, constant, steps, rng),
            noisy_curve(truth, wsd, steps, rng)]
  fitted = laws.AnnealingLaw.fit(curves)
  assert fitted.fit_info["r2"] > 0.999
  for k, v in ANNEALING_TRUTH.items():
    assert fitted.params[k] == pytest.approx(v, rel=0.02), k


@pytest.mark.slow
def test_multipower_law_recovers_parameters():
  # Luo et al.'s 25M fit as truth; constant + cosine + two-stage runs whose
  # second stages sit at three LRs (identifying gamma apart from C), each
  # observed at every step right after its drop (identifying C and beta).
  n = 4000
  truth = MultiPowerLaw(LUO_25M)
  rng = np.random.default_rng(0)
  i = np.arange(n + 1)
  every = np.arange(20, n + 1, 20)
  cosine = np.asarray(schedules.cosine(PEAK, n, final_value=PEAK / 10)(i),
                      np.float64)
  curves = [noisy_curve(truth, np.full(n + 1, PEAK), every, rng),
            noisy_curve(truth, cosine, every, rng)]
  for at, low in ((1500, 1e-4), (2500, 3e-5), (3000, 1e-5)):
    dense = np.unique(np.r_[every, np.arange(at + 1, at + 300)])
    curves.append(noisy_curve(truth, np.where(i < at, PEAK, low), dense, rng))
  fitted = MultiPowerLaw.fit(curves)
  assert fitted.fit_info["r2"] > 0.999
  for k, v in LUO_25M.items():
    assert fitted.params[k] == pytest.approx(v, rel=0.02), k
  wsd = np.asarray(schedules.wsd(PEAK, n, 800, decay_shape="1-sqrt")(i))
  score = fitted.score(noisy_curve(truth, wsd, every, rng))
  assert score["mean_rel_err"] < 2e-4 and score["r2"] > 0.999


def test_predict_default_steps_and_score_keys():
  law = laws.AnnealingLaw(ANNEALING_TRUTH)
  lrs = np.full(11, PEAK)
  pred = law.predict(lrs)
  assert pred.shape == (10,)  # steps 1..len(lrs)-1
  np.testing.assert_allclose(pred[-1], law.predict(lrs, [10])[0])
  curve = laws.Curve(lrs, np.arange(1, 11), pred)
  score = law.score(curve)
  assert set(score) == {"mean_rel_err", "max_rel_err", "r2"}
  assert score["max_rel_err"] < 1e-12
  assert law.params == ANNEALING_TRUTH


# ---- bad input ---------------------------------------------------------------


@pytest.mark.parametrize("lrs, steps, losses, match", [
    (np.ones(10), [1, 2, 3], [3.0, 2.9], "mismatched lengths"),
    (np.ones(10), [1, 2, 3], [3.0, 0.0, 2.8], r"losses\[1\]=0.0"),
    (np.ones(10), [1, 2, 3], [3.0, -1.0, 2.8], r"losses\[1\]=-1.0"),
    (np.ones(10), [1, 2, 3], [3.0, np.nan, 2.8], r"losses\[1\]=nan"),
    (np.ones(10), [1, 2, 3], [3.0, np.inf, 2.8], r"losses\[1\]=inf"),
    (np.ones(10), [1, 5, 10], [3.0, 2.9, 2.8], "step 10 is beyond"),
    (np.ones(10), [0, 5, 9], [3.0, 2.9, 2.8], "steps must be >= 1"),
    (np.r_[1.0, np.nan, np.ones(8)], [1, 2], [3.0, 2.9], r"lrs\[1\]=nan"),
    (np.ones(10), [1, 1, 2], [3.0, 2.9, 2.8], "strictly increasing"),
])
def test_bad_curves_raise(lrs, steps, losses, match):
  with pytest.raises(ValueError, match=match):
    laws.Curve(lrs, steps, losses)


@pytest.mark.parametrize("cls", [laws.AnnealingLaw, MultiPowerLaw])
def test_too_few_points_raise(cls):
  k = len(cls.param_names)
  curve = laws.Curve(np.full(50, PEAK), np.arange(1, k + 1), np.full(k, 3.0))
  with pytest.raises(ValueError, match=f"n_points={k}"):
    cls.fit([curve])


def test_predict_steps_beyond_lrs_raise():
  with pytest.raises(ValueError, match="beyond the LR sequence"):
    laws.AnnealingLaw(ANNEALING_TRUTH).predict(np.full(10, PEAK), [10])


def test_poor_fit_raises_fit_error():
  rng = np.random.default_rng(0)
  curve = laws.Curve(np.full(401, PEAK), np.arange(1, 401),
                     3.0 + 0.1 * rng.standard_normal(400))
  with pytest.raises(laws.FitError, match="R\\^2"):
    laws.AnnealingLaw.fit([curve])
  # A ValueError, so that apps print it in one line; RuntimeError as before.
  assert issubclass(laws.FitError, ValueError)
  assert issubclass(laws.FitError, RuntimeError)


# ---- fit diagnostics -------------------------------------------------------


def constant_and_wsd(truth, n, seed=0, noise=1e-4):
  """A constant run and a WSD run (20% linear decay) generated by ``truth``."""
  rng = np.random.default_rng(seed)
  steps = np.arange(10, n + 1, 10)
  wsd = np.asarray(schedules.wsd(PEAK, n, n // 5)(np.arange(n + 1)), np.float64)
  return [noisy_curve(truth, np.full(n + 1, PEAK), steps, rng, noise),
          noisy_curve(truth, wsd, steps, rng, noise)]


@pytest.mark.slow
def test_unconverged_fit_warns_and_says_so_in_fit_info():
  curves = constant_and_wsd(laws.AnnealingLaw(ANNEALING_TRUTH), 1000)
  pattern = (r"AnnealingLaw\.fit: the optimizer did not converge \(STOP: TOTAL "
             r"NO\.? OF ITERATIONS REACHED LIMIT\) after 1 iterations and \d+ "
             r"evaluations")
  with pytest.warns(fitting.FitWarning, match=pattern) as record:
    law = laws.AnnealingLaw.fit(curves, maxiter=1, min_r2=-np.inf)
  assert len(record) == 1 and "\n" not in str(record[0].message)
  info = law.fit_info
  assert info["success"] is False and info["nit"] == 1 and info["nfev"] >= 1
  assert "ITERATIONS REACHED LIMIT" in info["message"]
  assert re.search(pattern, info["warnings"][0])
  # The same curves, given the iterations, converge without a warning.
  with warnings.catch_warnings():
    warnings.simplefilter("error", fitting.FitWarning)
    law = laws.AnnealingLaw.fit(curves)
  assert law.fit_info["warnings"] == [] and law.fit_info["nit"] > 1


def fake_minimize(x, success, message):
  def minimize(fun, x0, **kwargs):
    del kwargs
    fun(x0)
    return scipy.optimize.OptimizeResult(
        x=np.asarray(x0) if x is None else x, fun=fun(x0)[0], success=success,
        message=message, nit=7, nfev=11)
  return minimize


def test_abnormal_line_search_warns(monkeypatch):
  curves = constant_and_wsd(laws.AnnealingLaw(ANNEALING_TRUTH), 1000)
  monkeypatch.setattr(scipy.optimize, "minimize", fake_minimize(
      None, False, "ABNORMAL_TERMINATION_IN_LNSRCH"))
  with pytest.warns(fitting.FitWarning,
                    match=r"ABNORMAL_TERMINATION_IN_LNSRCH\) after 7 "
                          r"iterations and 11 evaluations"):
    law = laws.AnnealingLaw.fit(curves, min_r2=-np.inf)
  assert law.fit_info["success"] is False
  assert law.fit_info["message"] == "ABNORMAL_TERMINATION_IN_LNSRCH"
  assert (law.fit_info["nit"], law.fit_info["nfev"]) == (7, 11)


def test_non_finite_parameters_raise(monkeypatch):
  curves = constant_and_wsd(laws.AnnealingLaw(ANNEALING_TRUTH), 1000)
  monkeypatch.setattr(scipy.optimize, "minimize", fake_minimize(
      np.full(4, np.nan), False, "ABNORMAL_TERMINATION_IN_LNSRCH"))
  with pytest.raises(laws.FitError, match="not finite"):
    laws.AnnealingLaw.fit(curves, min_r2=-np.inf)


def test_lr_decrease():
  n = 1000
  wsd = np.asarray(schedules.wsd(PEAK, n, 200, warmup_steps=50)(
      np.arange(n + 1)), np.float64)
  before_decay = laws.Curve(wsd, np.arange(100, 801, 100), np.full(8, 3.0))
  assert fitting.lr_decrease(before_decay) == 0.0  # warmup is no decrease
  after = laws.Curve(wsd, np.arange(100, 1001, 100), np.full(10, 3.0))
  # The loss at step 1000 has seen lrs[:1000]: the decay down to lrs[999].
  assert fitting.lr_decrease(after) == pytest.approx(1 - wsd[999] / PEAK)
  # One step of the decay is seen by the loss at step 802.
  seen = laws.Curve(wsd, np.r_[np.arange(100, 801, 100), 802],
                    np.full(9, 3.0))
  assert fitting.lr_decrease(seen) == pytest.approx(1 / 200, rel=1e-3)


def test_constant_only_annealing_fit_notes_unidentified_c():
  truth = laws.AnnealingLaw(ANNEALING_TRUTH)
  constant = constant_and_wsd(truth, 2000)[0]
  with pytest.warns(fitting.FitWarning,
                    match=r"C \(the response to an LR decay\) is not identified"
                          r" because the fit curves .* contain no LR decrease"):
    law = laws.AnnealingLaw.fit([constant])
  assert law.fit_info["unidentified"] == ["C"]
  assert "no LR decrease" in law.fit_info["warnings"][0]
  for k in ("L0", "A", "alpha"):  # what a constant run identifies
    assert law.params[k] == pytest.approx(ANNEALING_TRUTH[k], rel=0.05), k


def test_constant_only_multipower_fit_raises_one_sentence():
  constant = constant_and_wsd(MultiPowerLaw(LUO_25M), 2000)[0]
  with pytest.raises(laws.FitError) as error:
    MultiPowerLaw.fit([constant])
  message = str(error.value)
  assert message.startswith(
      "the multi-power law needs at least one fit curve whose LR decreases "
      "(a decay or cosine run) to identify B, C, beta, gamma")
  assert "\n" not in message and isinstance(error.value, ValueError)


# ---- compile once ----------------------------------------------------------


@pytest.fixture
def backend_compiles():
  """Names of the functions XLA compiles while the test runs."""
  names = []

  def listener(event, duration, **kwargs):
    del duration
    if event == "/jax/core/compile/backend_compile_duration":
      names.append(kwargs.get("fun_name"))

  jax.monitoring.register_event_duration_secs_listener(listener)
  yield names
  jax.monitoring.unregister_event_duration_listener(listener)


@pytest.mark.filterwarnings("ignore::wsd_jax.laws.fitting.FitWarning")
@pytest.mark.parametrize("cls, truth", [(laws.AnnealingLaw, ANNEALING_TRUTH),
                                        (MultiPowerLaw, LUO_25M)])
@pytest.mark.slow
def test_second_fit_of_same_shapes_does_not_compile(cls, truth,
                                                    backend_compiles):
  n = 613  # shapes no other test uses, so the first fit compiles
  cls.fit(constant_and_wsd(cls(truth), n, seed=0))
  assert backend_compiles, "the first fit should compile"
  backend_compiles.clear()
  law = cls.fit(constant_and_wsd(cls(truth), n, seed=1))
  assert backend_compiles == []
  assert law.fit_info["r2"] > 0.99
  # Tail selection over prior weights and bootstrap refits reuse the same
  # jitted objective (weights and prior are arguments).
  law = cls.fit(constant_and_wsd(cls(truth), n, seed=2), bootstrap=3,
                prior_weight=(0.0, 1.0), select="tail", tail_fraction=0.1)
  assert backend_compiles == []
  assert law.fit_info["bootstrap"]["fitted"] == 3


# ---- report tables ---------------------------------------------------------


def test_summary_reports_both_worst_errors():
  rows = [{"role": "fit", "run": "a", "schedule": "constant",
           "mean_rel_err": 0.001, "max_rel_err": 0.002, "r2": 0.999},
          {"role": "predict", "run": "b", "schedule": "wsd",
           "mean_rel_err": 0.002, "max_rel_err": 0.01, "r2": 0.99},
          {"role": "predict", "run": "c", "schedule": "cosine",
           "mean_rel_err": 0.004, "max_rel_err": 0.03, "r2": 0.98}]
  summary = {s["role"]: s for s in report.summarize(rows)}
  held = summary["predict"]
  assert held["runs"] == 2
  assert held["mean_rel_err"] == pytest.approx(0.003)
  assert held["max_rel_err"] == pytest.approx(0.03)  # max over runs
  assert held["mean_max_rel_err"] == pytest.approx(0.02)  # mean of the maxima
  assert held["min_r2"] == pytest.approx(0.98)
  assert summary["fit"]["max_rel_err"] == pytest.approx(0.002)
  table = report.markdown_table(report.summarize(rows), report.SUMMARY_COLUMNS)
  assert "| predict | 2 | 0.3000% | 3.0000% | 2.0000% | 0.980000 |" in table


# ---- run directories ------------------------------------------------------


def write_run(path, name, schedule, steps, losses, parent=None, fork_step=None):
  path.mkdir(parents=True)
  (path / "run.json").write_text(json.dumps({
      "name": name, "parent": parent, "fork_step": fork_step,
      "schedule": schedules.to_config(schedule)}))
  with open(path / "metrics.jsonl", "w") as f:
    for s, loss in zip(steps, losses):  # one row per step, as the trainer
      row = {"step": int(s), "loss": float(loss) + 0.1,
             "lr": float(schedule(int(s) - 1))}
      if s % 10 == 0:
        row["eval_loss"] = float(loss)
      f.write(json.dumps(row) + "\n")


def test_from_run_main_and_branch(tmp_path):
  base = schedules.constant(PEAK)
  branch = schedules.branch(base, at_step=60, decay_steps=40)
  main = tmp_path / "main"
  write_run(main, "main", base, np.arange(1, 81), 4.0 - 0.01 * np.arange(80))
  write_run(main / "branches" / "d40", "d40", branch, np.arange(61, 101),
            3.0 - 0.01 * np.arange(40), parent="../..", fork_step=60)
  curve = laws.Curve.from_run(main)
  np.testing.assert_array_equal(curve.steps, np.arange(10, 81, 10))
  np.testing.assert_allclose(curve.losses, 4.0 - 0.01 * (curve.steps - 1))
  np.testing.assert_allclose(curve.lrs, np.full(81, PEAK), rtol=1e-6)
  assert curve.name == "main" and curve.schedule_name == "constant"
  b = laws.Curve.from_run(main / "branches" / "d40")
  np.testing.assert_array_equal(b.steps, [70, 80, 90, 100])
  np.testing.assert_allclose(b.losses, 3.0 - 0.01 * (b.steps - 61))
  expected = np.r_[np.full(60, PEAK), PEAK * (1 - np.arange(41) / 40)]
  np.testing.assert_allclose(b.lrs, expected, rtol=1e-6, atol=1e-12)
  train = laws.Curve.from_run(main, metric="loss")
  assert len(train) == 80


# ---- schedule optimisation -------------------------------------------------


@pytest.mark.slow
def test_optimize_schedule_wsd_and_free():
  law = MultiPowerLaw(LUO_25M)
  n = 2000
  cosine = np.asarray(schedules.cosine(PEAK, n)(np.arange(n + 1)), np.float64)
  wsd = laws.optimize_schedule(law, n, PEAK, "wsd")
  assert isinstance(wsd, schedules.WSD)
  assert 0 < wsd.decay_steps <= n
  free = laws.optimize_schedule(law, n, PEAK, "free", num_iters=150)
  values = np.asarray(free(np.arange(n + 1)), np.float64)
  assert np.all(np.diff(values) <= 1e-12) and values.max() <= PEAK * (1 + 1e-6)
  losses = {k: law.predict(v, [n])[0] for k, v in [
      ("cosine", cosine), ("wsd", np.asarray(wsd(np.arange(n + 1)))),
      ("free", values)]}
  assert losses["wsd"] < losses["cosine"]
  assert losses["free"] < losses["wsd"] + 1e-4
  with pytest.raises(ValueError, match="family"):
    laws.optimize_schedule(law, n, PEAK, "cosine")


# ---- the step convention ---------------------------------------------------


def test_step_convention_worked_example():
  # curve.py's example: LR 1.0, dropped to 0.25 from step 3 on.
  lrs = np.asarray(schedules.splice(schedules.constant(1.0), 3,
                                    schedules.constant(0.25))(np.arange(6)),
                   np.float64)
  np.testing.assert_array_equal(lrs, [1, 1, 1, 0.25, 0.25, 0.25])
  with jax.enable_x64(True):
    s1, s2 = laws.annealing_areas(lrs, [3, 4], lam=0.5)
  np.testing.assert_allclose(s1, [3.0, 3.25])
  np.testing.assert_allclose(s2, [0.0, 0.75])  # m_4 = 0.75, whatever lam
  law = MultiPowerLaw(LUO_25M)
  flat = law.predict(np.ones(6), [3, 4])
  pred = law.predict(lrs, [3, 4])
  assert pred[0] == flat[0]  # step 3 has not seen the drop
  p = LUO_25M
  g = 1 - (p["C"] * 0.25**-p["gamma"] * 0.25 + 1)**-p["beta"]  # S_4(4) = 0.25
  want = p["L0"] + p["A"] * 3.25**-p["alpha"] - p["B"] * 0.75 * g
  assert pred[1] == pytest.approx(want, rel=1e-12)


# ---- warmup from the run ---------------------------------------------------


@pytest.mark.slow
def test_from_run_infers_warmup_and_fit_uses_it(tmp_path):
  main = schedules.wsd(PEAK, 400, 0, warmup_steps=40)
  truth = laws.AnnealingLaw(ANNEALING_TRUTH, warmup_steps=40)
  steps = np.arange(1, 401)
  write_run(tmp_path / "main", "main", main, steps,
            truth.predict(main(np.arange(401)), steps))
  branch = schedules.branch(main, 300, 100)
  write_run(tmp_path / "main" / "branches" / "d", "d", branch,
            np.arange(301, 401),
            truth.predict(branch(np.arange(401)), np.arange(301, 401)),
            parent="../..", fork_step=300)
  a = laws.Curve.from_run(tmp_path / "main")
  b = laws.Curve.from_run(tmp_path / "main" / "branches" / "d")
  assert (a.warmup_steps, b.warmup_steps) == (40, 40)
  assert b.observed_from(350).warmup_steps == 40
  law = laws.AnnealingLaw.fit([a, b])
  assert law.options["warmup_steps"] == 40
  for k, v in ANNEALING_TRUTH.items():
    assert law.params[k] == pytest.approx(v, rel=1e-3), k
  # Given explicitly, the option wins; curves that disagree need it.
  assert laws.AnnealingLaw.fit([a, b], warmup_steps=0).options[
      "warmup_steps"] == 0
  other = laws.Curve(a.lrs, a.steps, a.losses, name="other", warmup_steps=7)
  with pytest.raises(ValueError, match=r"different warmups \(main: 40, "
                     r"other: 7\); pass warmup_steps=N"):
    laws.AnnealingLaw.fit([a, other])
  with pytest.raises(ValueError, match="warmup_steps must be an integer"):
    laws.Curve(a.lrs, a.steps, a.losses, warmup_steps=-1)


# ---- fitting variants ------------------------------------------------------


def short_mpl_fit_set(seed=0, n=1200, noise=1e-3):
  """Luo et al.'s fit set (constant, cosine, two-stage) of ``n`` steps."""
  truth = MultiPowerLaw(LUO_25M)
  rng = np.random.default_rng(seed)
  i = np.arange(n + 1)
  steps = np.arange(20, n + 1, 20)
  cosine = np.asarray(schedules.cosine(PEAK, n, final_value=PEAK / 10)(i),
                      np.float64)
  return [noisy_curve(truth, lrs, steps, rng, noise) for lrs in (
      np.full(n + 1, PEAK), cosine, np.where(i < 2 * n // 3, PEAK, PEAK / 10))]


@pytest.mark.slow
def test_prior_pulls_toward_its_reference():
  curves = short_mpl_fit_set()
  law = MultiPowerLaw.fit(curves, prior_weight=1e6)
  for k, v in MultiPowerLaw.prior.items():
    assert law.params[k] == pytest.approx(v, rel=1e-3), k
  free = MultiPowerLaw.fit(curves)
  assert free.fit_info["prior_weight"] == 0.0
  # The pinned fit costs objective (the penalty is in it).
  assert law.fit_info["objective"] > free.fit_info["objective"]
  no_prior = type("NoPrior", (laws.AnnealingLaw,), {"prior": {}})
  with pytest.raises(ValueError, match="NoPrior has no prior"):
    no_prior.fit(curves, prior_weight=0.1)
  with pytest.raises(ValueError, match="need select='tail'"):
    MultiPowerLaw.fit(curves, prior_weight=(0.0, 1.0))


def test_tail_selection_equals_fitting_the_heads():
  # Weight 0 on the tails is the same objective as truncated curves, so the
  # candidate's tail error is that of a fit of the heads scored on the tails.
  truth = laws.AnnealingLaw(ANNEALING_TRUTH)
  rng = np.random.default_rng(0)
  steps = np.arange(10, 1001, 10)
  wsd = np.asarray(schedules.wsd(PEAK, 1000, 500)(np.arange(1001)), np.float64)
  curves = [noisy_curve(truth, np.full(1001, PEAK), steps, rng, 1e-3),
            noisy_curve(truth, wsd, steps, rng, 1e-3)]
  law = laws.AnnealingLaw.fit(curves, select="tail", tail_fraction=0.3,
                              num_starts=1)
  (cand,) = law.fit_info["selection"]
  head, tail = fitting.tail_weights(curves, 0.3)
  cut = [c.steps[h.astype(bool)][-1] for c, h in zip(curves, head)]
  assert cut == [700, 700]  # the last step <= 10 + 0.7 * (1000 - 10) = 703
  heads = [c.observed_until(s) for c, s in zip(curves, cut)]
  on_heads = laws.AnnealingLaw.fit(heads, num_starts=1)
  errs = [np.mean(np.abs(on_heads.predict(c.lrs, c.steps[t > 0]) /
                         c.losses[t > 0] - 1)) for c, t in zip(curves, tail)]
  assert cand["tail_rel_err"] == pytest.approx(np.mean(errs), rel=1e-4)


def test_tail_selection_needs_a_decrease_in_the_heads():
  # A 20% WSD decay lies wholly in the last 30%: the heads cannot identify C.
  curves = constant_and_wsd(laws.AnnealingLaw(ANNEALING_TRUTH), 1000)
  with pytest.raises(ValueError, match="no LR decrease before the tails"):
    laws.AnnealingLaw.fit(curves, select="tail", tail_fraction=0.3)


def test_tail_selection_picks_the_lowest_tail_error():
  curves = short_mpl_fit_set()
  law = MultiPowerLaw.fit(curves, prior_weight=(0.0, 0.1, 10.0),
                          select="tail")
  cands = law.fit_info["selection"]
  assert len(cands) == 3 * MultiPowerLaw.n_refine
  best = min(cands, key=lambda c: c["tail_rel_err"])
  assert law.fit_info["prior_weight"] == best["prior_weight"]


def test_early_stopping_stops_where_chosen_and_does_not_warn():
  curves = short_mpl_fit_set()
  with warnings.catch_warnings():
    warnings.simplefilter("error", fitting.FitWarning)
    law = MultiPowerLaw.fit(curves, select="tail", early_stopping=True)
  info = law.fit_info
  best = min(info["selection"], key=lambda c: c["tail_rel_err"])
  assert info["early_stopped"] and info["nit"] == best["iterations"]
  assert 1 <= best["iterations"] <= best["head_nit"]
  with pytest.raises(ValueError, match="early_stopping needs select='tail'"):
    MultiPowerLaw.fit(curves, early_stopping=True)


@pytest.mark.slow
def test_adamw_is_torch_adamw_from_the_surrogate_start():
  curves = short_mpl_fit_set(n=600)
  options = dict(MultiPowerLaw.default_options)
  with jax.enable_x64(True):
    problem = fitting._problem(MultiPowerLaw, curves, options)
    starts = MultiPowerLaw._starts(problem.terms, curves, problem.bounds)
    x0 = MultiPowerLaw._paper_start(curves, options, starts)
    data = problem.data()
    mask = np.array([k in ("alpha", "beta", "gamma")
                     for k in MultiPowerLaw.param_names])
    res = solvers.adamw(problem, x0, data, mask, steps=15, patience=1000)
    # torch.optim.AdamW, step by step (lr 5e-2 / 5e-3, wd 1e-2).
    lr = np.where(mask, 5e-3, 5e-2)
    x, m, v = x0.copy(), np.zeros(7), np.zeros(7)
    best = (np.inf, None)
    for t in range(1, 16):
      f, g = problem.value_and_grad(x, data, natural=True)
      if f < best[0]:
        best = (f, x.copy())
      m = 0.9 * m + 0.1 * g
      v = 0.999 * v + 0.001 * g**2
      x = x * (1 - lr * 1e-2) - lr * (m / (1 - 0.9**t)) / (
          np.sqrt(v / (1 - 0.999**t)) + 1e-8)
  np.testing.assert_allclose(res.x, best[1], rtol=1e-9)
  assert res.fun == pytest.approx(best[0], rel=1e-12)
  assert res.nit == 15 and not res.success  # the step limit


def test_paper_start_recovers_the_surrogate():
  # Data from Luo et al.'s surrogate L0 + A S1^-alpha - B (peak - eta).
  n, truth = 3000, (2.0, 0.6, 0.5, 200.0)
  i = np.arange(n + 1)
  steps = np.arange(30, n + 1, 30)
  curves = []
  for lrs in (np.full(n + 1, PEAK),
              np.asarray(schedules.cosine(PEAK, n, final_value=PEAK / 10)(i),
                         np.float64)):
    s1 = np.cumsum(lrs)[steps - 1]
    loss = (truth[0] + truth[1] * s1**-truth[2]
            - truth[3] * (PEAK - lrs[steps - 1]))
    curves.append(laws.Curve(lrs, steps, loss))
  start = MultiPowerLaw._paper_start(curves, MultiPowerLaw.default_options,
                                     None)
  np.testing.assert_allclose(start[:3], truth[:3], rtol=1e-2)
  # B is poorly scaled for L-BFGS-B's stopping rule (as in their code): it
  # stays within their grid, [100, 1000] x 3e-4 / peak.
  assert 100 <= start[3] <= 1000
  np.testing.assert_array_equal(start[4:], [1.0, 0.5, 0.5])


@pytest.mark.slow
def test_adamw_method_fits_and_reports():
  curves = short_mpl_fit_set()
  law = MultiPowerLaw.fit(curves, method="adamw", min_r2=0.99)
  info = law.fit_info
  assert info["method"] == "adamw" and 1 <= info["nit"] <= 200
  assert info["success"] == ("no improvement" in info["message"] or
                             "gradient" in info["message"])
  with pytest.raises(ValueError, match="takes no prior"):
    MultiPowerLaw.fit(curves, method="adamw", prior_weight=0.1)


# ---- bootstrap bands -------------------------------------------------------


def test_bootstrap_weights():
  rng = np.random.default_rng(0)
  blocks = uncertainty.bootstrap_weights([50, 7], "blocks", rng)
  assert [len(w) for w in blocks] == [50, 7]
  assert [w.sum() for w in blocks] == [4 * 13, 2 * 4]  # ceil(n/b) blocks of b
  assert all(np.all(w == np.round(w)) and w.min() >= 0 for w in blocks)
  curves = uncertainty.bootstrap_weights([50, 7, 9], "curves", rng)
  counts = [w[0] for w in curves]
  assert sum(counts) == 3 and all(np.all(w == w[0]) for w in curves)
  with pytest.raises(ValueError, match="bootstrap kind"):
    uncertainty.bootstrap_weights([5], "points", rng)


def test_band_quantiles_and_coverage():
  replicates = np.linspace(1.0, 2.0, 101)[:, None] * np.ones((1, 3))
  lower, upper = uncertainty.band(replicates, None, 0.9)
  np.testing.assert_allclose(lower, 1.05)
  np.testing.assert_allclose(upper, 1.95)
  assert uncertainty.coverage(np.array([1.0, 1.5, 1.96]), lower, upper) == (
      pytest.approx(1 / 3))
  wide_lo, wide_hi = uncertainty.band(replicates, np.array([-0.1, 0.1]), 0.9)
  assert np.all(wide_lo < lower) and np.all(wide_hi > upper)


def test_prediction_band_covers_fresh_noisy_points():
  # The law is exact and the noise iid: a 90% band for observed points must
  # hold about 90% of a fresh draw of the same curves.
  truth = laws.AnnealingLaw(ANNEALING_TRUTH)
  curves = constant_and_wsd(truth, 1000, seed=0, noise=2e-3)
  law = laws.AnnealingLaw.fit(curves, bootstrap=48, seed=1)
  assert law.fit_info["bootstrap"]["fitted"] == 48
  assert len(law.ensemble) == 48 and law.residuals.shape == (200,)
  fresh = constant_and_wsd(truth, 1000, seed=5, noise=2e-3)
  inside = []
  for c in fresh:
    band = law.predict(c.lrs, c.steps, return_interval=True, level=0.9)
    assert np.all(band.lower <= band.loss) and np.all(band.loss <= band.upper)
    np.testing.assert_allclose(band.loss, law.predict(c.lrs, c.steps))
    inside.append((c.losses >= band.lower) & (c.losses <= band.upper))
    curve_only = law.predict(c.lrs, c.steps, return_interval=True,
                             noise=False)
    assert np.mean(curve_only.upper - curve_only.lower) < 0.5 * np.mean(
        band.upper - band.lower)
  assert 0.8 <= np.mean(inside) <= 0.98
  with pytest.raises(ValueError, match="bootstrap=N"):
    truth.predict(c.lrs, return_interval=True)


@pytest.mark.slow
def test_curve_bootstrap_skips_resamples_without_a_decrease():
  curves = short_mpl_fit_set(n=600)
  law = MultiPowerLaw.fit(curves, bootstrap=12, bootstrap_kind="curves")
  info = law.fit_info["bootstrap"]
  assert info["fitted"] + info["failed"] == 12 and info["fitted"] >= 2
  assert len(law.ensemble) == info["fitted"]
