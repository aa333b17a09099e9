"""End-to-end: experiments.fit_law on synthetic run directories; its figure."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from wsd_jax import laws
from wsd_jax import schedules
from wsd_jax.laws import report

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


def fit_law(*args, cwd):
  return subprocess.run(
      [sys.executable, "-m", "experiments.fit_law", *args],
      cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
      env={**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"})


def inside(path, directory):
  path, directory = os.path.realpath(path), os.path.realpath(directory)
  return os.path.commonpath([path, directory]) == directory


@pytest.mark.slow
def test_fit_law_cli_writes_table(tmp_path):
  runs = tmp_path / "runs"
  main = runs / "main"
  base = schedules.constant(3e-4)
  write_run(main, "main", base, 2000)
  write_run(main / "branches" / "d500", "d500",
            schedules.branch(base, at_step=1500, decay_steps=500), 2000,
            parent="../..", fork_step=1500)
  write_run(runs / "cos", "cos", schedules.cosine(3e-4, 2000), 2000)
  work = tmp_path / "work"
  work.mkdir()
  inputs = [main, main / "branches" / "d500", runs / "cos"]
  result = fit_law(f"--fit={main},{main / 'branches' / 'd500'}",
                   f"--predict={runs / 'cos'}", "--law=annealing", cwd=work)
  assert result.returncode == 0, result.stderr
  # Default output: ./fit_law_<law>, in no input run; runs are only read.
  out = work / "fit_law_annealing"
  assert not any(inside(out, d) for d in inputs)
  assert not (main / "plots").exists()
  written = [out / f"fit_law_annealing.{ext}" for ext in ("md", "json", "png")]
  for path in written:
    assert f"wrote {path}\n" in result.stdout
  table = json.loads(written[1].read_text())
  rows = {r["run"]: r for r in table["rows"]}
  assert set(rows) == {"main", "d500", "cos"}
  assert rows["cos"]["role"] == "predict" and rows["cos"]["schedule"] == "cosine"
  assert rows["d500"]["schedule"] == "branch"
  for row in rows.values():
    assert row["mean_rel_err"] < 1e-4 and row["r2"] > 0.999
  for k, v in TRUTH.items():
    assert abs(table["params"][k] / v - 1) < 0.01, k
  assert table["fit_info"]["success"] in (True, False)
  assert {s["role"]: s["runs"] for s in table["summary"]} == {"fit": 2,
                                                              "predict": 1}
  markdown = written[0].read_text()
  assert "| predict | cos | cosine |" in markdown
  assert f"{rows['cos']['r2']:.6f}" in markdown
  assert "| role | runs | mean_rel_err | max_rel_err | mean_max_rel_err |" in (
      markdown)
  assert written[2].stat().st_size > 0
  assert "cos" in result.stdout and "mean_max_rel_err" in result.stdout


@pytest.mark.slow
def test_fit_law_cli_explicit_out_and_default_inside_a_run(tmp_path):
  main = tmp_path / "main"
  write_run(main, "main", schedules.constant(3e-4), 600)
  result = fit_law(f"--fit={main}", "--law=multipower", cwd=main)
  # The default ./fit_law_multipower would be inside the input run.
  assert result.returncode != 0
  assert result.stderr.strip().splitlines() == [
      f"error: the default output dir {main}/fit_law_multipower is inside the "
      f"input run {main}; runs are only read: pass --out"]


@pytest.mark.slow
def test_fit_law_cli_constant_only(tmp_path):
  main = tmp_path / "main"
  write_run(main, "main", schedules.constant(3e-4), 600)
  out = tmp_path / "out"
  result = fit_law(f"--fit={main}", "--law=multipower", f"--out={out}",
                   cwd=tmp_path)
  assert result.returncode != 0
  lines = result.stderr.strip().splitlines()
  assert lines == [
      "error: the multi-power law needs at least one fit curve whose LR "
      "decreases (a decay or cosine run) to identify B, C, beta, gamma; the "
      "fit curves (main) contain no LR decrease after warmup_steps=0"], (
          result.stderr)
  result = fit_law(f"--fit={main}", "--law=annealing", f"--out={out}",
                   cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  assert ("warning: AnnealingLaw.fit: C (the response to an LR decay) is not "
          "identified because the fit curves (main) contain no LR decrease"
          in result.stdout)
  assert "FitWarning" not in result.stderr  # printed once, as one line
  info = json.loads((out / "fit_law_annealing.json").read_text())["fit_info"]
  assert info["unidentified"] == ["C"]


@pytest.mark.slow
def test_figure_spans_the_observed_points(tmp_path):
  law = laws.AnnealingLaw(TRUTH)
  curves = []
  steps = np.arange(50, 1501, 50)
  for i, decay in enumerate(range(100, 1400, 100)):  # 13 runs, 13 colours
    lrs = np.asarray(schedules.wsd(3e-4, 1500, decay)(np.arange(1501)),
                     np.float64)
    losses = law.predict(lrs, steps) * (1 + 0.01 * (-1)**np.arange(len(steps)))
    curves.append(laws.Curve(lrs, steps, losses, name=f"run{i}"))
  # The law predicts far higher losses before the first observed step.
  assert law.predict(curves[0].lrs, [1])[0] > 2 * max(c.losses.max()
                                                       for c in curves)
  path = tmp_path / "fig.png"
  limits = report.plot_predictions(law, curves[:2], curves[2:], str(path))
  assert path.stat().st_size > 0
  lo = min(c.losses.min() for c in curves)
  hi = max(c.losses.max() for c in curves)
  margin = 0.1 * (hi - lo)
  ylo, yhi = limits["ylim"]
  assert lo - margin <= ylo <= lo and hi <= yhi <= hi + margin
  assert limits["xlim"] == (50.0, 1500.0)  # the observed steps


@pytest.mark.parametrize("losses, expected", [
    ([[3.0, 4.0], [3.5, 5.0]], (2.9, 5.1)),
    ([[3.0, 3.0]], (2.85, 3.15)),  # a flat curve: 5% of the loss
])
def test_loss_limits(losses, expected):
  assert report.loss_limits([np.asarray(x) for x in losses]) == pytest.approx(
      expected)


@pytest.mark.slow
def test_fit_law_cli_options_and_band(tmp_path):
  # Runs with a 100-step warmup, generated by the annealing law with
  # lam=0.99 and the warmup counted at the peak.
  truth = laws.AnnealingLaw(TRUTH, lam=0.99, warmup_steps=100)
  base = schedules.wsd(3e-4, 2000, 0, warmup_steps=100)
  runs = {"main": (base, None), "cos": (
      schedules.cosine(3e-4, 2000, warmup_steps=100), None)}
  for name, (sched, _) in runs.items():
    path = tmp_path / name
    path.mkdir()
    (path / "run.json").write_text(json.dumps({
        "name": name, "parent": None, "fork_step": None,
        "schedule": schedules.to_config(sched)}))
    lrs = np.asarray(sched(np.arange(2001)), np.float64)
    steps = np.arange(50, 2001, 50)
    losses = truth.predict(lrs, steps) * (
        1 + 1e-3 * np.sin(np.arange(len(steps))))
    with open(path / "metrics.jsonl", "w") as f:
      for s, loss in zip(steps, losses):
        f.write(json.dumps({"step": int(s), "eval_loss": float(loss)}) + "\n")
  out = tmp_path / "out"
  result = fit_law(f"--fit={tmp_path / 'main'},{tmp_path / 'cos'}",
                   "--law=annealing", f"--out={out}", "--lam=0.99",
                   "--min_step=200", "--bootstrap=16", "--level=0.8",
                   cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  table = json.loads((out / "fit_law_annealing.json").read_text())
  # The warmup comes from the runs' schedules, lam from the flag.
  assert table["options"] == {"lam": 0.99, "warmup_steps": 100,
                              "count_warmup_at_peak": True}
  assert table["min_step"] == 200 and table["level"] == 0.8
  for k, v in TRUTH.items():
    assert abs(table["params"][k] / v - 1) < 0.05, k
  info = table["fit_info"]
  assert info["bootstrap"]["fitted"] == 16 and info["success"] is True
  assert f"fit: lbfgs, {info['nit']} iterations, {info['nfev']} evaluations, "\
      "converged: True" in result.stdout
  for row in table["rows"]:  # 37 points from step 200 on
    assert 0.5 <= row["coverage"] <= 1.0
    assert round(row["coverage"] * 37, 9) == round(row["coverage"] * 37)
  assert "| role | run | schedule | mean_rel_err | max_rel_err | r2 | " \
         "coverage |" in (out / "fit_law_annealing.md").read_text()
  # A law option the law does not have: one line.
  bad = fit_law(f"--fit={tmp_path / 'main'},{tmp_path / 'cos'}",
                "--law=multipower", f"--out={out}", "--lam=0.99", cwd=tmp_path)
  assert bad.returncode != 0
  assert bad.stderr.strip().splitlines() == [
      "error: unknown options ['lam']; known: ['count_warmup_at_peak', "
      "'warmup_steps']"]


def test_figure_draws_the_band(tmp_path):
  law = laws.AnnealingLaw(TRUTH)
  steps = np.arange(50, 1501, 50)
  rng = np.random.default_rng(0)
  curves = []
  for decay in (300, 600):
    lrs = np.asarray(schedules.wsd(3e-4, 1500, decay)(np.arange(1501)),
                     np.float64)
    losses = law.predict(lrs, steps) * (1 + 1e-3 * rng.standard_normal(30))
    curves.append(laws.Curve(lrs, steps, losses, name=f"d{decay}"))
  fitted = laws.AnnealingLaw.fit(curves, bootstrap=8)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  drawn = []
  original = plt.Axes.fill_between
  def spy(self, x, lower, upper, **kwargs):
    drawn.append((np.asarray(lower), np.asarray(upper)))
    return original(self, x, lower, upper, **kwargs)
  plt.Axes.fill_between = spy
  try:
    report.plot_predictions(fitted, curves[:1], curves[1:],
                            str(tmp_path / "fig.png"))
  finally:
    plt.Axes.fill_between = original
  assert len(drawn) == 2  # one band per run
  for (lower, upper), c in zip(drawn, curves):
    assert np.all(lower < upper)
    grid = np.unique(np.r_[np.linspace(50, 1500, 400).round(), c.steps])
    band = fitted.predict(c.lrs, grid.astype(int), return_interval=True)
    np.testing.assert_allclose(lower, band.lower)
