"""End-to-end: python -m experiments.river_valley --quick (the CI run)."""

import json
import math
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLES = ("wsd_vs_cosine", "groups", "river_hill", "valley", "equal_compute")
NUMBER = re.compile(r"-?\d+\.\d+")


def test_quick_study_writes_report_tables_figures_and_claims(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "experiments.river_valley",
       f"--workdir={tmp_path}", "--quick"],
      cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
      env={**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"})
  assert result.returncode == 0, result.stderr[-3000:]
  assert "[river_valley] WSD main branches" in result.stdout
  report = (tmp_path / "report.md").read_text()
  result_json = json.loads((tmp_path / "claims.json").read_text())
  for name in TABLES:
    table = json.loads((tmp_path / f"{name}.json").read_text())
    assert table["rows"], name
    markdown = (tmp_path / f"{name}.md").read_text()
    assert markdown in report + "\n", name
    numbers = [float(x) for x in NUMBER.findall(markdown)]
    assert numbers and all(math.isfinite(x) for x in numbers), name
  for png in result_json["figures"].values():
    assert f"]({png})" in report
    data = (tmp_path / png).read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000, png
  claims = result_json["claims"]
  assert len(claims) == 3
  for claim in claims:
    assert isinstance(claim["reproduced"], bool)
    assert claim["claim"] in report and claim["numbers"]
  assert result_json["wall_time_s"]["total_s"] > 0
