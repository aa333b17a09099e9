"""Sharpness by power iteration against the dense Hessian's eigenvalues;
the GPT valley study's dip, claims and verdicts on fabricated numbers (they
must fail when the numbers violate the claim); and the quick form end to end
(its measurements agree with the run directories' own logs)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from wsd_jax import runs
from wsd_jax.studies import gpt_valley as study
from wsd_jax.studies import sharpness


def dense_eigs(loss, params):
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  h = jax.hessian(lambda f: loss(unravel(f)))(flat)
  return np.linalg.eigvalsh(np.asarray(h, np.float64))


def quadratic(eigs, seed=0):
  """``0.5 w^T A w`` with A's spectrum ``eigs`` in a random basis."""
  q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal(
      (len(eigs), len(eigs))))
  a = jnp.asarray((q * np.asarray(eigs)) @ q.T, jnp.float32)
  return (lambda p: 0.5 * p["w"] @ a @ p["w"]), {"w": jnp.ones(len(eigs))}


def tiny_mlp():
  """A non-convex loss: a 2-layer tanh net on fixed data, away from a
  minimum (its Hessian has eigenvalues of both signs)."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((32, 3)), jnp.float32)
  y = jnp.asarray(rng.standard_normal((32, 2)), jnp.float32)
  params = {"w1": jnp.asarray(rng.standard_normal((3, 5)), jnp.float32),
            "b1": jnp.zeros(5), "w2": jnp.asarray(
                0.5 * rng.standard_normal((5, 2)), jnp.float32)}

  def loss(p):
    return jnp.mean((jnp.tanh(x @ p["w1"] + p["b1"][None]) @ p["w2"] - y) ** 2)
  return loss, params


def test_top_eigenvalue_matches_the_dense_hessian_on_a_tiny_net():
  loss, params = tiny_mlp()
  eigs = dense_eigs(loss, params)
  assert eigs[0] < 0 < eigs[-1]  # non-convex: both signs
  e = sharpness.top_eigenvalue(loss, params, tol=1e-5, max_iters=2000)
  assert e.converged and e.residual <= 1e-5
  assert e.value == pytest.approx(eigs[-1], rel=1e-3)
  mag = eigs[np.argmax(np.abs(eigs))]
  m = sharpness.top_eigenvalue(loss, params, which="magnitude", tol=1e-5,
                               max_iters=2000)
  assert m.value == pytest.approx(mag, rel=1e-3)


@pytest.mark.parametrize("eigs", [(1.0, 0.5, -4.0, -1.0, 0.2),
                                  (-3.0, -1.0, -0.25)])
def test_negative_dominant_spectrum(eigs):
  loss, params = quadratic(eigs)
  ref = dense_eigs(loss, params)
  np.testing.assert_allclose(sorted(eigs), ref, atol=1e-5)
  # Plain power iteration finds the largest magnitude, here negative ...
  m = sharpness.top_eigenvalue(loss, params, which="magnitude", tol=1e-6,
                               max_iters=500)
  assert m.value == pytest.approx(min(eigs), rel=1e-4)
  # ... the default returns the largest (algebraic) eigenvalue.
  a = sharpness.top_eigenvalue(loss, params, tol=1e-6, max_iters=2000)
  assert a.converged
  assert a.value == pytest.approx(max(eigs), rel=1e-4)


def test_scale_gives_the_preconditioned_spectrum():
  loss, params = tiny_mlp()
  rng = np.random.default_rng(3)
  scale = jax.tree.map(lambda x: jnp.asarray(
      np.exp(rng.standard_normal(x.shape)), jnp.float32), params)
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  d = np.asarray(jax.flatten_util.ravel_pytree(scale)[0], np.float64)
  h = np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat), np.float64)
  ref = np.linalg.eigvalsh(d[:, None] * h * d[None, :])[-1]
  e = sharpness.top_eigenvalue(loss, params, scale=scale, tol=1e-5,
                               max_iters=3000)
  assert e.value == pytest.approx(ref, rel=1e-3)
  assert e.value != pytest.approx(dense_eigs(loss, params)[-1], rel=1e-2)


def test_unconverged_is_reported():
  loss, params = quadratic((1.0, 0.99, 0.98, 0.5))
  e = sharpness.top_eigenvalue(loss, params, tol=1e-7, max_iters=3)
  assert e.iterations == 3 and not e.converged and e.residual > 1e-7


def test_adam_preconditioner_from_an_optax_state():
  params = {"a": jnp.array([1.0, -2.0]), "b": jnp.array([[3.0]])}
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   optax.adamw(1e-3, b1=0.9, b2=0.95))
  state = tx.init(params)
  g = {"a": jnp.array([0.3, -0.1]), "b": jnp.array([[2.0]])}
  for _ in range(3):
    _, state = tx.update(g, state, params)
  s = sharpness.adam_preconditioner(state, params, eps=1e-8, b2=0.95)
  clipped = optax.clip_by_global_norm(1.0).update(g, None)[0]
  for k in params:  # nu_hat = g^2 after bias correction (constant grads)
    want = (np.abs(np.asarray(clipped[k])) + 1e-8) ** -0.5
    np.testing.assert_allclose(np.asarray(s[k]), want, rtol=1e-4)
  with pytest.raises(ValueError, match="ScaleByAdamState"):
    sharpness.adam_preconditioner(optax.sgd(0.1).init(params), params)


@pytest.mark.parametrize("kwargs, match", [
    (dict(tol=0.0), "tol must be .* got 0.0"),
    (dict(tol=float("nan")), "tol must be"),
    (dict(max_iters=0), "max_iters must be .* got 0"),
    (dict(max_iters=2.5), "max_iters must be .* got 2.5"),
    (dict(which="largest"), "which='largest'"),
    (dict(scale={"w": -jnp.ones(3)}), "scale leaf .* > 0"),
    (dict(scale={"w": jnp.ones(2)}), "scale leaf .* shape"),
    (dict(scale={"v": jnp.ones(3)}), "structure"),
])
def test_bad_arguments_fail_before_compute(kwargs, match):
  loss, params = quadratic((1.0, 2.0, 3.0))
  with pytest.raises(ValueError, match=match):
    sharpness.top_eigenvalue(loss, params, **kwargs)


def test_bad_params_and_loss():
  with pytest.raises(ValueError, match="floating"):
    sharpness.top_eigenvalue(lambda p: 0.0, {"i": jnp.arange(3)})
  with pytest.raises(ValueError, match="callable"):
    sharpness.top_eigenvalue(3.0, {"w": jnp.ones(2)})


# ------------------------------------------------------------- the study


def test_dip_of_a_parabola_and_a_missing_midpoint():
  a = np.linspace(-0.25, 1.25, 13)
  assert study.dip(a, 2.0 + (a - 0.5) ** 2) == pytest.approx(0.25)
  assert study.dip(a, 2.0 - (a - 0.5) ** 2) == pytest.approx(-0.25)
  assert study.dip(a, 1.0 + 0.3 * a) == pytest.approx(0.0, abs=1e-12)
  with pytest.raises(ValueError, match="0.5"):
    study.dip(np.linspace(0, 1, 4), np.ones(4))


def test_plan_rejects_bad_values():
  good = dict(seeds=(0, 1), stable_steps=(20, 30, 40), fork=30,
              decay_steps=10, decay_every=5, warmup_steps=4, peak_lr=3e-3,
              batch=8, eval_rows=16, hessian_rows=16)
  study.Plan(**good)
  for bad, match in [(dict(fork=25), "fork=25"),
                     (dict(decay_every=3), "decay_every=3"),
                     (dict(points=8), "points=8"),
                     (dict(stable_steps=(30, 20)), "stable_steps"),
                     (dict(peak_lr=0.0), "peak_lr=0.0"),
                     (dict(eval_rows=12), "eval_rows=12")]:
    with pytest.raises(ValueError, match=match):
      study.Plan(**{**good, **bad})


PLAN = study.Plan(seeds=(0, 1, 2), stable_steps=(20, 30, 40), fork=30,
                  decay_steps=10, decay_every=5, warmup_steps=4, peak_lr=3e-3,
                  batch=8, eval_rows=16, hessian_rows=16, points=7)


def fabricated(dips, decay_losses, sharp_fork, sharp_end, seed=0):
  """``measure``'s per-seed results with chosen dips (per stable pair),
  eval losses along the decay (fork first) and sharpness at fork and end,
  plus small per-seed noise."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in PLAN.seeds:
    noise = lambda: 1e-3 * rng.standard_normal()
    pts = {}
    for st, loss in zip(PLAN.decay_points, decay_losses):
      kind = "stable" if st == PLAN.fork else "decay"
      sh = sharp_fork if st == PLAN.fork else sharp_end
      e = {"value": sh * (1 + noise()), "converged": True}
      pts[f"{kind}{st}"] = {"kind": kind, "step": st, "lr": PLAN.lr_at(
          (kind, st)), "eval_loss": loss + noise(), "sharpness": e,
          "precond_sharpness": dict(e, value=100 * e["value"])}
    secs = []
    for (a, b), d in zip(zip(PLAN.stable_steps, PLAN.stable_steps[1:]), dips):
      x = PLAN.alphas
      losses = 3.0 - (d + noise()) * 4 * x * (1 - x)  # dip = d
      secs.append({"kind": "stable", "label": f"stable {a} -> stable {b}",
                   "losses": losses.tolist(), "dip": study.dip(x, losses)})
    secs.append({"kind": "fork_to_end", "label": "f", "losses": [],
                 "dip": 0.01 + noise()})
    out.append({"points": pts, "sections": secs})
  return out


def test_claims_reproduced_on_numbers_that_hold_them():
  a = study.analyse(PLAN, fabricated((0.05, 0.02), (3.0, 2.9, 2.8),
                                     sharp_fork=10.0, sharp_end=20.0))
  assert a["dip"]["verdict"] == "reproduced"
  assert a["monotone"]["verdict"] == "reproduced"
  assert a["sharpness_rises"]["verdict"] == "reproduced"
  assert a["sharpness_falls"]["verdict"] == "refuted"
  assert a["precond_sharpness_rises"]["verdict"] == "reproduced"
  dips = [q["mean"] for q in a["dip"]["parts"]]
  np.testing.assert_allclose(dips, [-0.05, -0.02], atol=3e-3)


def test_claims_fail_on_numbers_that_violate_them():
  # One stable pair curves the wrong way; the decay's loss goes up once;
  # sharpness falls.
  a = study.analyse(PLAN, fabricated((0.05, -0.03), (3.0, 3.1, 2.8),
                                     sharp_fork=20.0, sharp_end=10.0))
  assert a["dip"]["verdict"] == "refuted"
  assert [q["verdict"] for q in a["dip"]["parts"]] == ["reproduced",
                                                       "refuted"]
  assert a["monotone"]["verdict"] == "refuted"
  assert a["sharpness_rises"]["verdict"] == "refuted"
  assert a["sharpness_falls"]["verdict"] == "reproduced"
  # Noise as large as the effect: inconclusive, not reproduced.
  b = study.analyse(PLAN, fabricated((0.0005, 0.0005), (3.0, 3.0, 3.0),
                                     sharp_fork=10.0, sharp_end=10.0))
  assert b["dip"]["verdict"] != "reproduced"
  assert b["monotone"]["verdict"] != "reproduced"


@pytest.mark.slow
def test_quick_study_end_to_end(tmp_path):
  root = str(tmp_path)
  r = study.run(root, quick=True)
  p = study.plan(quick=True)
  saved = json.loads(open(os.path.join(root, "results.json")).read())
  assert saved["analysis"]["dip"]["verdict"] == r["analysis"]["dip"][
      "verdict"]
  for i, seed in enumerate(p.seeds):
    main = runs.Run(study.main_dir(root, seed))
    dec = runs.Run(study.decay_dir(root, seed))
    assert main.checkpoint_steps() == list(p.stable_steps)
    assert dec.checkpoint_steps() == list(p.decay_points[1:])
    assert dec.fork_step == p.fork
    for st in p.stable_steps:  # constant after warmup
      assert float(main.schedule(st - 1)) == pytest.approx(p.peak_lr,
                                                           rel=1e-6)
      assert p.lr_at(("stable", st)) == pytest.approx(p.peak_lr, rel=1e-6)
    assert float(dec.schedule(p.fork + p.decay_steps)) == 0.0
    for st in p.decay_points[1:]:
      assert float(dec.schedule(st - 1)) == pytest.approx(
          p.lr_at(("decay", st)), rel=1e-5)
    pts = saved["per_seed"][i]["points"]
    # The measured eval loss is the run's own logged eval loss (same rows).
    for st in p.stable_steps:
      assert pts[f"stable{st}"]["eval_loss"] == pytest.approx(
          main.eval_at(st), rel=1e-5)
    for st in p.decay_points[1:]:
      assert pts[f"decay{st}"]["eval_loss"] == pytest.approx(
          dec.eval_at(st), rel=1e-5)
    # A section's ends are its checkpoints' losses.
    k0, k1 = list(np.round(saved["alphas"], 6)).index(0.0), list(
        np.round(saved["alphas"], 6)).index(1.0)
    for s in saved["per_seed"][i]["sections"]:
      a, b = (f"{k}{st}" if (k, st) != ("decay", p.fork) else
              f"stable{st}" for k, st in (s["from"], s["to"]))
      assert s["losses"][k0] == pytest.approx(pts[a]["eval_loss"], rel=1e-5)
      assert s["losses"][k1] == pytest.approx(pts[b]["eval_loss"], rel=1e-5)
  report = open(os.path.join(root, "report.md")).read()
  assert "Toy illustration" in report
  for k in ("dip", "monotone", "sharpness_rises"):
    assert f"{saved['analysis'][k]['claim']}: **" \
           f"{saved['analysis'][k]['verdict']}**" in report
  for name in saved["figures"].values():
    assert os.path.getsize(os.path.join(root, name)) > 0
