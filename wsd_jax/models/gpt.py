"""GPT-style decoder in Flax NNX: pre-norm RMSNorm blocks, RoPE, causal attention.

No dropout and no mutable state in `__call__`, so `nnx.merge(graphdef,
params)(tokens)` is a pure function that can be jitted and `jax.vmap`ped over
a population of parameter pytrees.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

POSITIONS = ("rope", "learned")
ATTENTION_IMPLS = (None, "xla", "cudnn")
DTYPES = ("float32", "bfloat16")
# Rematerialisation of each transformer block in the backward pass: the
# ``jax.checkpoint`` policy (what the forward pass keeps) of each choice.
# "none" keeps every activation; "block" keeps only each block's input and
# recomputes the block; "dots" keeps the outputs of the block's matmuls
# (weights x activations) and recomputes the rest (norms, RoPE, GELU and the
# attention kernel).
REMAT_POLICIES: dict[str, Any] = {
    "none": None,
    "block": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}

PRESETS: dict[str, dict[str, Any]] = {
    "nano": dict(num_layers=2, d_model=64, num_heads=4, max_seq_len=128),
    "micro": dict(num_layers=4, d_model=128, num_heads=4, max_seq_len=256),
    "mini": dict(num_layers=6, d_model=256, num_heads=8, max_seq_len=512),
    "small": dict(num_layers=12, d_model=768, num_heads=12, max_seq_len=1024),
}
PRESETS["124m"] = PRESETS["small"]


@dataclasses.dataclass(frozen=True)
class GPTConfig:
  """GPT hyperparameters; validated on construction."""

  vocab_size: int = 50304
  max_seq_len: int = 1024
  num_layers: int = 12
  d_model: int = 768
  num_heads: int = 12
  mlp_ratio: int = 4
  position: str = "rope"
  rope_base: float = 10000.0
  tie_embeddings: bool = True
  dtype: str = "float32"  # Compute dtype; parameters are always float32.
  logits_dtype: str = "float32"  # bfloat16 halves the largest activation;
                                 # the loss upcasts inside its reduction.
  attention_impl: str | None = None  # jax.nn.dot_product_attention's.
  remat: str = "none"  # a key of REMAT_POLICIES
  norm_eps: float = 1e-6
  init_std: float = 0.02

  def __post_init__(self):
    for field in ("vocab_size", "max_seq_len", "num_layers", "d_model",
                  "num_heads", "mlp_ratio"):
      if int(getattr(self, field)) < 1:
        raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
    if self.d_model % self.num_heads:
      raise ValueError(f"d_model {self.d_model} is not divisible by "
                       f"num_heads {self.num_heads}")
    if self.position == "rope" and (self.d_model // self.num_heads) % 2:
      raise ValueError(f"rope needs an even head dim, got "
                       f"{self.d_model // self.num_heads}")
    if self.position not in POSITIONS:
      raise ValueError(f"unknown position {self.position!r}; known: {POSITIONS}")
    for field in ("dtype", "logits_dtype"):
      if getattr(self, field) not in DTYPES:
        raise ValueError(f"unknown {field} {getattr(self, field)!r}; known: "
                         f"{DTYPES}")
    if self.attention_impl not in ATTENTION_IMPLS:
      raise ValueError(f"unknown attention_impl {self.attention_impl!r}; "
                       f"known: {ATTENTION_IMPLS}")
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f"unknown remat {self.remat!r} (config.model.remat); "
                       f"known: {', '.join(REMAT_POLICIES)}")
    if self.attention_impl == "cudnn" and self.dtype != "bfloat16":
      raise ValueError(f"attention_impl 'cudnn' needs dtype 'bfloat16', got "
                       f"{self.dtype!r}")

  @classmethod
  def preset(cls, name: str, **overrides: Any) -> "GPTConfig":
    """A named size ("nano", "micro", "mini", "small"/"124m") with overrides."""
    if name not in PRESETS:
      raise ValueError(f"unknown GPT size {name!r}; known sizes: "
                       f"{', '.join(PRESETS)}")
    return cls(**{**PRESETS[name], **overrides})

  @property
  def head_dim(self) -> int:
    return self.d_model // self.num_heads

  @property
  def compute_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.dtype)

  def num_non_embedding_params(self) -> int:
    """Parameters outside the token/position embeddings and the LM head."""
    d = self.d_model
    per_layer = (4 + 2 * self.mlp_ratio) * d * d + 2 * d  # attn, mlp, 2 norms.
    return self.num_layers * per_layer + d  # + final norm.


def flops_per_token(cfg: GPTConfig, seq_len: int) -> float:
  """Training FLOPs per token, `6 N + 12 L d T` (Kaplan et al. 2020, PaLM).

  N counts every weight that takes part in a matmul: the non-embedding
  parameters plus the LM head (`vocab_size * d_model`, tied or not); the
  embedding lookups are gathers and are not counted. `12 L d T` is the
  attention-score and attention-value work at context length T.
  """
  n = cfg.num_non_embedding_params() + cfg.vocab_size * cfg.d_model
  return float(6 * n + 12 * cfg.num_layers * cfg.d_model * seq_len)


def _rope(x_BxTxNxH: jax.Array, base: float) -> jax.Array:
  """Rotary position embedding over the last axis (half-split convention)."""
  t, h = x_BxTxNxH.shape[1], x_BxTxNxH.shape[-1]
  inv_freq = base ** (-jnp.arange(0, h // 2, dtype=jnp.float32) / (h // 2))
  angles_TxH2 = jnp.arange(t, dtype=jnp.float32)[:, None] * inv_freq[None, :]
  sin = jnp.sin(angles_TxH2)[None, :, None, :]
  cos = jnp.cos(angles_TxH2)[None, :, None, :]
  x1, x2 = jnp.split(x_BxTxNxH.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x_BxTxNxH.dtype)


class _Block(nnx.Module):
  """Pre-norm transformer block: x + attn(norm(x)); x + mlp(norm(x))."""

  def __init__(self, cfg: GPTConfig, *, rngs: nnx.Rngs):
    d, dtype = cfg.d_model, cfg.compute_dtype
    init = nnx.initializers.normal(cfg.init_std)
    out_init = nnx.initializers.normal(cfg.init_std / (2 * cfg.num_layers) ** 0.5)
    linear = lambda a, b, i: nnx.Linear(a, b, use_bias=False, dtype=dtype,
                                        kernel_init=i, rngs=rngs)
    self.cfg = cfg
    self.attn_norm = nnx.RMSNorm(d, epsilon=cfg.norm_eps, dtype=dtype, rngs=rngs)
    self.qkv = linear(d, 3 * d, init)
    self.attn_out = linear(d, d, out_init)
    self.mlp_norm = nnx.RMSNorm(d, epsilon=cfg.norm_eps, dtype=dtype, rngs=rngs)
    self.mlp_in = linear(d, cfg.mlp_ratio * d, init)
    self.mlp_out = linear(cfg.mlp_ratio * d, d, out_init)

  def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
    cfg = self.cfg
    b, t, _ = x_BxTxD.shape
    qkv = self.qkv(self.attn_norm(x_BxTxD)).reshape(b, t, 3, cfg.num_heads,
                                                    cfg.head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    if cfg.position == "rope":
      q, k = _rope(q, cfg.rope_base), _rope(k, cfg.rope_base)
    attn = jax.nn.dot_product_attention(q, k, v, is_causal=True,
                                        implementation=cfg.attention_impl)
    x_BxTxD = x_BxTxD + self.attn_out(attn.reshape(b, t, cfg.d_model))
    h = jax.nn.gelu(self.mlp_in(self.mlp_norm(x_BxTxD)))
    return x_BxTxD + self.mlp_out(h)


def _call_block(block: _Block, x_BxTxD: jax.Array, remat: str) -> jax.Array:
  """``block(x)``, rematerialised in the backward pass as ``remat`` says."""
  if remat == "none":
    return block(x_BxTxD)
  return nnx.remat(lambda b, x: b(x), policy=REMAT_POLICIES[remat])(
      block, x_BxTxD)


class GPT(nnx.Module):
  """Decoder-only transformer: tokens int32[B, T] -> float32 logits [B, T, V]."""

  def __init__(self, cfg: GPTConfig, *, rngs: nnx.Rngs):
    dtype, init = cfg.compute_dtype, nnx.initializers.normal(cfg.init_std)
    self.cfg = cfg
    self.embed = nnx.Embed(cfg.vocab_size, cfg.d_model, dtype=dtype,
                           embedding_init=init, rngs=rngs)
    if cfg.position == "learned":
      self.pos_embed = nnx.Embed(cfg.max_seq_len, cfg.d_model, dtype=dtype,
                                 embedding_init=init, rngs=rngs)
    self.blocks = nnx.List([_Block(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
    self.final_norm = nnx.RMSNorm(cfg.d_model, epsilon=cfg.norm_eps, dtype=dtype,
                                  rngs=rngs)
    if not cfg.tie_embeddings:
      self.head = nnx.Linear(cfg.d_model, cfg.vocab_size, use_bias=False,
                             dtype=dtype, kernel_init=init, rngs=rngs)

  def __call__(self, tokens_BxT: jax.Array) -> jax.Array:
    t = tokens_BxT.shape[1]
    if t > self.cfg.max_seq_len:
      raise ValueError(f"sequence length {t} exceeds the model's max_seq_len "
                       f"{self.cfg.max_seq_len}")
    x_BxTxD = self.embed(tokens_BxT)
    if self.cfg.position == "learned":
      x_BxTxD = x_BxTxD + self.pos_embed(jnp.arange(t))[None]
    for block in self.blocks:
      x_BxTxD = _call_block(block, x_BxTxD, self.cfg.remat)
    x_BxTxD = self.final_norm(x_BxTxD)
    if self.cfg.tie_embeddings:
      logits = self.embed.attend(x_BxTxD)
    else:
      logits = self.head(x_BxTxD)
    return logits.astype(jnp.dtype(self.cfg.logits_dtype))
