"""The GPT WSD-S study's quick form: its table holds what is exact by
construction, and a rerun trains nothing."""

import json

import pytest

from configs import wsd_s as wsd_s_config
from wsd_jax import plots, runs
from wsd_jax.studies import equal_compute as ec
from wsd_jax.studies import wsd_s
from test_studies import assert_rerun_trains_nothing

# The quick WSD-S study: slow lane.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("wsd_s")
  config = wsd_s_config.get_config("quick")
  return {"dir": workdir, "config": config,
          "result": wsd_s.run(config, str(workdir))}


def test_table_reads_each_budgets_checkpoint(study):
  rows = json.loads((study["dir"] / "wsd_s.json").read_text())["rows"]
  assert rows == json.loads(json.dumps(study["result"]["rows"]))
  p = wsd_s.plan(study["config"].study)
  assert [r["budget"] for r in rows] == [20, 40, 80]
  assert [r["wsd_s_step"] for r in rows] == [r["cyclic_cosine_step"]
                                             for r in rows] == [20, 42, 86]
  assert [r["wsd_step"] for r in rows] == [20, 40, 80]
  assert [r["wsd_compute"] for r in rows] == list(p.ends)
  seed = int(study["config"].train_config.seed)
  for r, i in zip(rows, range(3)):
    for m in ec.METHODS:
      run = runs.Run(ec.model_dir(p, str(study["dir"]), m, seed, i))
      assert r[m] == run.eval_at(r[f"{m}_step"]), (m, i)
  # WSD's main run stops at the last fork; every method trains E_3 steps.
  main = runs.Run(ec.run_dir(str(study["dir"]), "wsd", seed))
  assert main.last_step == p.forks[-1]
  assert main.last_step + sum(p.decays) == p.ends[-1] == 86
  md = (study["dir"] / "wsd_s.md").read_text()
  assert md == wsd_s.markdown(rows)
  assert md.splitlines()[2] == (
      f"| 20 | {rows[0]['wsd']:.4f} (20) | {rows[0]['wsd_s']:.4f} (20) | "
      f"{rows[0]['cyclic_cosine']:.4f} (20) | "
      f"{min(ec.METHODS, key=lambda m: rows[0][m])} |")


def test_wsd_equals_wsd_s_at_the_first_budget(study):
  """Same LR for every update up to B_1, same seed: the same model."""
  first = study["result"]["rows"][0]
  assert first["wsd"] == first["wsd_s"]
  assert first["cyclic_cosine"] != first["wsd"]


def test_figure_uses_one_colour_per_method(study):
  assert (study["dir"] / "wsd_s.png").read_bytes().startswith(b"\x89PNG")
  for panel in study["result"]["figure_colors"].values():
    assert panel == {m: [plots.color(m)] for m in ec.METHODS}


def test_rerun_reuses_every_run(study, capsys):
  plan = assert_rerun_trains_nothing(
      study["dir"], lambda: wsd_s.train_all(study["config"],
                                            str(study["dir"])), 3, capsys)
  assert plan == wsd_s.plan(study["config"].study)
