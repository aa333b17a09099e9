"""Decay shapes: the one set of formulas every schedule phase uses.

A decay over ``[s0, s0 + d]`` evaluated at step ``s`` has progress
``p = (s - s0) / d`` clipped to ``[0, 1]`` and value

    final + (start - final) * m(p)   (evaluated as start m + final (1 - m))

for the *multiplier* shapes ``m``:

=================  =======================================================
``linear``         ``1 - p``
``cosine``         ``(1 + cos(pi p)) / 2``
``1-sqrt``         ``1 - sqrt(p)`` (Hägele et al., arXiv 2405.18392)
``square``         ``1 - p**2``
``rex``            ``(1 - p) / (1 - (1 - beta) p)`` (Chen et al., arXiv 2107.04197)
``uba``            ``2 (1 + cos(pi p)) / (2 phi + (2 - phi)(1 + cos(pi p)))``
                   (Tang et al., arXiv 2505.24452)
=================  =======================================================

and two *ratio* shapes that need ``final > 0``:

=================  =======================================================
``exp``            ``start * (final / start)**p`` (MiniCPM-style exponential)
``inverse-linear`` ``start / (1 + (start / final - 1) p)`` (Wen et al.,
                   arXiv 2410.05192, Levanter configs)
=================  =======================================================

A linear warmup from ``init`` to ``peak`` is the ``linear`` shape run upwards
(``start=init``, ``final=peak``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Shapes usable as ``decay_shape`` of wsd, branch, power, infinite, ...
DECAY_SHAPES = ("linear", "cosine", "1-sqrt", "square", "exp", "inverse-linear")
# Shapes whose formula divides by ``final``.
RATIO_SHAPES = ("exp", "inverse-linear")


def _cos_term(p: jax.Array) -> jax.Array:
  return 1.0 + jnp.cos(jnp.pi * p)


def multiplier(shape: str, p: jax.Array, param: jax.typing.ArrayLike = 0.0
               ) -> jax.Array:
  """The multiplier ``m(p)`` of a shape: 1 at ``p = 0``, 0 at ``p = 1``."""
  if shape == "linear":
    return 1.0 - p
  if shape == "cosine":
    return 0.5 * _cos_term(p)
  if shape == "1-sqrt":
    return 1.0 - jnp.sqrt(p)
  if shape == "square":
    return 1.0 - p * p
  if shape == "rex":
    beta = param
    return (1.0 - p) / (1.0 - (1.0 - beta) * p)
  if shape == "uba":
    phi = param
    c = _cos_term(p)
    return 2.0 * c / (2.0 * phi + (2.0 - phi) * c)
  raise ValueError(f"unknown multiplier shape {shape!r}")


def interpolate(shape: str, p: jax.Array, start: jax.typing.ArrayLike,
                final: jax.typing.ArrayLike,
                param: jax.typing.ArrayLike = 0.0) -> jax.Array:
  """Value of a decay of ``shape`` from ``start`` to ``final`` at progress ``p``."""
  if shape == "exp":
    return start * (final / start) ** p
  if shape == "inverse-linear":
    return start / (1.0 + (start / final - 1.0) * p)
  m = multiplier(shape, p, param)
  # Written so that m = 1 gives ``start`` and m = 0 gives ``final`` exactly in
  # float32 (``final + (start - final) * m`` loses a small ``start`` to
  # cancellation when ``final`` is large, e.g. a warmup from init_value).
  return start * m + final * (1.0 - m)
