"""FedHyper-G, the server-side hypergradient LR of FedHyper (Pan et al.,
arXiv 2310.03156), against FedAvg, in a small simulated federation.

Server round t: every client starts from the global ``theta``, runs E local
SGD steps at its client LR on its own data and returns ``Delta_k = theta_k -
theta``; ``Delta_t`` is their mean. FedAvg steps ``theta + server_lr *
Delta_t``. FedHyper-G keeps ``a_t = clip(a_{t-1} + <Delta_{t-1}, Delta_t>,
lo, hi)`` (``a_0 = 0``, ``Delta_0 = 0``) and steps ``theta + (1 + a_t) *
Delta_t``. The clip bounds are the authors' code's, ``(-0.8, 4)`` (PAPERS.md;
the paper's text states other thresholds, which we have not checked): pass
``clip=`` to use others.

The federation: K clients, each a bigram language with its own transition
matrix (non-identical shards), a bigram-table model, and the exact expected
cross-entropy of every client's language as the loss to report. The K
clients are one vmapped population; a whole run is one jitted ``lax.scan``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

CODE_CLIP = (-0.8, 4.0)


class Federation(NamedTuple):
  """K bigram languages over V tokens."""
  transitions: jax.Array   # [K, V, V]: row i is P(next | i) of client k
  stationary: jax.Array    # [K, V]: each chain's stationary distribution


def make_federation(num_clients: int = 8, vocab: int = 16,
                    concentration: float = 0.3, seed: int = 0) -> Federation:
  """Clients with Dirichlet(``concentration``) transition rows: small
  concentrations make the languages (and the shards) far apart."""
  rng = np.random.default_rng(seed)
  p = rng.dirichlet(np.full(vocab, concentration), size=(num_clients, vocab))
  p = 0.98 * p + 0.02 / vocab          # every transition possible: ergodic
  pi = np.full((num_clients, vocab), 1.0 / vocab)
  for _ in range(500):
    pi = np.einsum("ki,kij->kj", pi, p)
  return Federation(jnp.asarray(p, jnp.float32), jnp.asarray(pi, jnp.float32))


def expected_loss(theta: jax.Array, fed: Federation) -> jax.Array:
  """The mean over clients of the exact expected next-token cross-entropy
  of the bigram table ``theta`` [V, V] (nats)."""
  logp = jax.nn.log_softmax(theta, axis=-1)
  return -jnp.einsum("ki,kij,ij->k", fed.stationary, fed.transitions,
                     logp).mean()


def _client_update(theta, key, transitions, stationary, *, client_lr: float,
                   local_steps: int, batch: int):
  """E local SGD steps on batches of (current, next) pairs from one
  client's chain; returns ``theta_k - theta``."""
  def step(params, key):
    k1, k2 = jax.random.split(key)
    cur = jax.random.categorical(k1, jnp.log(stationary), shape=(batch,))
    nxt = jax.random.categorical(k2, jnp.log(transitions[cur]))
    def loss(p):
      logp = jax.nn.log_softmax(p[cur], axis=-1)
      return -jnp.take_along_axis(logp, nxt[:, None], axis=-1).mean()
    return params - client_lr * jax.grad(loss)(params), None
  out, _ = jax.lax.scan(step, theta, jax.random.split(key, local_steps))
  return out - theta


@functools.partial(jax.jit, static_argnames=(
    "method", "rounds", "local_steps", "batch"))
def simulate(fed: Federation, *, method: str, client_lr: float,
             rounds: int = 50, local_steps: int = 5, batch: int = 32,
             server_lr: float = 1.0, clip: tuple[float, float] = CODE_CLIP,
             seed: int = 0) -> dict:
  """Trains the federation's global bigram table for ``rounds`` rounds.

  Args:
    fed: the clients (:func:`make_federation`).
    method: ``"fedavg"`` (fixed ``server_lr``) or ``"fedhyper_g"``.
    client_lr: the clients' local SGD LR.
    rounds, local_steps, batch: server rounds, local steps E per round, and
      pairs per local step.
    server_lr: FedAvg's server LR (FedHyper-G's is ``1 + a_t``).
    clip: FedHyper-G's bounds on ``a_t``.
    seed: data sampling.

  Returns:
    ``{"loss": [rounds + 1] (before round 1 and after each round),
    "server_lr": [rounds] (the server LR each round used)}``.
  """
  if method not in ("fedavg", "fedhyper_g"):
    raise ValueError(f"method={method!r} must be 'fedavg' or 'fedhyper_g'")
  k, v = fed.transitions.shape[:2]
  clients = jax.vmap(functools.partial(
      _client_update, client_lr=client_lr, local_steps=local_steps,
      batch=batch), in_axes=(None, 0, 0, 0))

  def round_(carry, key):
    theta, a, prev = carry
    delta = clients(theta, jax.random.split(key, k), fed.transitions,
                    fed.stationary).mean(axis=0)
    if method == "fedavg":
      lr = jnp.asarray(server_lr, jnp.float32)
    else:
      a = jnp.clip(a + jnp.vdot(prev, delta), clip[0], clip[1])
      lr = 1.0 + a
    theta = theta + lr * delta
    return (theta, a, delta), (expected_loss(theta, fed), lr)

  theta0 = jnp.zeros((v, v), jnp.float32)
  carry = (theta0, jnp.zeros((), jnp.float32), jnp.zeros_like(theta0))
  _, (losses, lrs) = jax.lax.scan(
      round_, carry, jax.random.split(jax.random.PRNGKey(seed), rounds))
  return {"loss": jnp.concatenate([expected_loss(theta0, fed)[None], losses]),
          "server_lr": lrs}
