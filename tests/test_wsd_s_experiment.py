"""WSD vs WSD-S vs cyclic cosine: the plan's equal compute, and the quick run."""

import json
import math
import os

import numpy as np

from configs import wsd_s as wsd_s_config
from experiments import wsd_s


def test_plan_spends_equal_compute():
  p = wsd_s.plan(wsd_s_config.get_config("size=nano").study)
  b = p["budgets"]
  assert b == (200, 400, 800) and p["decays"] == [20, 40, 80]
  assert p["ends"] == (200, 420, 860)
  wsd_total = p["main_steps"] + sum(p["decays"])
  assert wsd_total == p["ends"][-1]  # main + branches == the WSD-S run
  assert p["forks"] == [180, 360, 720]
  assert float(p["main"](p["forks"][-1])) == np.float32(p["main"].peak_value)
  assert p["cyclic_cosine"].cycle_ends == p["ends"]


def test_124m_variant_is_a_gpu_config():
  c = wsd_s_config.get_config("size=124m")
  assert c.train_config.model.size == "small"
  assert c.train_config.data.seq_len == 1024


def test_quick_run_writes_the_table(tmp_path):
  result = wsd_s.run(wsd_s_config.get_config("quick"), str(tmp_path))
  for name in ("wsd_s.md", "wsd_s.json", "wsd_s.png"):
    assert os.path.getsize(tmp_path / name) > 0, name
  rows = json.load(open(tmp_path / "wsd_s.json"))["rows"]
  assert [r["budget"] for r in rows] == [20, 40, 80] == [
      r["budget"] for r in result["rows"]]
  for row in rows:
    for method in wsd_s.METHODS:
      assert math.isfinite(row[method]) and row[method] > 0
  assert rows[0]["wsd"] == rows[0]["wsd_s"]  # the same first decay
