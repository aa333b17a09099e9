"""The Zipfian bigram corpus and the zipf_regime study: the language's
invariants, the exact population loss against independent computations
(explicit sums, Monte Carlo on sampled chains), the analysis on fabricated
numbers whose verdict is known (each verdict must flip when the claim is
violated), bad input, and the quick study end to end."""

import json
import os

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from wsd_jax import data, train
from wsd_jax.data import zipf_bigram as zb
from wsd_jax.studies import equal_compute as ec
from wsd_jax.studies import zipf_regime as study


@pytest.fixture(scope="module")
def spec():
  return zb.ZipfBigramSpec.create(256, 4, seed=3)


def _config(**overrides):
  fields = dict(name="zipf_bigram", vocab_size=256, num_groups=4, spec_seed=3,
                seq_len=32, batch_size=64, eval_batches=2)
  return ml_collections.ConfigDict({**fields, **overrides})


# ------------------------------------------------------------------ language

def test_language_invariants(spec):
  p, pi = spec.transition, spec.stationary
  np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
  assert np.all(p > 0)
  np.testing.assert_allclose(pi @ p, pi, atol=1e-12)
  assert pi.sum() == pytest.approx(1.0)
  z = spec.base_weights
  np.testing.assert_allclose(z, np.arange(1, 257) ** -1.1 /
                             np.sum(np.arange(1, 257) ** -1.1))
  # Group 0 is deterministic up to the epsilon mixing with z.
  g, h = spec.group_of_token, spec.token_entropy
  assert np.all(p[g == 0].max(axis=1) >= 1 - spec.epsilon)
  np.testing.assert_array_equal(np.bincount(g), [64] * 4)
  assert np.all(np.diff(spec.optimal_loss_by_group) > 0)   # graded entropy
  assert h[g == 0].max() < h[g == 3].min()
  np.testing.assert_allclose(spec.optimal_loss, pi @ -np.sum(p * np.log(p), 1))
  # Zipf-like: frequencies fall with the rank (the id) as a power law.
  assert 1.0 < zb.zipf_fit(pi) < 2.0
  assert zb.zipf_fit(z) == pytest.approx(1.1, abs=1e-9)
  assert np.corrcoef(np.log(pi), np.log(z))[0, 1] > 0.8
  assert pi.max() / pi.min() > 100      # rare tokens are rare


def test_deterministic_from_seed():
  a, b = zb.ZipfBigramSpec.create(64, 4, seed=1), zb.ZipfBigramSpec.create(
      64, 4, seed=1)
  np.testing.assert_array_equal(a.transition, b.transition)
  c = zb.ZipfBigramSpec.create(64, 4, seed=2)
  assert not np.array_equal(a.transition, c.transition)


@pytest.mark.parametrize("kwargs, match", [
    (dict(vocab_size=1, num_groups=1), "vocab_size must be >= 2, got 1"),
    (dict(vocab_size=8, num_groups=9), "num_groups.*got 9"),
    (dict(vocab_size=8, num_groups=2, exponent=0.0), "exponent.*got 0.0"),
    (dict(vocab_size=8, num_groups=2, epsilon=1.0), "epsilon.*got 1.0"),
    (dict(vocab_size=8, num_groups=2, perturbation=0.5), "got 0.5"),
])
def test_bad_language_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    zb.ZipfBigramSpec.create(**kwargs)


def test_population_loss_against_explicit_sums(spec):
  v = spec.vocab_size
  logits = np.random.default_rng(0).normal(size=(v, v)) * 2
  q = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  explicit = sum(spec.stationary[x] * -np.sum(spec.transition[x] *
                                              np.log(q[x])) for x in range(v))
  assert zb.population_loss(spec, logits) == pytest.approx(explicit, rel=1e-10)
  # Invariant to a per-row shift; the true model is optimal; uniform: log V.
  shift = logits + np.arange(v)[:, None]
  assert zb.population_loss(spec, shift) == pytest.approx(explicit, rel=1e-10)
  assert zb.population_loss(spec, np.log(spec.transition)) == pytest.approx(
      spec.optimal_loss, rel=1e-12)
  assert zb.population_loss(spec, np.zeros((v, v))) == pytest.approx(np.log(v))
  assert explicit > spec.optimal_loss
  with pytest.raises(ValueError, match=r"\(3, 3\)"):
    zb.population_loss(spec, np.zeros((3, 3)))


def test_population_loss_matches_sampled_chains(spec):
  """The exact loss is the mean cross-entropy of sampled text (3 SE)."""
  logits = np.random.default_rng(1).normal(size=(256, 256))
  logq = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  tokens = spec.examples(np.arange(400), 65, stream=0, seed=7)
  ce = -logq[tokens[:, :-1], tokens[:, 1:]].ravel()
  se = ce.std() / np.sqrt(ce.size) * 3   # chains are short-range correlated
  assert abs(ce.mean() - zb.population_loss(spec, logits)) < 3 * se


def test_registered_in_the_pipeline():
  c = _config()
  batch = next(iter(data.make_dataset(c, "train", seed=0)))
  assert batch["inputs"].shape == (64, 32)
  np.testing.assert_array_equal(batch["inputs"][:, 1:],
                                batch["targets"][:, :-1])
  assert batch["inputs"].max() < 256 and batch["inputs"].min() >= 0
  again = next(iter(data.make_dataset(c, "train", seed=0)))
  np.testing.assert_array_equal(batch["inputs"], again["inputs"])
  s = zb.spec_of(c)
  assert data.vocab_size(c) == 256
  np.testing.assert_array_equal(data.token_groups(c), s.group_of_token)
  assert data.data_info(c)["optimal_loss"] == pytest.approx(s.optimal_loss)
  # Unigram frequencies of the stream follow pi.
  toks = np.concatenate([b["inputs"].ravel() for b, _ in zip(
      iter(data.make_dataset(c, "train", seed=1)), range(20))])
  top = np.argsort(s.stationary)[::-1][:5]
  freq = np.bincount(toks, minlength=256)[top] / toks.size
  np.testing.assert_allclose(freq, s.stationary[top], rtol=0.15)
  assert "zipf_bigram" in data.KNOWN_DATASETS


# ------------------------------------------------------------------ analysis

def fabricated(deltas=(0.0, -0.01, 0.01), n_seeds=7, noise=1e-3, seed=0,
               best=(2, 3, 1)):
  """``[method, budget, peak, seed]`` excess: a parabola over 6 peaks with
  its minimum at peak ``best[m]``, methods offset by ``deltas`` (WSD, WSD-S,
  cyclic), plus per-seed noise."""
  rng = np.random.default_rng(seed)
  out = np.empty((3, 2, 6, n_seeds))
  for m in range(3):
    for b in range(2):
      curve = 0.3 / (b + 1) + 0.02 * (np.arange(6) - best[m]) ** 2
      out[m, b] = (curve + deltas[m])[:, None] + noise * rng.standard_normal(
          (6, n_seeds))
  return out


@pytest.mark.parametrize("deltas, expected", [
    ((0.0, -0.01, 0.01), "reproduced"),   # WSD-S < WSD < cyclic
    ((0.0, 0.01, 0.02), "refuted"),       # WSD-S worse than WSD
    ((0.0, -0.01, -0.02), "refuted"),     # cyclic best
])
def test_order_verdict_flips(deltas, expected):
  res = study.order(fabricated(deltas), n_select=2)
  assert res["verdict"] == expected
  for row in res["budgets"]:
    assert row["best"] == {"wsd": 2, "wsd_s": 3, "cyclic_cosine": 1}
    d = row["parts"]["wsd_s <= wsd"]
    assert d["mean"] == pytest.approx(deltas[1] - deltas[0], abs=3e-3)
    assert d["n"] == 5 and d["ci"][0] < d["mean"] < d["ci"][1]


def test_order_is_inconclusive_within_noise():
  res = study.order(fabricated((0.0, 0.0, 0.0), noise=0.01), n_select=2)
  assert res["verdict"] in ("inconclusive", "refuted")
  assert any(r["verdict"] == "inconclusive" for r in res["budgets"])


def test_selection_uses_only_the_selection_seeds():
  v = fabricated()
  v[0, :, 5, :2] = -1.0          # selection seeds love the top peak ...
  v[0, :, 5, 2:] = 9.0           # ... which evaluation seeds hate
  res = study.order(v, n_select=2)
  assert all(r["best"]["wsd"] == 5 for r in res["budgets"])
  assert res["budgets"][0]["eval"]["wsd"] == [9.0] * 5
  v[0, :, 4, :2] = np.nan        # a diverged run is the worst, not the best
  assert study.select(v[0], [0, 1]).tolist() == [5, 5]
  with pytest.raises(ValueError, match="n_select=6"):
    study.order(v, n_select=6)


def test_regime_on_known_curves():
  steps = np.array([90, 180, 270, 360, 450, 540, 630, 720])
  rng = np.random.default_rng(0)
  river = 0.5 - 2e-4 * steps                       # linear: -0.2 / 1k steps
  hill = 0.05
  noise = 1e-4 * rng.standard_normal((5, steps.size))
  res = study.regime(steps, river + hill + noise, river + noise)
  assert res["river_slope"] == pytest.approx(-0.2, abs=0.01)
  assert res["stable_slope"] == pytest.approx(-0.2, abs=0.01)
  np.testing.assert_allclose(res["hill_share"], hill / (river + hill),
                             rtol=1e-2)
  lt = res["last_third"]
  assert (lt["from_step"], lt["to_step"]) == (540, 720)
  assert lt["mean"] == pytest.approx(-2e-4 * 180, abs=1e-3)
  assert lt["verdict"] == "reproduced"
  # The river runs out: the decayed loss is flat after step 360.
  flat = np.where(steps > 360, river[3], river) + noise
  assert study.regime(steps, flat + hill, flat)["last_third"]["verdict"] in (
      "inconclusive", "refuted")
  rising = river[::-1] + noise                      # it gets worse
  assert study.regime(steps, rising + hill, rising)["last_third"][
      "verdict"] == "refuted"


def test_regime_rejects_bad_shapes():
  with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
    study.regime([1, 2, 3], np.ones((2, 3)), np.ones((2, 4)))
  with pytest.raises(ValueError, match=r"\[3, 2, 1\]"):
    study.regime([3, 2, 1], np.ones((2, 3)), np.ones((2, 3)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(budgets=(40, 20)), r"budgets.*\(40, 20\)"),
    (dict(peaks=(0.01, -1.0)), r"peaks.*-1.0"),
    (dict(eval_seeds=(0,)), r"evaluation seeds.*\(0,\)"),
    (dict(selection_seeds=(0,)), "must be disjoint"),
    (dict(hill_points=5), "hill_points=5"),
])
def test_bad_plans(kwargs, match):
  fields = dict(budgets=(20, 40), peaks=(1e-2, 3e-2), selection_seeds=(100,),
                eval_seeds=(0, 1), hill_points=4)
  with pytest.raises(ValueError, match=match):
    study.Plan(**{**fields, **kwargs})


def test_full_plan_meets_the_brief():
  p = study.plan()
  assert len(p.peaks) >= 6 and np.log10(p.peaks[-1] / p.peaks[0]) >= 1.5
  assert len(p.eval_seeds) >= 5 and not set(p.selection_seeds) & set(
      p.eval_seeds)
  e = p.equal_compute(1.0)
  assert set(e.forks[:-1]) <= set(p.hill_steps)   # main runs save only there
  assert p.hill_steps[-1] == e.forks[-1]


# ------------------------------------------------------------------ end to end

@pytest.mark.slow
def test_quick_study_end_to_end(tmp_path):
  root = str(tmp_path)
  p = study.plan(quick=True)
  r = study.run(root, quick=True)
  saved = json.loads(open(os.path.join(root, "results.json")).read())
  losses = np.asarray(saved["losses"])
  assert losses.shape == (3, len(p.budgets), len(p.peaks), len(p.seeds))
  assert np.all(np.isfinite(losses)) and np.all(losses > 0)
  # Budget 1: WSD's branch and WSD-S's first decay are the same updates.
  np.testing.assert_allclose(losses[0, 0], losses[1, 0], atol=1e-5)
  # One model recomputed independently: its checkpoint, the model applied
  # to every token, the loss summed explicitly.
  x, s = p.peaks[1], p.seeds[-1]
  e = p.equal_compute(x)
  wd = ec.model_dir(e, study.peak_dir(root, x), "cyclic_cosine", s, 1)
  setup, state = train.load_state(wd, e.ends[1])
  assert state.step == e.ends[1]
  model = nnx.merge(setup.graphdef, state.params)
  logits = np.asarray(model(jax.numpy.arange(p.vocab_size)[:, None]))[:, 0]
  spec = zb.spec_of(setup.config.data)
  logq = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  exact = -np.sum(spec.stationary[:, None] * spec.transition * logq)
  assert losses[2, 1, 1, -1] == pytest.approx(exact - spec.optimal_loss,
                                              abs=1e-5)
  # The regime arrays are the hill runs' exact losses, and the analysis is
  # recomputed from the saved arrays.
  again = study.analyse(p, losses, np.asarray(saved["stable"]),
                        np.asarray(saved["decayed"]),
                        saved["analysis"]["regime_peak"])
  assert again["order"]["verdict"] == r["analysis"]["order"]["verdict"]
  assert again["regime"]["river_slope"] == pytest.approx(
      saved["analysis"]["regime"]["river_slope"])
  report = open(os.path.join(root, "report.md")).read()
  assert "toy illustration" in report and "Wall time" in report
  assert f"**{r['analysis']['order']['verdict']}**" in report
  assert os.path.getsize(os.path.join(root, saved["figure"])) > 10_000
