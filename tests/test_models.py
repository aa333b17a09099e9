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
@pytest.mark.slow
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
@pytest.mark.slow
def test_causality(make):
  model, tokens, t = make(), _tokens(2, 16), 9
  changed = tokens.at[:, t].set((tokens[:, t] + 1) % V)
  before, after = model(tokens), model(changed)
  np.testing.assert_allclose(before[:, :t], after[:, :t], atol=1e-6)
  assert np.max(np.abs(before[:, t] - after[:, t])) > 1e-4


@pytest.mark.slow
def test_mlp_sees_exactly_context_tokens():
  model = models.MLPLM(V, embed_dim=8, hidden_dim=16, context=2, rngs=nnx.Rngs(0))
  tokens = _tokens(1, 8)
  changed = tokens.at[:, 3].set((tokens[:, 3] + 1) % V)
  diff = np.abs(model(tokens) - model(changed)).max(axis=(0, 2))
  assert np.all(diff[[3, 4]] > 1e-5)
  np.testing.assert_array_equal(diff[[0, 1, 2, 5, 6, 7]], 0.0)


@pytest.mark.slow
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


@pytest.mark.parametrize("overrides", [
    dict(), dict(tie_embeddings=False, position="learned"),
    dict(num_layers=3, d_model=48, num_heads=6, mlp_ratio=2)])
@pytest.mark.slow
def test_flops_per_token_counts_the_models_matmuls(overrides):
  """``6 N + 12 L d T`` with N counted from the built model's parameters:
  every parameter outside the embedding tables (the matmul kernels layer by
  layer, and the norm scales) plus the LM head, counted once even when it
  is the tied embedding table; 12 L d T = 3 (forward + backward) x 2 flops
  x (T d for q.k + T d for the weighted sum of v) per layer."""
  cfg = _nano(**overrides)
  params = nnx.to_pure_dict(nnx.state(models.GPT(cfg, rngs=nnx.Rngs(0)),
                                      nnx.Param))
  per_layer = []
  for block in params["blocks"].values():
    kernels = [block[k]["kernel"].shape for k in ("qkv", "attn_out", "mlp_in",
                                                  "mlp_out")]
    d, f = cfg.d_model, cfg.mlp_ratio * cfg.d_model
    assert kernels == [(d, 3 * d), (d, d), (d, f), (f, d)]
    norms = block["attn_norm"]["scale"].size + block["mlp_norm"]["scale"].size
    per_layer.append(sum(a * b for a, b in kernels) + norms)
  assert len(per_layer) == cfg.num_layers
  head = (params["head"]["kernel"].size if "head" in params
          else params["embed"]["embedding"].size)  # tied: attend = matmul
  n = sum(per_layer) + params["final_norm"]["scale"].size + head
  seq_len = 32
  attention = cfg.num_layers * 3 * 2 * (seq_len * cfg.d_model +
                                        seq_len * cfg.d_model)
  assert models.flops_per_token(cfg, seq_len) == 6 * n + attention


@pytest.mark.slow
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


@pytest.mark.slow
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


# ---- RoPE and the GPT forward pass against plain-NumPy references ----------


def ref_rope(x_TxH, base):
  """RoPE as a complex rotation: the pair (x[i], x[i + H/2]) is the complex
  number x[i] + 1j x[i + H/2], multiplied by exp(1j m theta_i) at position m,
  theta_i = base**(-i / (H/2)) (the half-split convention)."""
  t, h = x_TxH.shape
  theta = base ** (-np.arange(h // 2) / (h // 2))
  z = x_TxH[:, :h // 2] + 1j * x_TxH[:, h // 2:]
  z = z * np.exp(1j * np.arange(t)[:, None] * theta[None, :])
  return np.concatenate([z.real, z.imag], axis=-1)


def _rope(x_TxH, base=10000.0):
  from wsd_jax.models import gpt
  return np.asarray(gpt._rope(jnp.asarray(x_TxH, jnp.float32)[None, :, None],
                              base)[0, :, 0], np.float64)


def test_rope_matches_complex_rotation_and_preserves_norms():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((40, 16))
  got = _rope(x)
  np.testing.assert_allclose(got, ref_rope(x, 10000.0), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.linalg.norm(got, axis=-1),
                             np.linalg.norm(x, axis=-1), rtol=1e-5)
  np.testing.assert_allclose(got[0], x[0], rtol=1e-6)  # position 0: identity
  # Position 1 rotates the first pair (frequency 1) by +1 radian.
  e0 = np.zeros((2, 16))
  e0[:, 0] = 1.0
  np.testing.assert_allclose(_rope(e0)[1, [0, 8]], [np.cos(1.0), np.sin(1.0)],
                             rtol=1e-6)


def test_rope_scores_depend_only_on_relative_position():
  """<rope(q)_m, rope(k)_n> is a function of m - n: the same q and k placed at
  every position give equal scores along each diagonal."""
  rng = np.random.default_rng(1)
  q, k = rng.standard_normal(16), rng.standard_normal(16)
  t = 24
  rq, rk = _rope(np.tile(q, (t, 1))), _rope(np.tile(k, (t, 1)))
  scores = rq @ rk.T
  for offset in range(-t + 1, t):
    diag = np.diagonal(scores, offset)
    np.testing.assert_allclose(diag, diag[0], rtol=1e-4, atol=1e-4)
  ref = ref_rope(np.tile(q, (t, 1)), 10000.0) @ ref_rope(
      np.tile(k, (t, 1)), 10000.0).T
  np.testing.assert_allclose(scores, ref, rtol=1e-4, atol=1e-4)


def ref_gpt(p, cfg, tokens_BxT):
  """The GPT forward pass in NumPy float64 from the model's parameters."""
  def rms_norm(x, scale):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) +
                       cfg.norm_eps) * scale

  def gelu(x):  # jax.nn.gelu's default tanh approximation.
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))

  b, t = tokens_BxT.shape
  nh, hd = cfg.num_heads, cfg.d_model // cfg.num_heads
  x = p["embed"]["embedding"][tokens_BxT]
  if cfg.position == "learned":
    x = x + p["pos_embed"]["embedding"][:t][None]
  causal = np.tril(np.ones((t, t), bool))
  for i in range(cfg.num_layers):
    blk = p["blocks"][i]
    qkv = rms_norm(x, blk["attn_norm"]["scale"]) @ blk["qkv"]["kernel"]
    q, k, v = np.split(qkv, 3, axis=-1)
    heads = []
    for h in range(nh):
      cols = slice(h * hd, (h + 1) * hd)
      out = []
      for j in range(b):
        qh, kh = q[j][:, cols], k[j][:, cols]
        if cfg.position == "rope":
          qh, kh = ref_rope(qh, cfg.rope_base), ref_rope(kh, cfg.rope_base)
        s = np.where(causal, qh @ kh.T / np.sqrt(hd), -np.inf)
        w = np.exp(s - s.max(-1, keepdims=True))
        out.append(w / w.sum(-1, keepdims=True) @ v[j][:, cols])
      heads.append(np.stack(out))
    x = x + np.concatenate(heads, axis=-1) @ blk["attn_out"]["kernel"]
    hidden = gelu(rms_norm(x, blk["mlp_norm"]["scale"]) @ blk["mlp_in"]["kernel"])
    x = x + hidden @ blk["mlp_out"]["kernel"]
  x = rms_norm(x, p["final_norm"]["scale"])
  if cfg.tie_embeddings:
    return x @ p["embed"]["embedding"].T
  return x @ p["head"]["kernel"]


@pytest.mark.parametrize("overrides", [
    dict(), dict(tie_embeddings=False), dict(position="learned"),
    dict(rope_base=100.0, mlp_ratio=2)])
@pytest.mark.slow
def test_gpt_forward_matches_numpy_reference(overrides):
  """A 2-layer float32 GPT with random parameters (norm scales too, and large
  enough that attention is far from uniform) against ``ref_gpt``."""
  cfg = models.GPTConfig(vocab_size=V, max_seq_len=32, num_layers=2,
                         d_model=32, num_heads=4, **overrides)
  model = models.GPT(cfg, rngs=nnx.Rngs(0))
  state = nnx.state(model, nnx.Param)
  rng = np.random.default_rng(0)
  pure = jax.tree.map(
      lambda a: (1.0 if a.ndim == 1 else 0.0) + 0.3 * rng.standard_normal(
          a.shape).astype(np.float32), nnx.to_pure_dict(state))
  nnx.replace_by_pure_dict(state, pure)
  nnx.update(model, state)
  tokens = np.asarray(_tokens(2, 20))
  got = np.asarray(model(jnp.asarray(tokens)), np.float64)
  p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), pure)
  want = ref_gpt(p64, cfg, tokens)
  scale = np.abs(want).max()
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)
