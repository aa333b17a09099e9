"""Tests for wsd_jax.models."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from wsd_jax import models

V = 61


def _nano(**overrides):
  return models.GPTConfig.preset("nano", vocab_size=V, **overrides)


def _tokens(b=2, t=16, seed=0):
  return jax.random.randint(jax.random.key(seed), (b, t), 0, V, jnp.int32)


@pytest.mark.parametrize("make", [
    lambda: models.Bigram(V, rngs=nnx.Rngs(0)),
    lambda: models.MLPLM(V, embed_dim=8, hidden_dim=16, num_layers=2, context=3,
                         rngs=nnx.Rngs(0)),
    lambda: models.GPT(_nano(), rngs=nnx.Rngs(0)),
    lambda: models.GPT(_nano(position="learned", tie_embeddings=False),
                       rngs=nnx.Rngs(0)),
])
def test_output_shape_and_dtype(make):
  logits = make()(_tokens(3, 10))
  assert logits.shape == (3, 10, V)
  assert logits.dtype == jnp.float32
  assert np.all(np.isfinite(logits))


def test_bigram_logits_are_table_rows():
  model = models.Bigram(V, rngs=nnx.Rngs(0), init_std=1.0)
  tokens = _tokens()
  np.testing.assert_array_equal(model(tokens), model.table[...][tokens])
  np.testing.assert_array_equal(models.Bigram(V, rngs=nnx.Rngs(0)).table[...], 0.0)


@pytest.mark.parametrize("make", [
    lambda: models.GPT(_nano(), rngs=nnx.Rngs(0)),
    lambda: models.GPT(_nano(position="learned"), rngs=nnx.Rngs(0)),
    lambda: models.MLPLM(V, embed_dim=8, hidden_dim=16, context=3, rngs=nnx.Rngs(0)),
])
def test_causality(make):
  model, tokens, t = make(), _tokens(2, 16), 9
  changed = tokens.at[:, t].set((tokens[:, t] + 1) % V)
  before, after = model(tokens), model(changed)
  np.testing.assert_allclose(before[:, :t], after[:, :t], atol=1e-6)
  assert np.max(np.abs(before[:, t] - after[:, t])) > 1e-4


def test_mlp_sees_exactly_context_tokens():
  model = models.MLPLM(V, embed_dim=8, hidden_dim=16, context=2, rngs=nnx.Rngs(0))
  tokens = _tokens(1, 8)
  changed = tokens.at[:, 3].set((tokens[:, 3] + 1) % V)
  diff = np.abs(model(tokens) - model(changed)).max(axis=(0, 2))
  assert np.all(diff[[3, 4]] > 1e-5)
  np.testing.assert_array_equal(diff[[0, 1, 2, 5, 6, 7]], 0.0)


def test_bf16_compute_with_f32_params():
  model = models.GPT(_nano(dtype="bfloat16"), rngs=nnx.Rngs(0))
  params = nnx.state(model, nnx.Param)
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  logits = model(_tokens())
  assert logits.dtype == jnp.float32
  ref = models.GPT(_nano(), rngs=nnx.Rngs(0))(_tokens())
  err = np.abs(logits - ref).max()
  assert 0 < err < 0.1  # bf16 rounding: different, but close.


def test_tied_embeddings_share_one_array():
  tied = models.GPT(_nano(tie_embeddings=True), rngs=nnx.Rngs(0))
  untied = models.GPT(_nano(tie_embeddings=False), rngs=nnx.Rngs(0))
  assert not hasattr(tied, "head")
  assert models.count_params(untied) - models.count_params(tied) == V * 64
  # The logits move when only the (shared) embedding table changes.
  tokens = _tokens()
  before = tied(tokens)
  tied.embed.embedding[...] = tied.embed.embedding[...] * 2.0
  assert not np.allclose(before, tied(tokens))


def test_124m_param_count():
  cfg = models.GPTConfig.preset("124m")
  abstract = nnx.eval_shape(lambda: models.GPT(cfg, rngs=nnx.Rngs(0)))
  n = models.count_params(abstract)
  assert abs(n - 124e6) / 124e6 < 0.02, n
  assert n == cfg.num_non_embedding_params() + cfg.vocab_size * cfg.d_model
  assert models.GPTConfig.preset("small") == cfg


def test_flops_per_token():
  cfg = _nano()
  n = models.count_params(models.GPT(cfg, rngs=nnx.Rngs(0)))  # Tied: head == embed.
  assert models.flops_per_token(cfg, 32) == 6 * n + 12 * 2 * 64 * 32


def test_split_merge_and_vmap_match_module():
  model, tokens = models.GPT(_nano(), rngs=nnx.Rngs(0)), _tokens()
  graphdef, params = nnx.split(model, nnx.Param)
  forward = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
  np.testing.assert_allclose(forward(params, tokens), model(tokens), atol=1e-5)
  other = nnx.state(models.GPT(_nano(), rngs=nnx.Rngs(1)), nnx.Param)
  stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, other)
  both = jax.jit(jax.vmap(forward, in_axes=(0, None)))(stacked, tokens)
  np.testing.assert_allclose(both[0], forward(params, tokens), atol=1e-5)
  np.testing.assert_allclose(both[1], forward(other, tokens), atol=1e-5)
  assert not np.allclose(both[0], both[1])


def _config(**fields):
  return ml_collections.ConfigDict(fields)


def test_build_each_model():
  rngs = nnx.Rngs(0)
  assert isinstance(models.build(_config(name="bigram"), vocab_size=V,
                                 max_seq_len=8, rngs=rngs), models.Bigram)
  mlp = models.build(_config(name="mlp", embed_dim=4, hidden_dim=8, context=2),
                     vocab_size=V, max_seq_len=8, rngs=rngs)
  assert mlp.context == 2 and mlp.embed.embedding.shape == (V, 4)
  gpt = models.build(_config(name="gpt", size="nano", num_layers=3, d_model=32,
                             dtype="bfloat16", attention_impl=None),
                     vocab_size=V, max_seq_len=128, rngs=rngs)
  assert (gpt.cfg.num_layers, gpt.cfg.d_model, gpt.cfg.dtype) == (3, 32, "bfloat16")
  assert len(gpt.blocks) == 3 and gpt.cfg.num_heads == 4


@pytest.mark.parametrize("fields, max_seq_len, match", [
    (dict(name="rnn"), 8, r"'rnn'.*bigram, mlp, gpt"),
    (dict(name="gpt", size="huge"), 8, r"'huge'.*nano"),
    (dict(name="gpt", size="nano"), 256,
     r"sequence length 256 exceeds the model's max_seq_len 128"),
    (dict(name="gpt", size="nano", d_model=66), 8, r"d_model 66.*num_heads 4"),
    (dict(name="gpt", size="nano", attention_impl="cudnn"), 8, r"cudnn.*bfloat16"),
    (dict(name="gpt", size="nano", position="alibi"), 8, r"'alibi'"),
    (dict(name="gpt", size="nano", dtype="float16"), 8, r"'float16'"),
    (dict(name="gpt", size="nano", num_layers=0), 8, r"num_layers.*0"),
])
def test_build_errors(fields, max_seq_len, match):
  with pytest.raises(ValueError, match=match):
    models.build(_config(**fields), vocab_size=V, max_seq_len=max_seq_len,
                 rngs=nnx.Rngs(0))


def test_build_max_seq_len_override_allows_longer_data():
  gpt = models.build(_config(name="gpt", size="nano", max_seq_len=256),
                     vocab_size=V, max_seq_len=256, rngs=nnx.Rngs(0))
  assert gpt.cfg.max_seq_len == 256
