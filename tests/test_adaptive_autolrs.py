"""AutoLRS (Jin et al., arXiv 2105.10762): the forecast, the search and the
stage controller end to end on the tiny bigram."""

import json
import math
import pathlib

import numpy as np
import pytest

from tests.tiny import tiny_config
from wsd_jax import runs
from wsd_jax.adaptive import autolrs
from wsd_jax.adaptive import autolrs_search as search
from wsd_jax.runs import rundir, tree
from wsd_jax.train import loop

T = np.arange(100.0)
A, B, C = 0.8, -0.05, 1.2
TRUE = A * np.exp(B * T) + C

# The end-to-end runs: stages of 6, 12 (doubled) and 12 (capped) steps with
# trials of 5, 10, 10 steps.
STEPS, K, TAU_PRIME, TAU, TAU_MAX = 30, 2, 5, 6, 12
BOUNDS = (1e-3, 0.3)
STARTS, TAUS, TAU_PRIMES = [0, 6, 18], [6, 12, 12], [5, 10, 10]


# ----------------------------------------------------------------------------
# Forecast and search


def test_fit_exponential_recovers_a_noiseless_curve():
  a, b, c = search.fit_exponential(TRUE)
  np.testing.assert_allclose([a, b, c], [A, B, C], rtol=1e-5)
  f = search.forecast(TRUE, 1000)  # through the spline denoising
  np.testing.assert_allclose([f.a, f.b, f.c], [A, B, C], rtol=0.03)
  assert f.value == pytest.approx(A * math.exp(B * 1000) + C, abs=3e-3)
  assert f.value == pytest.approx(f.a * math.exp(f.b * 1000) + f.c)


def test_forecast_of_a_noisy_curve():
  noisy = TRUE + np.random.default_rng(0).normal(0, 0.01, T.size)
  f = search.forecast(noisy, 1000)
  np.testing.assert_allclose([f.a, f.b, f.c], [A, B, C], rtol=0.03)
  assert f.value == pytest.approx(C, abs=5e-3)
  assert search.noise_level(noisy) == pytest.approx(0.01, rel=0.3)
  with pytest.raises(ValueError, match="finite"):
    search.forecast(np.r_[noisy[:10], np.nan], 100)


def test_denoising_drops_first_half_outliers_only():
  rng = np.random.default_rng(1)
  slow = 0.5 * np.exp(-0.01 * T) + 1.0
  y = slow + rng.normal(0, 0.01, T.size)
  y[[5, 12, 20, 70]] += 0.1  # ten times the noise
  kept, _ = search.denoise(y)
  dropped = set(range(100)) - set(kept.astype(int))
  assert {5, 12, 20} <= dropped
  assert 70 not in dropped and max(dropped) < 50
  assert len(dropped) <= 10 * 3  # 10 rounds of round(0.03 n)
  clean = slow + rng.normal(0, 0.01, T.size)
  rms = lambda v: float(np.sqrt(np.mean((v - slow) ** 2)))
  assert rms(search.smooth(clean)) < 0.5 * rms(clean)
  # under 17 points round(0.03 n) is 0: nothing is dropped
  assert search.denoise(y[:16])[0].size == 16


@pytest.mark.parametrize("minimum", [0.3, 0.55, 0.8])
def test_gp_lcb_finds_the_minimiser(minimum):
  f = lambda u: (u - minimum) ** 2
  # kappa = 1: the GP's mean leads; kappa = 1e6 (the authors'): the points
  # spread over the range, so the best is within about 1 / evaluations
  for kappa, tolerance in ((1.0, 0.01), (search.KAPPA, 0.1)):
    bo = search.GPLCB(seed=0, kappa=kappa)
    for _ in range(8):
      u = bo.ask()
      bo.tell(u, f(u))
    assert bo.last["proposed_by"] == "gp_lcb"
    found = bo.u[int(np.argmin(bo.values))]
    assert abs(found - minimum) < tolerance, (kappa, bo.u)
    assert len(set(bo.u)) == 8  # never the same point twice
  replay = search.GPLCB(seed=0)
  for u in bo.u[:5]:  # a replayed history proposes the same next point
    replay.tell(u, f(u))
  assert replay.ask() == bo.u[5]


def test_plan_doubles_and_caps():
  p = autolrs.Params("autolrs", 2, TAU_PRIME, TAU, TAU_MAX, BOUNDS)
  stages = autolrs.plan(STEPS, p)
  assert [s.start for s in stages] == STARTS
  assert [s.tau for s in stages] == TAUS
  assert [s.tau_prime for s in stages] == TAU_PRIMES
  long = autolrs.plan(800, autolrs.Params("autolrs", 10, 10, 100, 400,
                                          BOUNDS))
  assert [(s.tau, s.tau_prime) for s in long] == [
      (100, 10), (200, 20), (400, 40), (100, 40)]
  assert autolrs.compute_steps(800, long, 10) == 800 + 10 * 110


def test_defaults_and_grid():
  c = tiny_config(steps=800)
  p = autolrs.params(c)
  assert (p.k, p.tau, p.tau_prime, p.tau_max) == (10, 100, 10, 400)
  assert p.lr_bounds == pytest.approx((0.05 / 100, 0.05 * 10))
  lrs = autolrs.grid_lrs(4, (1e-4, 1.0))
  np.testing.assert_allclose(np.log10(lrs), [-3.5, -2.5, -1.5, -0.5])
  lrs = autolrs.grid_lrs(4, (1e-4, 1.0), center=1e-2)
  np.testing.assert_allclose(np.log10(lrs), -2 + np.array(
      [-0.375, -0.125, 0.125, 0.375]))
  lrs = autolrs.grid_lrs(2, (1e-4, 1.0), center=0.9)  # shifted inside
  np.testing.assert_allclose(np.log10(lrs), [-0.75, -0.25])


@pytest.mark.parametrize("kwargs, match", [
    (dict(variant="autolr"), "variant='autolr'"),
    (dict(k=1), "k=1"),
    (dict(k=2.5), "k=2.5"),
    (dict(tau_prime=3), "tau_prime=3"),
    (dict(tau=0), "tau=0"),
    (dict(tau=8, tau_max=6), "tau_max=6"),
    (dict(lr_bounds=(0.0, 1.0)), r"lr_bounds=\(0.0, 1.0\)"),
    (dict(lr_bounds=(0.1, 0.01)), r"lr_bounds=\(0.1, 0.01\)"),
    (dict(lr_bounds=(float("nan"), 1.0)), "lr_bounds"),
    (dict(lr_bounds="fast"), "lr_bounds='fast'"),
])
def test_bad_input_fails_before_anything(tmp_path, kwargs, match):
  with pytest.raises(ValueError, match=match):
    autolrs.train(tiny_config(), str(tmp_path / "r"), **kwargs)
  assert not (tmp_path / "r").exists()


def test_population_config_is_refused(tmp_path):
  c = tiny_config()
  c.population.grid = "peak_value=0.01,0.02"
  with pytest.raises(ValueError, match="population"):
    autolrs.train(c, str(tmp_path / "r"))
  assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------
# End to end


def _config(steps=STEPS):
  return tiny_config(steps=steps, fingerprints=True, eval_every=6,
                     log_every=1)


def _train(workdir, steps=STEPS, **kwargs):
  kw = dict(k=K, tau_prime=TAU_PRIME, tau=TAU, tau_max=TAU_MAX,
            lr_bounds=BOUNDS)
  return autolrs.train(_config(steps), str(workdir), **dict(kw, **kwargs))


class _Spy:
  """Counts the trainer calls (trial calls through ``train.train_specs``;
  every strategy program through ``loop._train``)."""

  def __init__(self, monkeypatch, fail_after=None):
    from wsd_jax import train
    self.trials, self.programs = [], []
    real_specs, real_train = train.train_specs, loop._train

    def specs(s):
      out = real_specs(s)
      self.trials.append([x.workdir for x in s])
      if fail_after is not None and len(self.trials) == fail_after:
        raise RuntimeError("killed")
      return out

    def program(members):
      self.programs.append(len(members))
      return real_train(members)
    monkeypatch.setattr(train, "train_specs", specs)
    monkeypatch.setattr(loop, "_train", program)


@pytest.fixture(scope="module")
def bo_run(tmp_path_factory):
  mp = pytest.MonkeyPatch()
  spy = _Spy(mp)
  workdir = tmp_path_factory.mktemp("autolrs") / "main"
  summary = _train(workdir)
  mp.undo()
  return workdir, summary, spy


def _rows(workdir, name="metrics.jsonl"):
  return rundir.read_metrics(str(workdir), name)


def _fingerprints(workdir):
  return {r["step"]: r for r in _rows(workdir, "fingerprints.jsonl")}


def _check_invariants(workdir, summary, k, variant):
  stages = autolrs.read_stages(str(workdir))
  assert [s["start_step"] for s in stages] == STARTS
  assert [s["tau"] for s in stages] == TAUS
  assert [s["tau_prime"] for s in stages] == TAU_PRIMES
  total = STEPS + k * sum(TAU_PRIMES)
  assert summary["step"] == STEPS and summary["compute_steps"] == total
  assert summary["variant"] == variant and math.isfinite(summary["eval_loss"])
  main_rows = _rows(workdir)
  for row in main_rows:  # exploit steps + k * tau' of every stage begun
    begun = [tp for s, tp in zip(STARTS, TAU_PRIMES) if s < row["step"]]
    assert row["compute_steps"] == row["step"] + k * sum(begun)
  assert main_rows[-1]["compute_steps"] == total
  main_fp = _fingerprints(workdir)
  by_step = {r["step"]: r for r in main_rows}
  for s in stages:
    assert len(s["trials"]) == k and s["exploited"]
    ends = [s["start_step"] + s["tau_prime"]]
    for t in s["trials"]:
      lo, hi = BOUNDS
      assert lo * (1 - 1e-9) <= t["lr"] <= hi * (1 + 1e-9)
      assert len(t["losses"]) == s["tau_prime"] and not t["diverged"]
      f = t["forecast"]
      assert f["horizon"] == s["tau"] and t["told"] == f["value"]
      assert f["b"] < 0 and f["value"] == pytest.approx(
          f["a"] * math.exp(f["b"] * s["tau"]) + f["c"])
      tdir = workdir / "autolrs" / f"stage_{s['stage']}" / t["workdir"]
      trial = runs.Run(str(tdir))
      assert trial.fork_step == s["start_step"]
      assert trial.lineage["autolrs_trial"]["lr"] == t["lr"]
      rows = trial.metrics
      assert [r["step"] for r in rows] == list(range(
          s["start_step"] + 1, s["start_step"] + s["tau_prime"] + 1))
      assert [r["loss"] for r in rows] == t["losses"]
      np.testing.assert_allclose([r["lr"] for r in rows], t["lr"], rtol=1e-6)
      # the same snapshot and the same batches as every other trial and as
      # the exploit: the first loss (before any update) and the batch
      # fingerprints agree (a vmapped program rounds differently)
      assert t["losses"][0] == s["trials"][0]["losses"][0]
      assert t["losses"][0] == pytest.approx(
          by_step[s["start_step"] + 1]["loss"], rel=1e-5)
      fp = _fingerprints(tdir)
      for step in range(s["start_step"] + 1, ends[0] + 1):
        assert fp[step]["batch"] == main_fp[step]["batch"]
    told = [t["told"] for t in s["trials"]]
    assert s["choice"]["lr"] == s["trials"][int(np.argmin(told))]["lr"]
    # the main run logs the chosen LR at every step of the stage
    for step in range(s["start_step"] + 1, s["start_step"] + s["tau"] + 1):
      if step in by_step:
        assert by_step[step]["lr"] == pytest.approx(s["choice"]["lr"],
                                                    rel=1e-6)
    per_step = runs.Run(str(workdir)).per_step("lr")
    np.testing.assert_allclose(
        per_step[s["start_step"]:s["start_step"] + s["tau"]],
        s["choice"]["lr"], rtol=1e-6)
  assert summary["lrs"] == [s["choice"]["lr"] for s in stages]
  return stages


@pytest.mark.slow  # the fixture: 9 trainer calls, ~15 s of CPU
def test_autolrs_end_to_end(bo_run):
  workdir, summary, spy = bo_run
  stages = _check_invariants(workdir, summary, K, "autolrs")
  # one trainer call per trial, one program each
  assert len(spy.trials) == K * len(STARTS)
  assert all(len(t) == 1 for t in spy.trials)
  assert set(spy.programs) == {1}
  for s in stages:
    by = [t["proposal"]["proposed_by"] for t in s["trials"]]
    assert by == ["random"] + ["gp_lcb"] * (K - 1)
  run = runs.Run(str(workdir))
  assert run.lineage["method"] == "autolrs"
  assert run.lineage["autolrs"]["k"] == K
  assert "; autolrs" in tree.format_tree(run)
  steps, losses = run.eval_curve()
  assert steps[-1] == STEPS and losses[-1] == summary["eval_loss"]


@pytest.mark.slow
def test_rerun_of_a_finished_run_trains_nothing(bo_run, monkeypatch):
  workdir, summary, _ = bo_run
  spy = _Spy(monkeypatch)
  again = _train(workdir)
  assert spy.trials == [] and spy.programs == []
  for key in ("step", "eval_loss", "compute_steps", "lrs"):
    assert again[key] == summary[key]
  with pytest.raises(ValueError, match="k: 2 -> 3"):
    _train(workdir, k=3)
  with pytest.raises(ValueError, match=r"stage 2 .* = \(18, 12, 10\)"):
    _train(workdir, steps=20)  # would cut stage 2 at 2 steps
  assert spy.trials == [] and spy.programs == []


@pytest.mark.slow
def test_kill_and_rerun_resumes_to_the_same_result(bo_run, tmp_path,
                                                  monkeypatch):
  """Killed after the last trial of stage 1 trained but before it was
  recorded; the rerun reuses the three recorded trials, records the fourth
  without training it again, and ends where the uninterrupted run was at
  step 18 (the first two stages are the same)."""
  ref_dir, _, _ = bo_run
  workdir = tmp_path / "main"
  with monkeypatch.context() as m:
    _Spy(m, fail_after=4)
    with pytest.raises(RuntimeError, match="killed"):
      _train(workdir, steps=18)
  pending = json.loads((workdir / "autolrs/stage_1/stage.json").read_text())
  assert len(pending["trials"]) == 1 and pending["pending"]["trial"] == 1
  spy = _Spy(monkeypatch)
  summary = _train(workdir, steps=18)
  assert spy.trials == [[str(workdir / "autolrs/stage_1/trial_1")]]
  assert spy.programs == [1]  # the exploit of stage 1; the trial was done
  ref = autolrs.read_stages(str(ref_dir))[:2]
  got = autolrs.read_stages(str(workdir))
  for r, g in zip(ref, got):
    assert [t["lr"] for t in g["trials"]] == [t["lr"] for t in r["trials"]]
    assert [t["losses"] for t in g["trials"]] == [t["losses"] for t in
                                                  r["trials"]]
    assert g["choice"] == r["choice"]
  ref_eval = runs.Run(str(ref_dir)).eval_at(18)
  assert summary["eval_loss"] == ref_eval
  assert summary["compute_steps"] == 18 + K * (5 + 10)


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
  mp = pytest.MonkeyPatch()
  spy = _Spy(mp)
  workdir = tmp_path_factory.mktemp("autolrs_grid") / "main"
  summary = _train(workdir, variant="autolrs_grid", k=3)
  mp.undo()
  return workdir, summary, spy


@pytest.mark.slow
def test_autolrs_grid_end_to_end(grid_run):
  workdir, summary, spy = grid_run
  stages = _check_invariants(workdir, summary, 3, "autolrs_grid")
  # each stage's trials: ONE train_specs call, ONE vmapped program of 3
  assert [len(t) for t in spy.trials] == [3] * len(STARTS)
  assert spy.programs == [3, 1] * len(STARTS)  # trials, then the exploit
  previous = None
  for s in stages:
    center = previous and previous["choice"]["lr"]
    np.testing.assert_allclose([t["lr"] for t in s["trials"]],
                               autolrs.grid_lrs(3, BOUNDS, center))
    times = {runs.Run(str(workdir / "autolrs" / f"stage_{s['stage']}" /
                          t["workdir"])).metrics[-1]["train_time_s"]
             for t in s["trials"]}
    assert len(times) == 1  # one clock: they trained as one program
    previous = s
  assert runs.Run(str(workdir)).lineage["method"] == "autolrs_grid"
