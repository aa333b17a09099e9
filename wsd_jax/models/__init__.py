"""Flax NNX language models: bigram table, MLP LM, GPT decoder.

Every model maps int32 tokens [B, T] to float32 logits [B, T, V], keeps only
`nnx.Param` state (float32) and is pure in `__call__`, so the trainer can use
`graphdef, params = nnx.split(model, nnx.Param)` and
`nnx.merge(graphdef, params)(tokens)` under `jax.jit` and `jax.vmap`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from wsd_jax.models.classifier import MLPClassifier
from wsd_jax.models.gpt import GPT, GPTConfig, PRESETS, flops_per_token
from wsd_jax.models.simple import Bigram, MLPLM

KNOWN_MODELS = ("bigram", "mlp", "gpt", "mlp_classifier")
_GPT_OVERRIDES = ("num_layers", "d_model", "num_heads", "dtype", "attention_impl",
                  "tie_embeddings", "position", "max_seq_len", "mlp_ratio",
                  "logits_dtype", "remat")

__all__ = ["Bigram", "GPT", "GPTConfig", "KNOWN_MODELS", "MLPLM", "PRESETS",
           "build", "check", "count_params", "flops_per_token", "gpt_config"]


def count_params(model: nnx.Module) -> int:
  """Number of scalar parameters (works on `nnx.eval_shape` models too)."""
  leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
  return int(sum(math.prod(x.shape) for x in leaves))


def gpt_config(model_config, *, vocab_size: int, max_seq_len: int) -> GPTConfig:
  """The GPTConfig of `model_config.size` plus its override fields.

  Raises:
    ValueError: if `max_seq_len` (the data's sequence length) exceeds the
      model's max_seq_len.
  """
  # None means "the preset's value", except for attention_impl (XLA default).
  overrides = {k: model_config[k] for k in _GPT_OVERRIDES if k in model_config
               and (model_config[k] is not None or k == "attention_impl")}
  cfg = GPTConfig.preset(model_config.get("size", "nano"), vocab_size=vocab_size,
                         **overrides)
  if max_seq_len > cfg.max_seq_len:
    raise ValueError(f"sequence length {max_seq_len} exceeds the model's "
                     f"max_seq_len {cfg.max_seq_len}")
  return cfg


def check(model_config, *, vocab_size: int, max_seq_len: int) -> None:
  """Raises the ``ValueError`` that ``build`` would (unknown name, GPT size,
  remat, dtype, sequence length), without building anything."""
  name = model_config.get("name", None)
  if name not in KNOWN_MODELS:
    raise ValueError(f"unknown model name {name!r}; known names: "
                     f"{', '.join(KNOWN_MODELS)}")
  if name == "gpt":
    gpt_config(model_config, vocab_size=vocab_size, max_seq_len=max_seq_len)


def build(model_config, *, vocab_size: int, max_seq_len: int,
          rngs: nnx.Rngs) -> nnx.Module:
  """Builds `model_config.name` ("bigram", "mlp" or "gpt").

  Fields read: mlp: embed_dim=64, hidden_dim=256, num_layers=1, context=1,
  dtype="float32"; gpt: size="nano" plus optional num_layers, d_model,
  num_heads, dtype, attention_impl, tie_embeddings, position, max_seq_len,
  mlp_ratio, logits_dtype, remat ("none" | "block" | "dots":
  ``gpt.REMAT_POLICIES``).
  """
  name = model_config.get("name", None)
  if name == "bigram":
    return Bigram(vocab_size, rngs=rngs)
  if name == "mlp":
    get = model_config.get
    return MLPLM(vocab_size, embed_dim=int(get("embed_dim", 64)),
                 hidden_dim=int(get("hidden_dim", 256)),
                 num_layers=int(get("num_layers", 1)),
                 context=int(get("context", 1)),
                 dtype=jnp.dtype(get("dtype", "float32")), rngs=rngs)
  if name == "mlp_classifier":  # pixels in, vocab_size = pixel levels
    return MLPClassifier(int(max_seq_len), int(model_config.num_classes),
                         levels=vocab_size,
                         hidden_dim=int(model_config.get("hidden_dim", 128)),
                         num_layers=int(model_config.get("num_layers", 1)),
                         rngs=rngs)
  if name == "gpt":
    return GPT(gpt_config(model_config, vocab_size=vocab_size,
                          max_seq_len=max_seq_len), rngs=rngs)
  raise ValueError(f"unknown model name {name!r}; known names: "
                   f"{', '.join(KNOWN_MODELS)}")
