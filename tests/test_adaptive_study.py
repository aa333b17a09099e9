"""The quick adaptive study: every run trained, the refined run under the
refinement of the WSD run's l1 norms, verdicts and report written."""

import json
import os

import numpy as np
import pytest

from wsd_jax import adaptive, runs
from wsd_jax.adaptive import study


@pytest.mark.slow
def test_quick_study(tmp_path):
  out = study.run_study(str(tmp_path), quick=True)
  assert set(out["runs"]) == {"wsd", "adam_hd", "adam_hd_wsd",
                              "schedule_free", "refined"}
  for name in out["runs"]:
    assert runs.Run(str(tmp_path / "runs" / name)).last_step == 150
  wsd = runs.Run(str(tmp_path / "runs" / "wsd"))
  expected = adaptive.refined_values(wsd.per_step("grad_l1"),
                                     peak_value=0.05, norm="l1")
  refined = runs.Run(str(tmp_path / "runs" / "refined"))
  np.testing.assert_allclose(refined.per_step("lr"), expected, rtol=1e-6,
                             atol=1e-12)
  assert refined.config["optimizer"]["name"] == "adam"
  hd = runs.Run(str(tmp_path / "runs" / "adam_hd")).per_step("lr")
  assert hd[0] == pytest.approx(0.05) and np.ptp(hd) > 0
  verdicts = {v["run"]: v["verdict"] for v in out["verdicts"]}
  assert set(verdicts.values()) <= {"better", "worse", "tie"}
  assert len(verdicts) == 6
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["runs"] == pytest.approx(out["runs"])
  report = (tmp_path / "report.md").read_text()
  assert "## Verdicts" in report and "fedhyper_g (poor client LR)" in report
  assert os.path.exists(tmp_path / "runs" / "refined" / "per_step.jsonl")
