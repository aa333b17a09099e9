"""Synthetic bigram (first-order Markov) corpus for the river-valley study.

Wen et al., "Understanding Warmup-Stable-Decay Learning Rates: A River Valley
Loss Landscape Perspective" (arXiv 2410.05192) train on a synthetic bigram
language whose tokens have next-token distributions of graded uncertainty:
deterministic tokens form the "river" directions that are learned during the
stable phase, while uncertain tokens form the sharp "hill" directions whose
noise is only averaged out by the decay. The paper's exact vocabulary is not
public; this module builds a language with the same structure:

* The `V` tokens are split into `G` equal entropy groups by a random
  permutation (so a group is not a contiguous id range).
* A token of group `g` puts its mass on a random support of `k_g` next tokens,
  `k_g = round(V ** (g / (G - 1)))`: `k_0 = 1` (deterministic) growing
  geometrically to `k_{G-1} = V` (near-uniform). Weights on the support are
  `exp(perturbation * N(0, 1))`, normalised (a mild random perturbation).
* Every row is mixed with a uniform distribution of weight `epsilon`
  (default 1e-3): `P = (1 - epsilon) * P0 + epsilon / V`. All entries are then
  positive, so the chain is irreducible and aperiodic and its stationary
  distribution `pi` is unique. The entropies and the optimal loss include this
  epsilon, so group 0 has a small, non-zero entropy (~epsilon * log(V/epsilon)).

The first token of every sequence is drawn from `pi`, so every position is
stationary and the best achievable cross-entropy per predicted token is
exactly `optimal_loss = sum_x pi[x] * H(P[x])`.

Example `i` of a stream is drawn from `np.random.default_rng((stream, seed, i))`
(T+1 uniforms, inverse-CDF sampling), so it depends on neither the batching nor
the process layout. Train uses stream 0 with the dataset seed; eval uses
stream 1 with `spec_seed`, so eval batches are the same for every run seed.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

_TRAIN_STREAM, _EVAL_STREAM = 0, 1


def check_language(vocab_size: int, num_groups: int, epsilon: float) -> None:
  """The arguments every bigram language shares, checked before building."""
  if vocab_size < 2:
    raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
  if not 1 <= num_groups <= vocab_size:
    raise ValueError(
        f"num_groups must be in [1, vocab_size={vocab_size}], got {num_groups}")
  if not 0.0 < epsilon < 1.0:
    raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")


def entropy_groups(rng: np.random.Generator, v: int, g: int
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Tokens into ``g`` equal groups by a random permutation, and each
  group's support size ``round(v ** (group / (g - 1)))`` (group 0: 1)."""
  group_of_token = np.empty(v, dtype=np.int64)
  group_of_token[rng.permutation(v)] = np.arange(v) * g // v
  exponents = np.arange(g) / max(g - 1, 1)
  support_sizes = np.clip(np.round(v**exponents), 1, v).astype(np.int64)
  support_sizes[0] = 1
  return group_of_token, support_sizes


@dataclasses.dataclass(frozen=True, eq=False)
class BigramSpec:
  """A bigram language: transition matrix, groups, entropies, optimal loss."""

  vocab_size: int
  num_groups: int
  seed: int
  epsilon: float
  perturbation: float
  transition: np.ndarray  # [V, V] float64, row-stochastic.
  stationary: np.ndarray  # [V] float64, pi = pi @ transition.
  group_of_token: np.ndarray  # [V] int, 0 = deterministic ... G-1 = uniform.
  support_sizes: np.ndarray  # [G] int, k_g.

  @classmethod
  def create(
      cls,
      vocab_size: int,
      num_groups: int,
      seed: int = 0,
      *,
      epsilon: float = 1e-3,
      perturbation: float = 0.5,
  ) -> "BigramSpec":
    """Builds the language deterministically from its arguments."""
    check_language(vocab_size, num_groups, epsilon)
    if perturbation < 0:
      raise ValueError(f"perturbation must be >= 0, got {perturbation}")
    v, g = vocab_size, num_groups
    rng = np.random.default_rng(seed)
    group_of_token, support_sizes = entropy_groups(rng, v, g)
    base = np.zeros((v, v))
    for x in range(v):
      k = support_sizes[group_of_token[x]]
      support = rng.choice(v, size=k, replace=False)
      weights = np.exp(perturbation * rng.standard_normal(k))
      base[x, support] = weights / weights.sum()
    transition = (1.0 - epsilon) * base + epsilon / v
    transition /= transition.sum(axis=1, keepdims=True)
    return cls(v, g, seed, epsilon, perturbation, transition,
               _stationary(transition), group_of_token, support_sizes)

  @functools.cached_property
  def token_entropy(self) -> np.ndarray:
    """H(P[x]) in nats for every token x."""
    p = self.transition
    return -np.sum(p * np.log(p), axis=1)

  @property
  def optimal_loss(self) -> float:
    """Best achievable cross-entropy per predicted token, in nats."""
    return float(self.stationary @ self.token_entropy)

  @property
  def optimal_loss_by_group(self) -> np.ndarray:
    """[G]: E[H(P[x]) | x in group g], weighted by pi within the group."""
    weights = np.bincount(self.group_of_token, self.stationary, self.num_groups)
    mass = np.bincount(self.group_of_token, self.stationary * self.token_entropy,
                       self.num_groups)
    return mass / weights

  @functools.cached_property
  def _cdf(self) -> tuple[np.ndarray, np.ndarray]:
    cdf = np.cumsum(self.transition, axis=1)
    cdf[:, -1] = 1.0
    first = np.cumsum(self.stationary)
    first[-1] = 1.0
    return first, cdf

  def sample(self, uniforms_NxL: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling of N chains of length L from given uniforms."""
    first_cdf, cdf = self._cdf
    u = np.asarray(uniforms_NxL)
    tokens = np.empty(u.shape, dtype=np.int32)
    tokens[:, 0] = np.searchsorted(first_cdf, u[:, 0], side="right")
    for t in range(1, u.shape[1]):
      rows = cdf[tokens[:, t - 1]]
      tokens[:, t] = np.sum(rows <= u[:, t, None], axis=1)
    return np.minimum(tokens, self.vocab_size - 1)

  def examples(self, ids: np.ndarray, length: int, *, stream: int,
               seed: int) -> np.ndarray:
    """Examples `ids` of a stream: int32 [len(ids), length], batching-free."""
    uniforms = np.stack([
        np.random.default_rng((stream, seed, int(i))).random(length)
        for i in np.asarray(ids).reshape(-1)
    ]) if len(ids) else np.zeros((0, length))
    return self.sample(uniforms)


def _stationary(transition: np.ndarray) -> np.ndarray:
  """Solves pi (P - I) = 0 with sum(pi) = 1."""
  v = transition.shape[0]
  a = transition.T - np.eye(v)
  a[-1, :] = 1.0
  b = np.zeros(v)
  b[-1] = 1.0
  pi = np.clip(np.linalg.solve(a, b), 0.0, None)
  return pi / pi.sum()


@functools.lru_cache(maxsize=8)
def spec_from_config(vocab_size: int, num_groups: int, seed: int,
                     epsilon: float, perturbation: float) -> BigramSpec:
  """Cached `BigramSpec.create` (train and eval share one spec)."""
  return BigramSpec.create(vocab_size, num_groups, seed, epsilon=epsilon,
                           perturbation=perturbation)


@dataclasses.dataclass(frozen=True, eq=False)
class BigramReader:
  """Picklable `read(ids)` for the grain pipeline."""

  spec: BigramSpec
  length: int
  stream: int
  seed: int

  def __call__(self, ids: np.ndarray) -> np.ndarray:
    return self.spec.examples(ids, self.length, stream=self.stream,
                              seed=self.seed)


def spec_of(data_config) -> BigramSpec:
  """The `BigramSpec` a bigram data config describes."""
  return spec_from_config(
      int(data_config.vocab_size), int(data_config.get("num_groups", 4)),
      int(data_config.get("spec_seed", 0)),
      float(data_config.get("epsilon", 1e-3)),
      float(data_config.get("perturbation", 0.5)))


def reader(data_config, split: str, seed: int) -> tuple[BigramReader, int | None]:
  """(read fn, number of examples or None for an endless stream)."""
  spec = spec_of(data_config)
  length = int(data_config.seq_len) + 1
  if split == "train":
    return BigramReader(spec, length, _TRAIN_STREAM, int(seed)), None
  return BigramReader(spec, length, _EVAL_STREAM, spec.seed), None
