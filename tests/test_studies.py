"""Study logic without training: plans, verdicts on tables whose verdict is
known, and one colour per method in the figures."""


import numpy as np
import pytest

from configs import law_study as law_study_config
from configs import river_valley as river_valley_config
from configs import wsd_s as wsd_s_config
from wsd_jax import plots, schedules
from wsd_jax.studies import equal_compute as ec
from wsd_jax.studies import law_study
from wsd_jax.studies import river_valley as rv
from wsd_jax.studies import river_valley_report as rvr
from wsd_jax.studies import wsd_s


def assert_rerun_trains_nothing(workdir, train_again, stages: int, capsys):
  """``train_again()`` (a study's training on a finished study directory)
  reports every stage done and writes no run file; returns its result."""
  before = {p: p.stat().st_mtime_ns for p in workdir.rglob("metrics.jsonl")}
  assert before
  result = train_again()
  out = capsys.readouterr().out
  assert out.count("already done") == stages and "steps in" not in out, out
  assert {p: p.stat().st_mtime_ns
          for p in workdir.rglob("metrics.jsonl")} == before
  return result


# Plans.

def test_wsd_s_plan_spends_equal_compute():
  p = wsd_s.plan(wsd_s_config.get_config("size=nano").study)
  assert p.budgets == (200, 400, 800) and p.decays == (20, 40, 80)
  assert p.ends == (200, 420, 860) and p.forks == (180, 360, 720)
  # WSD: main run to the last fork + every decay branch == the WSD-S run.
  assert p.forks[-1] + sum(p.decays) == p.ends[-1]
  assert float(p.main()(p.forks[-1])) == np.float32(p.peak_value)
  assert p.cyclic_cosine().cycle_ends == p.ends
  assert p.rewarm_steps == 20 and p.final_value == pytest.approx(3e-4)


def test_124m_variant_is_a_gpu_config():
  c = wsd_s_config.get_config("size=124m")
  assert c.train_config.model.size == "small"
  assert c.train_config.data.seq_len == 1024


@pytest.mark.parametrize("plan", [
    rv.Plan(river_valley_config.get_config("quick")).equal_compute,
    rv.Plan(river_valley_config.get_config()).equal_compute,
    wsd_s.plan(wsd_s_config.get_config("quick").study),
    wsd_s.plan(wsd_s_config.get_config("size=nano").study)],
                         ids=["rv_quick", "rv", "wsd_s_quick", "wsd_s_nano"])
def test_first_budget_schedules_are_identical_by_construction(plan):
  """WSD's first decay branch and WSD-S use the same LR for every update up
  to B_1; so do cyclic cosine and a cosine to B_1 (same warmup, peak and
  final value): with the same seed their models at B_1 are the same."""
  t = np.arange(plan.budgets[0])
  wsd = schedules.branch(plan.main(), plan.forks[0], plan.decays[0],
                         "linear", plan.final_value)
  np.testing.assert_array_equal(np.asarray(wsd(t)),
                                np.asarray(plan.wsd_s()(t)))
  cosine = schedules.cosine(plan.peak_value, plan.budgets[0],
                            warmup_steps=plan.warmup_steps,
                            final_value=plan.final_value)
  np.testing.assert_array_equal(np.asarray(cosine(t)),
                                np.asarray(plan.cyclic_cosine()(t)))
  # ... and they part after B_1.
  assert float(wsd(plan.budgets[0])) != float(plan.wsd_s()(plan.budgets[0]))


def test_river_valley_plan_evaluates_every_point_it_reads():
  plan = rv.Plan(river_valley_config.get_config("quick"))
  p = plan.equal_compute
  assert plan.stable_end == p.forks[-1] == 576
  assert plan.hill_steps == (160, 320, 480)
  p.check_eval_every(plan.eval_every)
  with pytest.raises(ValueError, match="eval_every=7"):
    p.check_eval_every(7)


def test_law_study_branch_plan_skips_the_trained_wsd_run():
  s = law_study_config.get_config().study
  assert law_study.branch_plan(s) == {
      "wsd10_linear": (1080, 120, "linear"),
      "wsd10_1-sqrt": (1080, 120, "1-sqrt"),
      "wsd20_1-sqrt": (960, 240, "1-sqrt"),
      "mid_branch": (600, 120, "linear")}
  assert law_study.full_length_runs(s)["wsd_s"].checkpoint_steps[-1] == (
      s.total_steps)


# Verdicts on synthetic tables.

def _rows(*per_budget):
  """Rows of ``equal_compute.table``: per budget, seed losses of WSD-S, WSD
  and cyclic cosine."""
  return [{"budget": 100 * (i + 1), "compute": 100 * (i + 1),
           "steps": dict.fromkeys(ec.METHODS, 100 * (i + 1)),
           "losses": {"wsd_s": a, "wsd": b, "cyclic_cosine": c}}
          for i, (a, b, c) in enumerate(per_budget)]


ORDERED = _rows(([2.0, 2.1], [2.0, 2.1], [2.2, 2.3]),
                ([1.8, 1.9], [1.85, 1.95], [1.9, 2.0]))
ORDERED_IN_MEAN = _rows(([2.0, 2.1], [2.05, 2.05], [2.2, 2.3]))
CYCLIC_BEST = _rows(([2.0, 2.1], [2.0, 2.1], [2.2, 2.3]),
                    ([1.8, 1.9], [1.85, 1.95], [1.8, 1.85]))
WSD_S_WORSE = _rows(([2.1, 2.2], [2.0, 2.1], [2.2, 2.3]))


@pytest.mark.parametrize("rows,want,every_seed", [
    (ORDERED, True, True), (ORDERED_IN_MEAN, True, False),
    (CYCLIC_BEST, False, False), (WSD_S_WORSE, False, False)])
def test_ordering_claim(rows, want, every_seed):
  c = ec.ordering_claim(rows)
  assert c["reproduced"] is want
  assert c["numbers"]["every_seed_ordered"] is every_seed
  assert [b["ordered_in_mean"] for b in c["numbers"]["budgets"]][-1] is want


@pytest.mark.parametrize("mean,worst,want", [
    (0.002, 0.009, True), (0.003, 0.01, True), (0.004, 0.009, False),
    (0.002, 0.02, False), (0.17, 0.29, False)])
def test_law_study_goal(mean, worst, want):
  summary = {"mean_rel_err": mean, "max_rel_err": worst, "min_r2": 0.9}
  assert law_study.goal_met(summary) is want
  rows = [{"law": law, "role": role, "run": run, "schedule": "x",
           "mean_rel_err": mean, "max_rel_err": worst, "r2": 0.9}
          for law in ("annealing", "multipower")
          for role, run in (("fit", "constant"), ("predict", "wsd"))]
  text = law_study.report(rows, {"annealing": {"a": 1.0},
                                 "multipower": {"b": 2.0}},
                          {"annealing": 0.99, "multipower": 0.98},
                          {"fit": ["constant"], "min_step": 4})
  goal = [l for l in text.splitlines() if "Goal" in l]
  assert goal == [f"  Goal (mean <= 0.3%, worst <= 1%): "
                  f"{'met' if want else 'NOT met'}."]


# One colour per method.

def test_equal_compute_figure_keeps_one_colour_per_method(tmp_path):
  rng = np.random.default_rng(0)
  curve = lambda n: (np.arange(1, n + 1), 3 - rng.random(n), np.arange(n),
                     rng.random(n))
  curves = {"wsd": [curve(10), curve(4), curve(4)], "wsd_s": [curve(12)],
            "cyclic_cosine": [curve(12)]}
  drawn = ec.figure(curves, ORDERED, str(tmp_path / "f.png"))
  assert (tmp_path / "f.png").read_bytes().startswith(b"\x89PNG")
  assert set(drawn) == {"loss", "lr", "budgets"}
  for panel in drawn.values():
    assert panel == {m: [plots.color(m)] for m in ec.METHODS}
  assert len({plots.color(m) for m in ec.METHODS}) == 3


def test_wsd_vs_cosine_figure_keeps_one_colour_per_method(tmp_path):
  line = lambda label: (label, np.arange(5), np.linspace(3, 2, 5))
  drawn = rvr.fig_wsd_vs_cosine(
      {"wsd": [line("main"), line("b1"), line("b2")],
       "cosine": [line("c1"), line("c2")]}, 2.0, str(tmp_path / "f.png"), "t")
  assert drawn == {"wsd": [plots.color("wsd")],
                   "cosine": [plots.color("cosine")]}


@pytest.mark.parametrize("name,code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_stopped_stage_ends_the_study_instead_of_analysing(
    monkeypatch, tmp_path, capsys, name, code):
  """Ctrl-C in a study's training stage: the runs saved, and the study exits
  (rerunning resumes) rather than analysing half-trained runs."""
  from configs import bigram as bigram_config
  from wsd_jax import runs as runs_lib
  from wsd_jax.studies import common
  spec = runs_lib.RunSpec(bigram_config.get_config(), str(tmp_path / "r"))
  monkeypatch.setattr(common.train, "train_specs", lambda specs: [
      {"workdir": s.workdir, "step": 7, "stopped_by": name} for s in specs])
  with pytest.raises(SystemExit) as e:
    common.train_stage("t", "stage", [spec])
  assert e.value.code == code
  assert f"stopped by {name}: saved; rerun the same command to resume" in (
      capsys.readouterr().out)
  monkeypatch.setattr(common.train, "train_specs", lambda specs: [
      {"workdir": s.workdir, "step": 7} for s in specs])
  assert common.train_stage("t", "stage", [spec]) == 1
