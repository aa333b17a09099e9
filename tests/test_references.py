"""Library results against references written here from the papers' formulas.

Each reference is a plain loop or a textbook formula in this file, not a call
of the code under test, so a wrong formula in the library fails a test
instead of being restated by it:

* the loss-curve laws (PAPERS.md) against step-by-step loops over the LRs;
* the fused cross-entropy against optax on float32 logits;
* gradient clipping in the train step against ``jax.grad`` of a loss written
  here, rescaled by hand.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from wsd_jax import laws, models
from wsd_jax import schedules as S
from wsd_jax.laws.multipower import MultiPowerLaw
from wsd_jax.train import state as state_lib
from wsd_jax.train import step as step_lib

PEAK = 3e-4
ANNEALING = dict(L0=2.9, A=0.45, alpha=0.45, C=0.8)
LUO_25M = dict(L0=3.040, A=0.525, alpha=0.508, B=363.8, C=2.066, beta=0.583,
               gamma=0.641)


def lr_sequences():
  """LR sequences ``lrs[i] = schedule(i)`` in float64: warmup then a WSD
  decay, and cyclic cosine with re-warms (the LR rises after each cycle)."""
  wsd = S.wsd(PEAK, 600, 150, warmup_steps=50, init_value=1e-6,
              final_value=PEAK / 10)
  cyclic = S.cyclic_cosine(PEAK, (200, 400, 600), warmup_steps=50,
                           rewarm_steps=40, init_value=1e-6,
                           final_value=PEAK / 10)
  return {"wsd": (np.asarray(wsd(np.arange(601)), np.float64), 50),
          "cyclic": (np.asarray(cyclic(np.arange(601)), np.float64), 50)}


# ---- the annealing law ------------------------------------------------------
#
# Convention verified (annealing.py, laws.fitting.effective_lrs/lr_drops):
# the loss at step s (1-based) has seen the updates lrs[0], ..., lrs[s-1],
# i.e. eta_i = lrs[i-1] for i = 1..s. With ``warmup_steps = w`` and
# ``count_warmup_at_peak`` the w warmup LRs count as lrs[w] (the peak). The
# drop of step i is eta_{i-1} - eta_i with eta_0 = eta_1, and it is 0 for
# i <= w + 1 (the warmup's rise into the peak is not annealing). Then
#   m_i = lam m_{i-1} + drop_i,  S1(s) = sum_{i<=s} eta_i,  S2(s) = sum m_i.


def naive_annealing(lrs, p, lam=0.999, warmup=0, at_peak=True):
  eta = [float(x) for x in lrs]
  if warmup and at_peak:
    eta[:warmup] = [eta[warmup]] * warmup
  losses, s1, s2, m = [], 0.0, 0.0, 0.0
  for s in range(1, len(lrs)):
    i = s  # eta_i = eta[i - 1]
    drop = 0.0 if i <= warmup + 1 else eta[i - 2] - eta[i - 1]
    m = lam * m + drop
    s1 += eta[i - 1]
    s2 += m
    losses.append(p["L0"] + p["A"] * s1**(-p["alpha"]) - p["C"] * s2)
  return np.array(losses)


@pytest.mark.parametrize("kind", ["wsd", "cyclic"])
@pytest.mark.parametrize("at_peak", [True, False])
def test_annealing_law_predict_matches_step_loop(kind, at_peak):
  lrs, warmup = lr_sequences()[kind]
  law = laws.AnnealingLaw(ANNEALING, warmup_steps=warmup,
                          count_warmup_at_peak=at_peak)
  want = naive_annealing(lrs, ANNEALING, warmup=warmup, at_peak=at_peak)
  np.testing.assert_allclose(law.predict(lrs), want, rtol=1e-10)
  steps = np.array([1, warmup, warmup + 2, 333, 600])
  np.testing.assert_allclose(law.predict(lrs, steps), want[steps - 1],
                             rtol=1e-10)


def test_annealing_law_lam_option():
  lrs, _ = lr_sequences()["cyclic"]
  law = laws.AnnealingLaw(ANNEALING, lam=0.9)
  np.testing.assert_allclose(law.predict(lrs),
                             naive_annealing(lrs, ANNEALING, lam=0.9),
                             rtol=1e-10)


# ---- the multi-power law ----------------------------------------------------
#
# Same step convention. L(t) = L0 + A (S1(t) + S_W)^-alpha - LD(t): the
# power-law area is the sum of every LR seen, warmup included (as run by
# default, at the peak with ``count_warmup_at_peak``); LD sums over the
# drops after warmup, each weighted by G(eta_k^-gamma S_k(t)) with
# S_k(t) = eta_k + ... + eta_t.


def naive_multipower(lrs, p, warmup=0, at_peak=False):
  eta = [float(x) for x in lrs]
  if warmup and at_peak:
    eta[:warmup] = [eta[warmup]] * warmup
  eta = [eta[0]] + eta  # 1-based: eta[k] = lrs[k - 1], eta[0] = eta[1]
  losses = []
  for t in range(1, len(lrs)):
    ld = 0.0
    for k in range(warmup + 2, t + 1):
      drop = eta[k - 1] - eta[k]
      if drop:
        x = eta[k]**(-p["gamma"]) * sum(eta[k:t + 1])
        ld += drop * (1 - (p["C"] * x + 1)**(-p["beta"]))
    losses.append(p["L0"] + p["A"] * sum(eta[1:t + 1])**(-p["alpha"])
                  - p["B"] * ld)
  return np.array(losses)


@pytest.mark.parametrize("kind", ["wsd", "cyclic"])
@pytest.mark.parametrize("at_peak", [False, True])
def test_multipower_law_predict_matches_step_loop(kind, at_peak):
  lrs, warmup = lr_sequences()[kind]
  lrs = lrs[:401]  # the naive loop is quadratic
  law = MultiPowerLaw(LUO_25M, warmup_steps=warmup,
                      count_warmup_at_peak=at_peak)
  want = naive_multipower(lrs, LUO_25M, warmup=warmup, at_peak=at_peak)
  np.testing.assert_allclose(law.predict(lrs), want, rtol=1e-10)


# ---- the fused cross-entropy --------------------------------------------


def _bf16_logits(seed=0, b=2, t=8, v=1000):
  """Logits with a large offset and spread (30..60): a log-normaliser taken
  in bf16 (spacing 0.25 there) is visibly wrong."""
  k1, k2 = jax.random.split(jax.random.key(seed))
  logits = 45.0 + 15.0 * jax.random.uniform(k1, (b, t, v), minval=-1.0)
  targets = jax.random.randint(k2, (b, t), 0, v)
  return logits.astype(jnp.bfloat16), targets


@pytest.mark.slow
def test_cross_entropy_value_matches_optax_on_float32():
  logits, targets = _bf16_logits()
  got = step_lib.cross_entropy(logits, targets)
  assert got.dtype == jnp.float32
  want = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), targets)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  jitted = jax.jit(step_lib.cross_entropy)(logits, targets)
  np.testing.assert_allclose(jitted, want, rtol=1e-6)


@pytest.mark.slow
def test_cross_entropy_gradient_matches_float32_reference():
  logits, targets = _bf16_logits(1)
  weights = jax.random.uniform(jax.random.key(2), targets.shape)

  def fused(x):
    return jnp.sum(step_lib.cross_entropy(x, targets) * weights)

  def reference(x):
    return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(
        x, targets) * weights)

  got = jax.grad(fused)(logits)
  assert got.dtype == jnp.bfloat16
  want = jax.grad(reference)(logits.astype(jnp.float32))
  assert np.abs(want).max() > 0.1  # a non-trivial softmax
  np.testing.assert_allclose(np.asarray(got, np.float32), want,
                             rtol=2**-7, atol=1e-6)  # bf16 rounding


# ---- gradient clipping in the train step ------------------------------------


def _bigram_setup(lr=0.1, v=11):
  model = models.Bigram(v, rngs=nnx.Rngs(0), init_std=1.0)
  graphdef, params = nnx.split(model, nnx.Param)
  tx = step_lib.make_optimizer(ml_collections.ConfigDict({"name": "sgd"}))
  state = state_lib.create(params, tx, seed=0)
  tokens = jax.random.randint(jax.random.key(0), (4, 9), 0, v)
  batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}

  def step(clip):
    return step_lib.train_step(state, batch, S.constant(lr),
                               graphdef=graphdef, tx=tx, grad_clip=clip,
                               tokens_per_step=32)

  table = np.asarray(nnx.to_pure_dict(params)["table"], np.float64)
  return step, table, batch


def reference_grad(table, batch):
  """Gradient of the mean next-token cross-entropy of a bigram table,
  written here: logits are the table rows of the inputs."""
  def loss(t):
    logits = t[batch["inputs"]]
    lse = jax.scipy.special.logsumexp(logits, axis=-1)
    target = jnp.take_along_axis(logits, batch["targets"][..., None],
                                 axis=-1)[..., 0]
    return jnp.mean(lse - target)
  return np.asarray(jax.grad(loss)(jnp.asarray(table, jnp.float32)),
                    np.float64)


@pytest.mark.slow
@pytest.mark.parametrize("ratio", [0.25, 4.0])
def test_train_step_clips_the_global_norm(ratio):
  """SGD with ``grad_clip = c``: ``params - lr g min(1, c / |g|)``."""
  lr = 0.1
  step, table, batch = _bigram_setup(lr)
  g = reference_grad(table, batch)
  norm = np.sqrt(np.sum(g**2))
  clip = ratio * norm  # 0.25: the norm exceeds c; 4: it does not
  new_state, metrics = step(clip)
  np.testing.assert_allclose(metrics["grad_norm"], norm, rtol=1e-5)
  want = table - lr * g * min(1.0, clip / norm)
  got = np.asarray(nnx.to_pure_dict(new_state.params)["table"])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  unclipped, _ = step(None)
  np.testing.assert_allclose(
      nnx.to_pure_dict(unclipped.params)["table"], table - lr * g,
      rtol=1e-5, atol=1e-7)
