"""An MLP image classifier in the language-model interface.

Tokens ``int32[B, P]`` are pixel levels (``0..levels-1``); the MLP reads the
whole image (scaled to [0, 1]) and its class logits are repeated at every
position, ``float32[B, P, num_classes]``, so the trainer's per-token
cross-entropy is the per-image cross-entropy (``wsd_jax.data.digits``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class MLPClassifier(nnx.Module):
  """``logits = W_out gelu(... gelu(W_1 x))`` of the flattened image."""

  def __init__(self, num_inputs: int, num_classes: int, *, levels: int,
               hidden_dim: int = 128, num_layers: int = 1, rngs: nnx.Rngs):
    widths = [num_inputs] + [hidden_dim] * num_layers
    self.levels = levels
    self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs)
                            for a, b in zip(widths, widths[1:])])
    self.out = nnx.Linear(widths[-1], num_classes, rngs=rngs)

  def __call__(self, tokens_BxP: jax.Array) -> jax.Array:
    h = tokens_BxP.astype(jnp.float32) / (self.levels - 1)
    for layer in self.hidden:
      h = jax.nn.gelu(layer(h))
    logits_BxC = self.out(h)
    return jnp.broadcast_to(logits_BxC[:, None, :],
                            (*tokens_BxP.shape, logits_BxC.shape[-1]))
