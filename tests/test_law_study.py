"""The law validation study's quick form: the runs it plans, the table, the
verdict on the goal, and a rerun that trains nothing."""

import json
import math

import numpy as np
import pytest

from configs import law_study as law_study_config
from wsd_jax import runs
from wsd_jax.studies import law_study
from test_studies import assert_rerun_trains_nothing

# The quick law study: slow lane.
pytestmark = pytest.mark.slow

HELD_OUT = {"wsd20_linear", "wsd_s", "wsd10_linear", "wsd10_1-sqrt",
            "wsd20_1-sqrt", "mid_branch"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("law_study")
  config = law_study_config.get_config("quick")
  return {"dir": workdir, "config": config,
          "result": law_study.run(config, str(workdir))}


def test_runs_share_their_prefix_exactly(study):
  """Runs with the same LR up to a step (and the same seed) have the same
  eval loss up to it: the population trains each member as if alone."""
  s = study["config"].study
  dirs = law_study.run_dirs(s, str(study["dir"]))
  curve = lambda n: dict(zip(*runs.Run(dirs[n]).eval_curve()))
  constant = curve("constant")
  scheds = law_study.full_length_runs(s)
  for name in ("wsd20_linear", "wsd_s"):
    t = np.arange(s.total_steps)
    same = np.asarray(scheds[name](t)) == np.asarray(scheds["constant"](t))
    until = int(np.argmin(same))  # first update with another LR
    other = curve(name)
    shared = [k for k in constant if k <= until]
    assert len(shared) >= 8, name
    assert [other[k] for k in shared] == [constant[k] for k in shared], name
    assert other[s.total_steps] != constant[s.total_steps], name
  for name, (fork, decay, _) in law_study.branch_plan(s).items():
    run = runs.Run(dirs[name])
    assert (run.fork_step, run.last_step) == (fork, fork + decay), name


def test_table_summary_and_goal_follow_the_rows(study):
  saved = json.loads((study["dir"] / "law_study.json").read_text())
  rows = saved["rows"]
  assert rows == json.loads(json.dumps(study["result"]["rows"]))
  assert {r["run"] for r in rows if r["role"] == "predict"} == HELD_OUT
  assert {r["run"] for r in rows if r["role"] == "fit"} == {"constant",
                                                            "cosine"}
  assert {r["law"] for r in rows} == {"annealing", "multipower"}
  for row in rows:
    assert math.isfinite(row["r2"])
    assert 0 <= row["mean_rel_err"] <= row["max_rel_err"] < 1
  for law, summary in saved["summary"].items():
    held = [r for r in rows if r["law"] == law and r["role"] == "predict"]
    assert summary["mean_rel_err"] == pytest.approx(
        np.mean([r["mean_rel_err"] for r in held]))
    assert summary["max_rel_err"] == max(r["max_rel_err"] for r in held)
  met = law_study.goal_met(saved["summary"]["multipower"])
  assert saved["goal_met"] is met
  report = (study["dir"] / "report.md").read_text()
  assert (f"Goal (mean <= 0.3%, worst <= 1%): {'met' if met else 'NOT met'}."
          in report)
  assert (study["dir"] / "law_study.md").read_text() in report
  assert saved["info"]["min_step"] == study["config"].study.min_step
  assert (study["dir"] / "law_study.png").read_bytes().startswith(b"\x89PNG")


def test_rerun_reuses_every_run(study, capsys):
  dirs = assert_rerun_trains_nothing(
      study["dir"], lambda: law_study.train_runs(study["config"],
                                                 str(study["dir"])), 2, capsys)
  assert set(dirs) == HELD_OUT | {"constant", "cosine"}


# The noise floor: pure functions on synthetic data whose noise is known.

def _power_curve(seed, sigma, n=451):
  steps = np.linspace(300, 1200, n).round()
  smooth = 1.4 + 2.0 * steps**-0.4
  rng = np.random.default_rng(seed)
  return steps, smooth * (1 + sigma * rng.standard_normal(n))


@pytest.mark.parametrize("sigma", [0.002, 0.005, 0.02])
def test_jitter_recovers_a_planted_sigma(sigma):
  for seed in range(3):
    j = law_study.jitter(*_power_curve(seed, sigma), n_boot=500, seed=seed)
    assert j["sigma"] == pytest.approx(sigma, rel=0.12), seed
    assert j["ci"][0] < j["sigma"] < j["ci"][1], seed
    assert j["ci"][0] < 1.05 * sigma and j["ci"][1] > 0.95 * sigma, seed
    assert j["ci"][1] - j["ci"][0] < 0.3 * sigma


def test_jitter_of_a_smooth_curve_is_zero_and_needs_points():
  steps, losses = _power_curve(0, 0.0)
  assert law_study.jitter(steps, losses)["sigma"] < 1e-5
  with pytest.raises(ValueError, match="more than 5 points"):
    law_study.jitter(steps[:5], losses[:5])


def test_sampling_and_paired_se_recover_planted_noise():
  rng = np.random.default_rng(0)
  n = 400
  shared = 2.0 + 0.1 * rng.standard_normal(n)     # batch difficulty
  a = shared + 0.004 * rng.standard_normal(n)
  b = shared + 0.01 + 0.004 * rng.standard_normal(n)
  se = law_study.sampling_se(a)
  assert se["batches"] == n
  assert se["rel_se"] == pytest.approx(0.1 / np.sqrt(n) / 2.0, rel=0.15)
  # The shared difficulty cancels in the paired SE: only the 0.004 noise of
  # each model remains, sqrt(2) * 0.004 / sqrt(n) / 2.
  assert law_study.paired_se(b, a) == pytest.approx(
      np.sqrt(2) * 0.004 / np.sqrt(n) / 2.0, rel=0.15)


def test_verdict_separates_errors_above_and_at_the_floor():
  jit = {"sigma": 0.004, "ci": [0.0035, 0.0045]}
  floor = law_study.noise_floor(jit, {"rel_se": 0.01}, {"x": 0.001})
  assert floor["limited_by"] == "jitter"
  assert floor["mean_err_floor_hi"] == pytest.approx(
      np.sqrt(2 / np.pi) * 0.0045)
  rows = ([{"law": "far", "role": "predict", "mean_rel_err": e}
           for e in (0.010, 0.012, 0.011, 0.013)] +
          [{"law": "near", "role": "predict", "mean_rel_err": e}
           for e in (0.0030, 0.0036, 0.0031, 0.0034)] +
          [{"law": "near", "role": "fit", "mean_rel_err": 0.5}])
  judged = law_study.verdicts(rows, floor, n_boot=500)
  assert judged["far"]["verdict"] == "above the noise floor"
  assert judged["near"]["verdict"] == "at the noise floor"
  assert judged["near"]["mean_rel_err"] == pytest.approx(0.003275)
  paired = law_study.noise_floor(jit, {"rel_se": 0.01}, {"x": 0.006})
  assert paired["limited_by"] == "paired sampling SE"
  assert paired["sigma"] == paired["sigma_hi"] == 0.006


# The noise floor of the quick study, recomputed from its run directories.

def test_eval_set_is_the_same_batches_at_every_evaluation(study):
  """The eval set iterates to the same batches every time, and the per-batch
  losses the study took from every run's final checkpoint average to the
  eval_loss the trainer logged at that step: every logged evaluation and
  the noise analysis saw the same batches."""
  from wsd_jax import train
  noise = study["result"]["noise"]
  dirs = law_study.run_dirs(study["config"].study, str(study["dir"]))
  s, _ = train.load_state(dirs["constant"])
  first = [np.asarray(b["inputs"]) for b in s.eval_ds]
  again = [np.asarray(b["inputs"]) for b in s.eval_ds]
  assert len(first) == study["config"].study.eval_batches
  assert all(np.array_equal(x, y) for x, y in zip(first, again, strict=True))
  assert noise["eval_tokens"] == sum(x.size for x in first)
  assert len({x.tobytes() for x in first}) == len(first)  # distinct batches
  for name, losses in noise["batch_losses"].items():
    run = runs.Run(dirs[name])
    step = noise["batch_steps"][name]
    assert step == run.last_step, name
    assert np.mean(losses) == pytest.approx(run.eval_at(step), rel=1e-5), name


def test_reported_errors_and_noise_floor_equal_a_recomputation(study):
  from wsd_jax.laws import Curve
  from wsd_jax.laws.report import LAWS
  s = study["config"].study
  saved = json.loads((study["dir"] / "law_study.json").read_text())
  dirs = law_study.run_dirs(s, str(study["dir"]))
  curves = {n: Curve.from_run(d, "eval_loss", s.min_step)
            for n, d in dirs.items()}
  for row in saved["rows"]:
    law = LAWS[row["law"]](saved["params"][row["law"]],
                           warmup_steps=s.warmup_steps)
    got = law.score(curves[row["run"]])
    for key in ("mean_rel_err", "max_rel_err"):
      assert got[key] == pytest.approx(row[key], rel=1e-6), (row, key)
  noise = saved["noise"]
  c = curves["constant"]
  jit = law_study.jitter(c.steps, c.losses, s.smooth_degree, s.bootstrap)
  assert noise["jitter"] == pytest.approx(jit["sigma"], rel=1e-9)
  assert noise["jitter_ci"] == pytest.approx(jit["ci"], rel=1e-9)
  ref = noise["batch_losses"]["constant"]
  assert noise["sampling_rel_se"] == pytest.approx(
      law_study.sampling_se(ref)["rel_se"], rel=1e-9)
  steps = noise["batch_steps"]
  paired = {n: law_study.paired_se(v, ref)
            for n, v in noise["batch_losses"].items()
            if n not in s.fit and n != "constant"}
  same = {n for n in paired if steps[n] == steps["constant"]}
  assert same == HELD_OUT - {"mid_branch"}  # it ends before the others
  assert noise["paired_rel_se"] == pytest.approx(
      {n: paired[n] for n in same}, rel=1e-9)
  assert noise["paired_rel_se_other_step"] == pytest.approx(
      {"mid_branch": paired["mid_branch"]}, rel=1e-9)
  paired = {n: paired[n] for n in same}
  floor = law_study.noise_floor(jit, law_study.sampling_se(ref), paired)
  assert noise["mean_err_floor"] == pytest.approx(floor["mean_err_floor"])
  judged = law_study.verdicts(saved["rows"], floor, s.bootstrap)
  assert saved["verdicts"] == json.loads(json.dumps(judged))
  report = (study["dir"] / "report.md").read_text()
  for law, v in judged.items():
    assert f"**{law}**: held-out mean relative error" in report
    assert f"**{v['verdict']}**." in report
