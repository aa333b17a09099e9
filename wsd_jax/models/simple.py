"""Small language models: a bigram logit table and a fixed-context MLP LM."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class Bigram(nnx.Module):
  """logits = table[token]: the exact model class of a bigram language.

  The table starts at zeros (uniform predictions, loss log V) unless
  `init_std > 0`.
  """

  def __init__(self, vocab_size: int, *, rngs: nnx.Rngs, init_std: float = 0.0):
    shape = (vocab_size, vocab_size)
    table = (jnp.zeros(shape, jnp.float32) if init_std == 0.0 else
             init_std * jax.random.normal(rngs.params(), shape, jnp.float32))
    self.table = nnx.Param(table)

  def __call__(self, tokens_BxT: jax.Array) -> jax.Array:
    return self.table[...][tokens_BxT].astype(jnp.float32)


class MLPLM(nnx.Module):
  """Embeds the last `context` tokens, concatenates them, MLP (gelu) -> logits.

  Positions before the start of the sequence contribute zero vectors.
  """

  def __init__(self, vocab_size: int, *, embed_dim: int = 64,
               hidden_dim: int = 256, num_layers: int = 1, context: int = 1,
               rngs: nnx.Rngs, dtype: jnp.dtype = jnp.float32):
    if context < 1:
      raise ValueError(f"context must be >= 1, got {context}")
    if num_layers < 0:
      raise ValueError(f"num_layers must be >= 0, got {num_layers}")
    self.context = context
    self.embed = nnx.Embed(vocab_size, embed_dim, dtype=dtype, rngs=rngs)
    widths = [context * embed_dim] + [hidden_dim] * num_layers
    self.hidden = nnx.List([
        nnx.Linear(a, b, dtype=dtype, rngs=rngs) for a, b in zip(widths, widths[1:])
    ])
    self.out = nnx.Linear(widths[-1], vocab_size, dtype=dtype, rngs=rngs)

  def __call__(self, tokens_BxT: jax.Array) -> jax.Array:
    x_BxTxE = self.embed(tokens_BxT)
    t = tokens_BxT.shape[1]
    shifted = [x_BxTxE]
    for s in range(1, self.context):
      pad = jnp.zeros_like(x_BxTxE[:, :min(s, t)])
      shifted.append(jnp.concatenate([pad, x_BxTxE[:, :t - s]], axis=1)[:, :t])
    h = jnp.concatenate(shifted, axis=-1)
    for layer in self.hidden:
      h = jax.nn.gelu(layer(h))
    return self.out(h).astype(jnp.float32)
