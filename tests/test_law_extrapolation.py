"""The extrapolation protocol (fit on short runs, predict 3x longer) and the
loop study (a law proposes schedules; they are trained): the plan, the
corpus, and the quick forms end to end, checked against recomputations."""

import json
import os
import pathlib

import numpy as np
import pytest

from configs import law_extrapolation as config_module
from wsd_jax import runs, schedules
from wsd_jax.laws.curve import Curve, schedule_warmup
from wsd_jax.laws.report import LAWS, score_table, summarize
from wsd_jax.studies import law_extrapolation, law_loop


def test_plan_fits_short_runs_and_predicts_three_times_longer():
  s = config_module.get_config().study
  p = law_extrapolation.plan(s)
  f, t, peak = s.fit_steps, s.predict_steps, s.peak_value
  assert t == 3 * f
  assert {n: q["role"] for n, q in p.items()} == {
      "constant": "both", f"cosine_{f}": "fit", f"two_stage_{f}": "fit",
      f"cosine_{t}": "predict", "wsd20_linear": "predict",
      "wsd20_1-sqrt": "predict", "wsd10_1-sqrt": "predict",
      f"two_stage_{t}": "predict"}
  i = np.arange(t + 1)
  main = np.asarray(p["constant"]["schedule"](i))
  two = np.asarray(p[f"two_stage_{f}"]["schedule"](i[:f + 1]))
  at = round(0.6 * f)
  np.testing.assert_array_equal(two[:at], main[:at])
  np.testing.assert_allclose(two[at:], 0.1 * peak, rtol=1e-6)
  assert p[f"two_stage_{f}"]["fork"] == at
  wsd = np.asarray(p["wsd20_linear"]["schedule"](i))
  np.testing.assert_array_equal(wsd[:t - 600], main[:t - 600])
  assert wsd[t - 300] == pytest.approx(peak / 2, rel=1e-6) and wsd[t] == 0
  for q in p.values():  # every run shares the warmup
    assert schedule_warmup(q["schedule"]) == s.warmup_steps


def test_source_corpus_is_whole_files_in_order(tmp_path):
  files = law_extrapolation.stdlib_source_files()
  rel = [os.path.relpath(f, os.path.dirname(files[0]).split("/lib/")[0])
         for f in files]
  assert not any("site-packages" in r or "__pycache__" in r for r in rel)
  config = config_module.get_config("quick")
  config.corpus_max_bytes = 200_000
  info = law_extrapolation.use_source_corpus(config, str(tmp_path))
  want, size = b"", 0
  for f in files:  # an independent reconstruction: whole files until full
    data = pathlib.Path(f).read_bytes()
    if b"\0" in data:
      continue
    if size + len(data) > 200_000:
      break
    want, size = want + data, size + len(data)
  path = config.train_config.data.paths
  assert pathlib.Path(path).read_bytes() == want
  assert info["bytes"] == len(want) and len(want) > 50_000


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("law_extrapolation"))
  config = config_module.get_config("quick")
  result = law_extrapolation.run(config, workdir)
  return {"dir": workdir, "config": config, "result": result}


@pytest.mark.slow
def test_quick_protocol_rows_match_a_recomputation(quick):
  s, result = quick["config"].study, quick["result"]
  dirs = law_extrapolation.run_dirs(s, quick["dir"])
  fit, held = law_extrapolation.load_curves(s, dirs)
  assert all(c.steps.max() <= s.fit_steps for c in fit.values())
  assert all(c.steps.min() > s.fit_steps for c in held.values())
  assert list(fit) == ["constant", "cosine_60", "two_stage_60"]
  variants = {(r["law"], r["variant"]) for r in result["variants"]}
  # Luo et al.'s AdamW recipe is the multi-power law's only.
  assert variants == {("multipower", v) for v in s.variants} | {
      ("annealing", v) for v in s.variants if v != "paper"}
  for row in result["variants"]:
    if "error" in row:
      continue
    law = LAWS[row["law"]](row["params"], warmup_steps=s.warmup_steps)
    by_role = {r["role"]: r for r in summarize(score_table(
        law, list(fit.values()), list(held.values())))}
    assert row["fit_mean_rel_err"] == pytest.approx(
        by_role["fit"]["mean_rel_err"], rel=1e-9)
    assert row["held_max_rel_err"] == pytest.approx(
        by_role["predict"]["max_rel_err"], rel=1e-9)
    assert row["held_mean_max_rel_err"] == pytest.approx(
        by_role["predict"]["mean_max_rel_err"], rel=1e-9)
  for row in result["coverage"]:  # "all" is the points-weighted mean
    n = {k: len(c) for k, c in held.items()}
    weighted = sum(v * n[k] for k, v in row["held_by_run"].items())
    assert row["held_coverage"] == pytest.approx(weighted / sum(n.values()))
  out = pathlib.Path(quick["dir"])
  written = json.loads((out / "law_extrapolation.json").read_text())
  assert written["variants"] == json.loads(json.dumps(result["variants"]))
  md = (out / "law_extrapolation.md").read_text()
  assert "| law | variant | fit mean | fit max | held-out mean |" in md
  assert (out / "law_extrapolation.png").stat().st_size > 0


@pytest.mark.slow
def test_quick_loop_trains_the_proposals(quick):
  s = quick["config"].study
  metrics = os.path.join(quick["dir"], "runs", "constant", "metrics.jsonl")
  before = os.path.getmtime(metrics)
  result = law_loop.run(quick["config"], quick["dir"])
  assert os.path.getmtime(metrics) == before  # the protocol's runs are reused
  rows = {r["run"]: r for r in result["rows"]}
  assert set(rows) == {"proposed_free", "proposed_wsd", "cosine_180",
                       "wsd20_linear", "wsd20_1-sqrt", "wsd10_1-sqrt"}
  for name, lrs in result["proposed_lrs"].items():
    run = runs.Run(os.path.join(quick["dir"], "runs", name))
    np.testing.assert_allclose(run.lrs(s.predict_steps), lrs, rtol=1e-5,
                               atol=1e-9)  # float32 in run.json
    assert max(lrs) <= s.peak_value * (1 + 1e-6)
    assert rows[name]["observed_final"] == run.eval_at(s.predict_steps)
  best = min(r["observed_final"] for r in rows.values()
             if r["kind"] != "proposed")
  for r in rows.values():
    assert r["vs_best_baseline"] == pytest.approx(
        r["observed_final"] / best - 1)
  md = (pathlib.Path(quick["dir"]) / "law_loop.md").read_text()
  assert "| run | kind | predicted final |" in md
