"""The river-valley study: its exact measurement checked against direct
computations, its claim rules on arrays of known verdict, and its quick form
(the CI run) on its values."""

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import river_valley as river_valley_config
from wsd_jax import data as data_lib
from wsd_jax import plots
from wsd_jax.data.bigram import BigramSpec
from wsd_jax.studies import equal_compute as ec
from wsd_jax.studies import river_valley as rv
from wsd_jax.studies import river_valley_analysis as rva
from wsd_jax.studies import river_valley_report as rvr
from test_studies import assert_rerun_trains_nothing

TABLES = ("wsd_vs_cosine", "groups", "river_hill", "curvature", "valley",
          "equal_compute")


# The exact measurement (fast).

def _spec():
  return BigramSpec.create(16, 4, seed=3)


def test_exact_loss_equals_a_direct_sum_over_the_transition_matrix():
  spec = _spec()
  w = np.random.default_rng(0).normal(0, 2, (16, 16))
  got = rva.exact(spec, w)
  v, g = spec.vocab_size, spec.num_groups
  loss, mass = np.zeros(g), np.zeros(g)
  for x in range(v):
    q = np.exp(w[x]) / np.exp(w[x]).sum()
    ce = -sum(spec.transition[x, y] * np.log(q[y]) for y in range(v))
    loss[spec.group_of_token[x]] += spec.stationary[x] * ce
    mass[spec.group_of_token[x]] += spec.stationary[x]
  np.testing.assert_allclose(got["group_loss"], loss / mass, rtol=1e-10)
  np.testing.assert_allclose(got["loss"], loss.sum(), rtol=1e-10)
  np.testing.assert_allclose(got["group_excess"],
                             loss / mass - spec.optimal_loss_by_group,
                             rtol=1e-9)
  # The true table is the optimum; any other table is above it.
  best = rva.exact(spec, np.log(spec.transition))
  assert abs(best["excess"]) < 1e-12 and got["excess"] > 0.1
  # Batched tables give the same numbers.
  both = rva.exact(spec, np.stack([w, np.log(spec.transition)]))
  np.testing.assert_allclose(both["excess"], [got["excess"], 0], atol=1e-12)


def test_curvature_is_the_top_eigenvalue_of_the_loss_hessian_in_a_row():
  spec = _spec()
  w = np.random.default_rng(1).normal(0, 1.5, (16, 16))
  p = jnp.asarray(spec.transition, jnp.float32)
  pi = jnp.asarray(spec.stationary, jnp.float32)

  def loss(row, x):
    return -pi[x] * jnp.sum(p[x] * jax.nn.log_softmax(row))

  hess = jax.jit(jax.hessian(loss))
  for x in (0, 5, 11):
    h = hess(jnp.asarray(w[x], jnp.float32), x)
    top = float(np.linalg.eigvalsh(np.asarray(h, np.float64))[-1])
    assert rva.curvature(spec, w)[x] == pytest.approx(top, rel=1e-4), x


def test_the_table_loss_is_convex_so_the_midpoint_dip_is_never_negative():
  """On random pairs of tables, near and far apart, the dip is >= 0: a
  positive dip cannot show that two points sit on opposite hillsides."""
  spec = _spec()
  rng = np.random.default_rng(2)
  dips = [rva.midpoint_dip(spec, rng.normal(0, s, (16, 16)),
                           rng.normal(0, s, (16, 16)))
          for s in (0.01, 1.0, 10.0) for _ in range(50)]
  assert min(dips) >= -1e-12 and max(dips) > 1e-3


def test_the_study_language_spreads_its_tokens_over_every_level():
  """Each entropy level holds a fair share of the stationary mass (spec seed
  0 with 8 levels gives 94% to the deterministic level)."""
  for quick in ("", "quick"):
    plan = rv.Plan(river_valley_config.get_config(quick))
    spec = data_lib.bigram.spec_of(plan.base().data)
    mass = np.bincount(spec.group_of_token, spec.stationary, spec.num_groups)
    assert spec.num_groups == plan.levels == 8
    assert np.all((mass > 0.05) & (mass < 0.25)), mass
    assert list(spec.support_sizes) == [1, 2, 4, 8, 16, 32, 64, 128]


# The claim rules, on arrays of known verdict.

def _levels(fraction, seeds=8, noise=0.01):
  """Before/after excess ``[S, 8]`` where the decay removes ``fraction[g]``
  of level g's excess."""
  rng = np.random.default_rng(0)
  before = np.linspace(0.05, 0.4, 8) * (1 + noise * rng.standard_normal(
      (seeds, 8)))
  return before, before * (1 - np.asarray(fraction))


@pytest.mark.parametrize("fraction,expected", [
    (np.linspace(0.1, 0.5, 8), "reproduced"),    # more help when uncertain
    (np.linspace(0.5, 0.1, 8), "refuted"),       # less help when uncertain
])
def test_uncertain_claim_must_beat_the_equal_help_baseline(fraction,
                                                           expected):
  w = np.full(8, 1 / 8)
  before, after = _levels(fraction)
  claim = rva.uncertain_claim(w, before, after)
  assert claim["verdict"] == expected
  # Equal help: the uncertain half gets exactly the baseline share, which
  # is well over half here, and that is not the claim.
  before, after = _levels(np.full(8, 0.3))
  equal = rva.uncertain_claim(w, before, after)
  assert equal["verdict"] != "reproduced"
  assert equal["numbers"]["uncertain_half_share"] == pytest.approx(
      equal["numbers"]["equal_help_baseline"]) and (
          equal["numbers"]["uncertain_half_share"] > 0.6)


def test_river_claim_needs_a_river_that_falls_more_than_the_stable_loss():
  rng = np.random.default_rng(0)
  steps = [160, 320, 480, 640]
  stable = 0.1 + 0.002 * rng.standard_normal((8, 4))
  falls = 0.06 - 0.01 * np.arange(4) + 0.001 * rng.standard_normal((8, 4))
  flat = 0.06 + 0.001 * rng.standard_normal((8, 4))
  assert rva.river_claim(steps, 640, stable, falls)["verdict"] == "reproduced"
  assert rva.river_claim(steps, 640, stable, flat)["verdict"] != "reproduced"
  # A river above the stable loss (no hill) refutes it.
  assert rva.river_claim(steps, 640, stable, stable + 0.01)["verdict"] == (
      "refuted")


def test_curvature_claim_follows_the_sign_of_the_correlation():
  h = np.linspace(0, 4, 64)
  noise = 0.1 * np.random.default_rng(0).standard_normal((3, 64))
  assert rva.curvature_claim(h, h + noise, reps=200)["verdict"] == (
      "reproduced")
  assert rva.curvature_claim(h, -h + noise, reps=200)["verdict"] == "refuted"


def _synthetic_tables(river_falls: bool, uncertain_helped: bool,
                      cyclic_best: bool) -> dict:
  """Tables of the shapes ``rva.claims`` reads, 8 seeds, whose verdicts
  are known."""
  rng = np.random.default_rng(0)
  stable = 0.1 + 0.002 * rng.standard_normal((8, 4))
  river = (0.06 - (0.01 if river_falls else 0.0) * np.arange(4) +
           0.001 * rng.standard_normal((8, 4)))
  decayed = np.stack([river + 0.01, river], axis=-1)  # two decay lengths
  before, after = _levels(np.linspace(0.1, 0.5, 8) if uncertain_helped
                          else np.linspace(0.5, 0.1, 8))
  h = np.linspace(0, 4, 64)
  curv = np.tile(h if uncertain_helped else -h, (3, 1)) + 0.1 * (
      rng.standard_normal((3, 64)))
  base = 2.0 + 0.01 * rng.standard_normal(8)
  gap = 0.02 + 0.002 * rng.standard_normal(8)
  rows = [{"budget": b, "compute": b, "steps": {},
           "losses": {"wsd_s": (base - gap).tolist(), "wsd": base.tolist(),
                      "cyclic_cosine": (base + (-gap if cyclic_best
                                                else gap)).tolist()}}
          for b in (100, 200)]
  return {"river_hill": {"stable": stable.tolist(),
                         "decayed": decayed.tolist()},
          "groups": {"weights": [1 / 8] * 8, "before": before.tolist(),
                     "after": after.tolist()},
          "curvature": {"entropy": h.tolist(), "curv": curv.tolist()},
          "equal_compute": {"budgets": rows}}


@pytest.mark.parametrize("args,want", [
    ((True, True, False), ["reproduced"] * 4),
    ((False, False, True), ["inconclusive", "refuted", "refuted",
                            "refuted"]),
])
def test_claims_and_report_lines_give_each_verdict(args, want):
  plan = types.SimpleNamespace(hill_steps=(100, 200, 300, 400),
                               stable_end=400)
  claims = rva.claims(plan, _synthetic_tables(*args))
  assert [c["verdict"] for c in claims] == want
  for claim, line, v in zip(claims, rvr.claim_lines(claims), want):
    assert line.startswith(f"- **{claim['claim']}** (toy illustration): "
                           f"**{v}** — criterion: "), line


@pytest.mark.parametrize("points", [5, 8, 3])
def test_a_valley_grid_without_its_midpoint_is_refused(points):
  c = river_valley_config.get_config("quick")
  c.valley_points = points
  with pytest.raises(ValueError, match=f"valley_points={points}: "):
    rv.Plan(c)
  c.valley_points = 13
  assert 0.5 in np.round(np.linspace(-0.25, 1.25, 13), 4)
  rv.Plan(c)


# The quick study (slow lane).

@pytest.fixture(scope="module")
def study(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("river_valley")
  config = river_valley_config.get_config("quick")
  result = rvr.run(config, str(workdir))
  plan = rv.Plan(config)
  return {"dir": workdir, "result": result, "plan": plan,
          "runs": rva.Runs(plan, str(workdir)),
          "tables": {n: json.loads((workdir / f"{n}.json").read_text())
                     for n in TABLES}}


@pytest.mark.slow
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


@pytest.mark.slow
def test_cyclic_cosine_equals_cosine_at_the_first_budget(study):
  """Cyclic cosine's first cycle is the cosine to B_1 (same warmup, peak and
  final value; see test_studies), so with the same seed it is the same
  model at B_1."""
  plan, r = study["plan"], study["runs"]
  b1 = plan.budgets[0]
  for seed in plan.seeds:
    cyclic = r.get(ec.run_dir(r.workdir, "cyclic_cosine", seed)).eval_at(b1)
    assert cyclic == r.cosine(seed, b1).eval_at(b1), seed


@pytest.mark.slow
def test_exact_loss_agrees_with_the_sampled_eval(study):
  """The checkpoint's table scored on the eval tokens in numpy is the
  trainer's eval loss (the analysis reads the right tables), and the exact
  loss lies within 4 standard errors of that sample mean."""
  check = study["result"]["exact_check"]
  np.testing.assert_allclose(check["numpy_eval"], check["eval_loss"],
                             rtol=2e-5)
  assert np.all(np.abs(check["z"]) < 4), check
  assert check["eval_tokens"] == 8 * 8 * 32


@pytest.mark.slow
def test_hills_and_rivers(study):
  """Every decay lowers the exact loss at every start step in every seed,
  and the river is the stable excess minus the hill (longest decay: ratio 1
  to itself)."""
  rh = study["tables"]["river_hill"]
  stable, decayed = np.asarray(rh["stable"]), np.asarray(rh["decayed"])
  plan = study["plan"]
  assert decayed.shape == (len(plan.seeds), len(plan.hill_steps),
                           len(plan.hill_decays))
  assert np.all(decayed < stable[:, :, None])
  assert np.all(decayed > 0)
  longest = rh["hill_relative_to_longest"][str(plan.hill_decays[-1])]
  assert longest["mean"] == pytest.approx(1.0)
  g = study["tables"]["groups"]
  # The WSD decay of the last budget removes excess at every
  # non-deterministic level.
  assert np.all(np.asarray(g["after"])[:, 1:] < np.asarray(g["before"])[:, 1:])


@pytest.mark.slow
def test_claims_follow_the_tables(study):
  """claims.json, the report and the pure claim functions agree."""
  result, tables, plan = study["result"], study["tables"], study["plan"]
  saved = json.loads((study["dir"] / "claims.json").read_text())
  again = rva.claims(plan, tables)
  assert [c["verdict"] for c in saved["claims"]] == [
      c["verdict"] for c in again] == [c["verdict"] for c in result["claims"]]
  assert all(c["verdict"] in ("reproduced", "refuted", "inconclusive")
             for c in again)
  report = (study["dir"] / "report.md").read_text()
  for line in rvr.claim_lines(result["claims"]):
    assert line in report
  assert "toy illustration" in report
  assert ("Single peak, untuned — see docs/fair_compare.md for the tuned "
          "comparison") in report
  assert "The table loss is convex in the table" in report
  assert study["tables"]["valley"]["random_dips"]["min"] >= 0
  assert "load average" in report and "Wall time:" in report


@pytest.mark.slow
def test_report_embeds_every_table_and_figure(study):
  report = (study["dir"] / "report.md").read_text()
  for name in TABLES:
    assert (study["dir"] / f"{name}.md").read_text() in report + "\n", name
  for png in study["result"]["figures"].values():
    assert f"]({png})" in report
    assert (study["dir"] / png).read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_figures_use_one_colour_per_method(study):
  colors = study["result"]["figure_colors"]
  for panel in colors["equal_compute"].values():
    assert panel == {m: [plots.color(m)] for m in ec.METHODS}
  assert colors["wsd_vs_cosine"] == {"wsd": [plots.color("wsd")],
                                     "cosine": [plots.color("cosine")]}


@pytest.mark.slow
def test_rerun_reuses_every_run(study, capsys):
  plan = assert_rerun_trains_nothing(
      study["dir"], lambda: rv.run_all(river_valley_config.get_config(
          "quick"), str(study["dir"])), 4, capsys)
  assert plan.budgets == study["plan"].budgets
