"""The river-valley study's quick form (the CI run), checked on its values:
what holds exactly by construction, and verdicts that follow the tables."""

import json

import numpy as np
import pytest

from configs import river_valley as river_valley_config
from wsd_jax import plots, runs
from wsd_jax.studies import equal_compute as ec
from wsd_jax.studies import river_valley as rv
from wsd_jax.studies import river_valley_analysis as rva
from wsd_jax.studies import river_valley_report as rvr
from test_studies import assert_rerun_trains_nothing

# The quick river-valley study: slow lane.
pytestmark = pytest.mark.slow

TABLES = ("wsd_vs_cosine", "groups", "river_hill", "valley", "equal_compute")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("river_valley")
  config = river_valley_config.get_config("quick")
  result = rvr.run(config, str(workdir))
  plan = rv.Plan(config)
  return {"dir": workdir, "result": result, "plan": plan,
          "oracle": rva.Oracle(plan), "runs": rva.Runs(plan, str(workdir)),
          "tables": {n: json.loads((workdir / f"{n}.json").read_text())
                     for n in TABLES}}


def test_wsd_equals_wsd_s_at_the_first_budget(study):
  """The same LR for every update up to B_1 and the same seed (data order):
  WSD's first decay branch and the WSD-S run are the same model there."""
  plan, r = study["plan"], study["runs"]
  b1 = plan.budgets[0]
  for seed in plan.seeds:
    wsd = r.wsd(seed, 0).eval_at(b1)
    wsd_s = r.get(ec.run_dir(r.workdir, "wsd_s", seed)).eval_at(b1)
    assert wsd == wsd_s, seed
  first = study["tables"]["equal_compute"]["budgets"][0]["losses"]
  assert first["wsd"] == first["wsd_s"]


def test_cyclic_cosine_equals_cosine_at_the_first_budget(study):
  """Cyclic cosine's first cycle is the cosine to B_1 (same warmup, peak and
  final value; see test_studies), so with the same seed it is the same
  model at B_1."""
  plan, r = study["plan"], study["runs"]
  b1 = plan.budgets[0]
  for seed in plan.seeds:
    cyclic = r.get(ec.run_dir(r.workdir, "cyclic_cosine", seed)).eval_at(b1)
    assert cyclic == r.cosine(seed, b1).eval_at(b1), seed


def test_oracle_is_the_true_bigram_model_on_the_eval_tokens(study):
  """The oracle is the true model's loss on the finite eval set, so it
  equals the data's optimum (an expectation) only up to sampling noise;
  exactly, it equals -log P of the eval tokens, and run.json records the
  corpus's exact optimum."""
  oracle = study["oracle"]
  spec = oracle.spec
  info = study["runs"].main(0).data_info
  assert info["optimal_loss"] == spec.optimal_loss
  assert info["optimal_loss_by_group"] == list(spec.optimal_loss_by_group)
  log_p = np.log(spec.transition)
  nll, group = [], []
  for batch in oracle.setup.eval_ds:
    x, y = np.asarray(batch["inputs"]), np.asarray(batch["targets"])
    nll.append(-log_p[x, y].ravel())
    group.append(spec.group_of_token[x].ravel())
  nll, group = np.concatenate(nll), np.concatenate(group)
  np.testing.assert_allclose(oracle.losses["eval_loss"], nll.mean(),
                             rtol=1e-6)
  for g in oracle.groups:
    mine = nll[group == g]
    np.testing.assert_allclose(oracle.losses[f"eval_loss_group{g}"],
                               mine.mean(), rtol=1e-5, atol=1e-7)
    se = mine.std() / np.sqrt(mine.size)
    assert abs(mine.mean() - spec.optimal_loss_by_group[g]) < 4 * se, g
  se = nll.std() / np.sqrt(nll.size)
  assert abs(oracle.losses["eval_loss"] - spec.optimal_loss) < 4 * se


def test_excess_is_nonnegative_and_the_hill_positive(study):
  """Every run's excess above the oracle (on the same tokens) is >= 0 up to
  the eval noise of each group (its per-token loss's standard error), and a
  short decay always lowers the loss (hill > 0) in every seed."""
  oracle, r = study["oracle"], study["runs"]
  counts = np.zeros(len(oracle.groups))
  spread = np.zeros(len(oracle.groups))
  log_p = np.log(oracle.spec.transition)
  for batch in oracle.setup.eval_ds:
    x, y = np.asarray(batch["inputs"]), np.asarray(batch["targets"])
    g = oracle.spec.group_of_token[x].ravel()
    counts += np.bincount(g, minlength=len(counts))
    spread += np.bincount(g, log_p[x, y].ravel() ** 2, minlength=len(counts))
  noise = np.sqrt(spread / counts) / np.sqrt(counts)  # upper bound of the SE
  every_run = [runs.Run(p.parent) for p in study["dir"].rglob("run.json")]
  assert len(every_run) == 24
  for run in every_run:
    for row in run.metrics:
      if "eval_loss" in row:
        assert oracle.excess(row) > 0, (run.workdir, row["step"])
        assert np.all(oracle.group_excess(row) >= -noise), (
            run.workdir, row["step"], oracle.group_excess(row))
  per_seed = study["tables"]["river_hill"]["per_seed"]
  assert np.all(np.asarray(per_seed["hill"]) > 0), per_seed["hill"]
  np.testing.assert_allclose(
      np.asarray(per_seed["stable"]) - np.asarray(per_seed["river"]),
      per_seed["hill"], atol=1e-12)


def test_claims_follow_the_tables(study):
  """claims.json, the report and the pure claim functions agree."""
  result, tables, plan = study["result"], study["tables"], study["plan"]
  saved = json.loads((study["dir"] / "claims.json").read_text())
  assert [c["reproduced"] for c in saved["claims"]] == [
      c["reproduced"] for c in rva.claims(plan, tables)] == [
          c["reproduced"] for c in result["claims"]]
  report = (study["dir"] / "report.md").read_text()
  for line in rvr.claim_lines(result["claims"]):
    assert line in report
  for claim in saved["claims"]:
    assert f"**{claim['claim']}**: {rva.verdict(claim)} —" in report
  ordering = saved["claims"][2]["numbers"]["budgets"]
  for row, budget in zip(tables["equal_compute"]["budgets"], ordering):
    m = {k: np.mean(v) for k, v in row["losses"].items()}
    assert budget["ordered_in_mean"] == bool(
        m["wsd_s"] <= m["wsd"] + 1e-6 and m["wsd"] <= m["cyclic_cosine"] + 1e-6)
  assert saved["claims"][2]["reproduced"] == all(
      b["ordered_in_mean"] for b in ordering)


def test_report_embeds_every_table_and_figure(study):
  report = (study["dir"] / "report.md").read_text()
  for name in TABLES:
    assert (study["dir"] / f"{name}.md").read_text() in report + "\n", name
  for png in study["result"]["figures"].values():
    assert f"]({png})" in report
    assert (study["dir"] / png).read_bytes().startswith(b"\x89PNG")


def test_figures_use_one_colour_per_method(study):
  colors = study["result"]["figure_colors"]
  for panel in colors["equal_compute"].values():
    assert panel == {m: [plots.color(m)] for m in ec.METHODS}
  assert colors["wsd_vs_cosine"] == {"wsd": [plots.color("wsd")],
                                     "cosine": [plots.color("cosine")]}


def test_rerun_reuses_every_run(study, capsys):
  plan = assert_rerun_trains_nothing(
      study["dir"], lambda: rv.run_all(river_valley_config.get_config(
          "quick"), str(study["dir"])), 4, capsys)
  assert plan.budgets == study["plan"].budgets


@pytest.mark.parametrize("points", [5, 8, 3])
def test_a_valley_grid_without_its_midpoint_is_refused(points):
  c = river_valley_config.get_config("quick")
  c.valley_points = points
  with pytest.raises(ValueError, match=f"valley_points={points}: "):
    rv.Plan(c)
  c.valley_points = 13
  assert 0.5 in np.round(np.linspace(-0.25, 1.25, 13), 4)
  rv.Plan(c)
