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
