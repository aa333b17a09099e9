"""SGD-HD and Adam-HD against their update equations written out in NumPy,
step by step, on a small least-squares problem with two parameter leaves."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from wsd_jax import adaptive

RNG = np.random.default_rng(0)
X = RNG.normal(size=(12, 5))
Y = RNG.normal(size=(12,))


def loss(params):
  pred = jnp.asarray(X, jnp.float32) @ params["w"] + params["b"][0]
  return jnp.mean((pred - jnp.asarray(Y, jnp.float32)) ** 2)


def np_grad(w, b):
  """The gradient of ``loss`` by hand (float64)."""
  r = X @ w + b - Y
  return 2 * X.T @ r / len(Y), np.array([2 * r.mean()])


def start():
  return {"w": jnp.full((5,), 0.1, jnp.float32), "b": jnp.zeros((1,))}


def run_optax(tx, steps):
  params, state = start(), None
  state = tx.init(params)
  lrs, ws = [], []
  step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
  for _ in range(steps):
    updates, state = step(params, state)
    params = optax.apply_updates(params, updates)
    lrs.append(float(adaptive.current_lr(state)))
    ws.append(np.asarray(params["w"], np.float64))
  return np.array(lrs), np.array(ws)


def reference_sgd_hd(lr, beta, momentum, steps):
  w, b = np.full(5, 0.1), np.zeros(1)
  dw, db = np.zeros(5), np.zeros(1)
  lrs, ws = [], []
  for _ in range(steps):
    gw, gb = np_grad(w, b)
    h = gw @ dw + gb @ db                  # <g_t, d_{t-1}>
    lr = lr + beta * h
    dw, db = momentum * dw + gw, momentum * db + gb
    w, b = w - lr * dw, b - lr * db
    lrs.append(lr)
    ws.append(w.copy())
  return np.array(lrs), np.array(ws)


def reference_adam_hd(lr, beta, b1, b2, eps, steps):
  w, b = np.full(5, 0.1), np.zeros(1)
  m = [np.zeros(5), np.zeros(1)]
  v = [np.zeros(5), np.zeros(1)]
  lrs, ws = [], []
  for t in range(1, steps + 1):
    g = np_grad(w, b)
    if t > 1:
      c = np.sqrt(1 - b2 ** (t - 1)) / (1 - b1 ** (t - 1))
      h = sum(gi @ (mi / (np.sqrt(vi) + eps)) for gi, mi, vi in zip(g, m, v))
      lr = lr + beta * h * c
    m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
    v = [b2 * vi + (1 - b2) * gi ** 2 for vi, gi in zip(v, g)]
    c = np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    w = w - lr * c * m[0] / (np.sqrt(v[0]) + eps)
    b = b - lr * c * m[1] / (np.sqrt(v[1]) + eps)
    lrs.append(lr)
    ws.append(w.copy())
  return np.array(lrs), np.array(ws)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_hd_matches_equations(momentum):
  lrs, ws = run_optax(adaptive.sgd_hd(0.01, 0.005, momentum), 25)
  ref_lrs, ref_ws = reference_sgd_hd(0.01, 0.005, momentum, 25)
  assert lrs[0] == pytest.approx(0.01)      # d_0 = 0: no change at step 1
  assert abs(lrs[-1] - 0.01) > 1e-4         # and it does adapt later
  np.testing.assert_allclose(lrs, ref_lrs, rtol=2e-5)
  np.testing.assert_allclose(ws, ref_ws, rtol=1e-4, atol=1e-6)


def test_adam_hd_matches_equations():
  lrs, ws = run_optax(adaptive.adam_hd(0.01, 1e-3, b1=0.8, b2=0.9, eps=1e-3),
                      25)
  ref_lrs, ref_ws = reference_adam_hd(0.01, 1e-3, 0.8, 0.9, 1e-3, 25)
  assert lrs[0] == pytest.approx(0.01)
  assert abs(lrs[-1] - 0.01) > 1e-4
  np.testing.assert_allclose(lrs, ref_lrs, rtol=2e-5)
  np.testing.assert_allclose(ws, ref_ws, rtol=1e-4, atol=1e-6)


def test_adam_hd_without_hypergradient_is_adam():
  """beta = 0 and eps tiny: optax.adam to float rounding (whose eps is added
  to sqrt(v_hat), so it differs from the contract's only through eps)."""
  _, ws = run_optax(adaptive.adam_hd(0.01, 0.0, eps=1e-12), 10)
  tx = optax.adam(0.01, eps=1e-12)
  params, state = start(), tx.init(start())
  for _ in range(10):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(ws[-1], params["w"], rtol=1e-5)


def test_lr_scale_multiplies_update_not_hypergradient():
  """Injected ``lr_scale`` s: update = -s * lr_t * d_t, lr_t as without s."""
  tx = optax.inject_hyperparams(adaptive.sgd_hd)(
      learning_rate=0.01, hypergrad_lr=0.005, lr_scale=0.5)
  params = start()
  state = tx.init(params)
  for _ in range(3):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)
  g = jax.grad(loss)(params)
  lr_before = float(adaptive.current_lr(state))
  h = float(sum(jnp.vdot(a, b) for a, b in zip(
      jax.tree.leaves(g), jax.tree.leaves(state.inner_state.direction))))
  updates, state = tx.update(g, state, params)
  lr = float(adaptive.current_lr(state))
  assert lr == pytest.approx(lr_before + 0.005 * h, rel=1e-5)
  np.testing.assert_allclose(updates["w"], -0.5 * lr * np.asarray(g["w"]),
                             rtol=1e-5)
  assert float(adaptive.applied_lr(state)) == pytest.approx(0.5 * lr)
  assert adaptive.applied_lr(optax.adam(0.1).init(params)) is None


def test_vmap_sweeps_hypergrad_lr():
  """A population over hypergrad_lr: each member equals its own run."""
  betas = jnp.array([0.0, 0.002, 0.005])
  tx = optax.inject_hyperparams(adaptive.sgd_hd)(learning_rate=0.01,
                                                 hypergrad_lr=0.0)
  def init(beta):
    s = tx.init(start())
    return s._replace(hyperparams=dict(s.hyperparams, hypergrad_lr=beta))
  def step(params, s):
    updates, s = tx.update(jax.grad(loss)(params), s, params)
    return optax.apply_updates(params, updates), s
  states = jax.vmap(init)(betas)
  params = jax.tree.map(lambda x: jnp.stack([x] * 3), start())
  vstep = jax.jit(jax.vmap(step))
  for _ in range(10):
    params, states = vstep(params, states)
  lrs = np.asarray(adaptive.current_lr(states))
  for i, beta in enumerate([0.0, 0.002, 0.005]):
    ref, _ = reference_sgd_hd(0.01, beta, 0.0, 10)
    assert lrs[i] == pytest.approx(ref[-1], rel=1e-4)
  assert lrs[0] == pytest.approx(0.01)
  assert lrs[2] != pytest.approx(lrs[1])


def test_current_lr_refuses_other_states():
  with pytest.raises(ValueError, match="hypergradient"):
    adaptive.current_lr(optax.adam(0.1).init(start()))
