"""A Zipfian bigram language: a stationary toy whose "river" lasts.

The plain bigram corpus (``wsd_jax.data.bigram``) gives every token about
the same frequency, so a model learns all its deterministic rows early and
the stable phase runs out of river (issue 15, item 2). Here token
frequencies follow a Zipf law, as words do: the rank-``r`` token has
base weight ``z_r = r ** -exponent / sum_k k ** -exponent``. A rare token is
seen ~``1 / z_r`` times less often than the commonest, so rows keep being
learned, rarest last, through any run of practical length.

Construction (deterministic given ``seed``):

* Token ``r`` (id = rank, 0 the commonest) has base weight ``z_r``.
* The tokens are split into ``G`` equal entropy groups by a random
  permutation (so every group spans the whole frequency range), as in
  ``bigram``: group ``g`` has support size ``k_g = round(V ** (g / (G - 1)))``
  next tokens (``k_0 = 1``: deterministic, ``k_{G-1} = V``).
* Row ``x`` of group 0 is one successor drawn with probabilities ``z``;
  row ``x`` of group ``g > 0`` is a draw from ``Dirichlet(k_g * z)``: its
  mean is ``z`` (common tokens are common successors) and its concentration
  ``k_g`` grades its entropy, from a few successors (small ``k_g``) to
  nearly ``z`` itself (``k_{G-1} = V``). So ``k_g`` is the concentration,
  not a hard support size as in ``bigram``.
* Every row is mixed with ``z`` itself: ``P = (1 - epsilon) * Q + epsilon * z``,
  so all entries are positive, the chain is irreducible and aperiodic and its
  stationary distribution ``pi`` (solved exactly) is unique. Every row is
  ``z`` in expectation, so ``pi`` is close to ``z`` but not equal to it:
  :func:`zipf_fit` measures its exponent.

The result is a ``bigram.BigramSpec`` (same sampling, streams, entropies and
exact ``optimal_loss = sum_x pi[x] H(P[x])``) with the Zipf parameters added,
so the whole bigram pipeline (reader, eval stream, token groups) is reused.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from wsd_jax.data import bigram


@dataclasses.dataclass(frozen=True, eq=False)
class ZipfBigramSpec(bigram.BigramSpec):
  """A ``BigramSpec`` whose token frequencies follow a Zipf law."""

  exponent: float = 1.1
  base_weights: np.ndarray | None = None  # [V] z, the Zipf weights by id.

  @classmethod
  def create(  # pytype: disable=signature-mismatch
      cls,
      vocab_size: int,
      num_groups: int,
      seed: int = 0,
      *,
      exponent: float = 1.1,
      epsilon: float = 1e-2,
      perturbation: float = 0.0,
  ) -> "ZipfBigramSpec":
    """Builds the language deterministically from its arguments."""
    bigram.check_language(vocab_size, num_groups, epsilon)
    if not (np.isfinite(exponent) and exponent > 0):
      raise ValueError(f"exponent must be > 0, got {exponent}")
    if perturbation != 0:
      raise ValueError("perturbation is bigram's; the Zipf rows are "
                       f"Dirichlet draws, so it must be 0, got {perturbation}")
    v, g = int(vocab_size), int(num_groups)
    rng = np.random.default_rng(seed)
    z = zipf_weights(v, exponent)
    group_of_token, support_sizes = bigram.entropy_groups(rng, v, g)
    base = np.zeros((v, v))
    for x in range(v):
      c = support_sizes[group_of_token[x]]
      if c == 1:  # deterministic: one successor, drawn with probability z
        base[x, rng.choice(v, p=z)] = 1.0
        continue
      row = rng.gamma(c * z)  # Dirichlet(c * z): mean z, concentration c
      if not row.sum() > 0:  # every gamma draw underflowed (tiny c * z)
        row[rng.choice(v, p=z)] = 1.0
      base[x] = row / row.sum()
    transition = (1.0 - epsilon) * base + epsilon * z[None, :]
    transition /= transition.sum(axis=1, keepdims=True)
    return cls(v, g, int(seed), float(epsilon), float(perturbation),
               transition, bigram._stationary(transition), group_of_token,
               support_sizes, float(exponent), z)


def zipf_weights(vocab_size: int, exponent: float) -> np.ndarray:
  """``z_r = (r + 1) ** -exponent``, normalised, for ``r = 0 .. V-1``."""
  z = np.arange(1, vocab_size + 1, dtype=np.float64) ** -float(exponent)
  return z / z.sum()


def zipf_fit(probabilities: np.ndarray, drop_tail: float = 0.1) -> float:
  """The Zipf exponent of a distribution: minus the least-squares slope of
  ``log p`` (sorted, descending) against ``log rank``, over all ranks but
  the rarest ``drop_tail`` fraction (where the epsilon floor flattens it)."""
  p = np.sort(np.asarray(probabilities, np.float64))[::-1]
  n = max(int(round(len(p) * (1 - drop_tail))), 2)
  slope = np.polyfit(np.log(np.arange(1, n + 1)), np.log(p[:n]), 1)[0]
  return float(-slope)


def population_loss(spec: bigram.BigramSpec, logits_VxV) -> float:
  """The exact expected next-token cross-entropy of a context-1 model whose
  logits after token ``x`` are ``logits_VxV[x]``:
  ``sum_x pi[x] * sum_y P[x, y] * -log softmax(logits[x])[y]`` (nats)."""
  z = np.asarray(logits_VxV, np.float64)
  if z.shape != spec.transition.shape:
    raise ValueError(f"logits shape {z.shape} is not [V, V] = "
                     f"{spec.transition.shape}")
  z = z - z.max(axis=1, keepdims=True)
  logq = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
  return float(spec.stationary @ -(spec.transition * logq).sum(axis=1))


@functools.lru_cache(maxsize=8)
def spec_from_config(vocab_size: int, num_groups: int, seed: int,
                     exponent: float, epsilon: float,
                     perturbation: float) -> ZipfBigramSpec:
  """Cached ``ZipfBigramSpec.create`` (train and eval share one spec)."""
  return ZipfBigramSpec.create(vocab_size, num_groups, seed,
                               exponent=exponent, epsilon=epsilon,
                               perturbation=perturbation)


def spec_of(data_config) -> ZipfBigramSpec:
  """The ``ZipfBigramSpec`` a ``zipf_bigram`` data config describes."""
  return spec_from_config(
      int(data_config.vocab_size), int(data_config.get("num_groups", 4)),
      int(data_config.get("spec_seed", 0)),
      float(data_config.get("exponent", 1.1)),
      float(data_config.get("epsilon", 1e-2)),
      float(data_config.get("perturbation", 0.0)))


def reader(data_config, split: str, seed: int
           ) -> tuple[bigram.BigramReader, int | None]:
  """(read fn, None: an endless stream), as ``bigram.reader``."""
  spec = spec_of(data_config)
  length = int(data_config.seq_len) + 1
  if split == "train":
    return bigram.BigramReader(spec, length, bigram._TRAIN_STREAM,
                               int(seed)), None
  return bigram.BigramReader(spec, length, bigram._EVAL_STREAM,
                             spec.seed), None
