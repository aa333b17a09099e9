"""The law validation study's quick form writes finite tables and a figure."""

import json
import math
import os

from configs import law_study as law_study_config
from experiments import law_study


def test_quick_law_study_writes_finite_tables(tmp_path):
  config = law_study_config.get_config("quick")
  result = law_study.run(config, str(tmp_path))
  for name in ("law_study.md", "law_study.json", "law_study.png", "report.md"):
    assert os.path.getsize(tmp_path / name) > 0, name
  saved = json.load(open(tmp_path / "law_study.json"))
  assert saved["rows"] == json.loads(json.dumps(result["rows"]))
  held_out = {r["run"] for r in saved["rows"] if r["role"] == "predict"}
  assert held_out == {"wsd20_linear", "wsd_s", "wsd10_linear", "wsd10_1-sqrt",
                      "wsd20_1-sqrt", "mid_branch"}
  assert {r["law"] for r in saved["rows"]} == {"annealing", "multipower"}
  for row in saved["rows"]:
    assert math.isfinite(row["mean_rel_err"]) and math.isfinite(row["max_rel_err"])
    assert 0 <= row["mean_rel_err"] <= row["max_rel_err"]
  for law in ("annealing", "multipower"):
    assert math.isfinite(saved["summary"][law]["mean_rel_err"])
  assert saved["info"]["min_step"] == config.study.min_step
  report = open(tmp_path / "report.md").read()
  assert "multipower" in report and "python" in report and "bytes" in report


def test_branch_plan_skips_the_trained_wsd_run():
  s = law_study_config.get_config().study
  plan = law_study.branch_plan(s)
  assert plan == {"wsd10_linear": (1080, 120, "linear"),
                  "wsd10_1-sqrt": (1080, 120, "1-sqrt"),
                  "wsd20_1-sqrt": (960, 240, "1-sqrt"),
                  "mid_branch": (600, 120, "linear")}
  runs = law_study.full_length_runs(s)
  assert runs["wsd_s"].checkpoint_steps[-1] == s.total_steps
