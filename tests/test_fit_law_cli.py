"""End-to-end: experiments.fit_law on synthetic run directories."""

import json
import os
import subprocess
import sys

import numpy as np

from wsd_jax import laws
from wsd_jax import schedules

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRUTH = dict(L0=2.9, A=0.45, alpha=0.45, C=0.8)


def write_run(path, name, schedule, last_step, parent=None, fork_step=None):
  path.mkdir(parents=True)
  (path / "run.json").write_text(json.dumps({
      "name": name, "parent": parent, "fork_step": fork_step,
      "schedule": schedules.to_config(schedule)}))
  first = (fork_step or 0) + 1
  steps = np.arange(first, last_step + 1)
  lrs = np.asarray(schedule(np.arange(last_step + 1)), np.float64)
  losses = laws.AnnealingLaw(TRUTH).predict(lrs, steps)
  with open(path / "metrics.jsonl", "w") as f:
    for s, loss in zip(steps, losses):
      record = {"step": int(s), "lr": float(lrs[s - 1]), "loss": float(loss)}
      if s % 50 == 0:
        record["eval_loss"] = float(loss)
      f.write(json.dumps(record) + "\n")


def test_fit_law_cli_writes_table(tmp_path):
  main = tmp_path / "main"
  base = schedules.constant(3e-4)
  write_run(main, "main", base, 2000)
  write_run(main / "branches" / "d500", "d500",
            schedules.branch(base, at_step=1500, decay_steps=500), 2000,
            parent="../..", fork_step=1500)
  write_run(tmp_path / "cos", "cos", schedules.cosine(3e-4, 2000), 2000)
  out = tmp_path / "out"
  result = subprocess.run(
      [sys.executable, "-m", "experiments.fit_law",
       f"--fit={main},{main / 'branches' / 'd500'}",
       f"--predict={tmp_path / 'cos'}", "--law=annealing", f"--out={out}"],
      cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
      env={**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"})
  assert result.returncode == 0, result.stderr
  table = json.loads((out / "fit_law_annealing.json").read_text())
  rows = {r["run"]: r for r in table["rows"]}
  assert set(rows) == {"main", "d500", "cos"}
  assert rows["cos"]["role"] == "predict" and rows["cos"]["schedule"] == "cosine"
  assert rows["d500"]["schedule"] == "branch"
  for row in rows.values():
    assert row["mean_rel_err"] < 1e-4 and row["r2"] > 0.999
  for k, v in TRUTH.items():
    assert abs(table["params"][k] / v - 1) < 0.01, k
  markdown = (out / "fit_law_annealing.md").read_text()
  assert "| predict | cos | cosine |" in markdown
  assert f"{rows['cos']['r2']:.6f}" in markdown
  assert (out / "fit_law_annealing.png").stat().st_size > 0
  assert "cos" in result.stdout
