"""Tests for wsd_jax.data."""

import itertools

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from wsd_jax import data
from wsd_jax.data import bigram


def _bigram_config(**overrides):
  fields = dict(name="bigram", vocab_size=64, num_groups=4, seq_len=32,
                batch_size=8, eval_batches=3)
  return ml_collections.ConfigDict({**fields, **overrides})


TEXT = np.random.default_rng(0).integers(32, 127, 1200).astype(np.uint8).tobytes()


@pytest.fixture
def text_config(tmp_path):
  (tmp_path / "a.txt").write_bytes(TEXT[:600])
  (tmp_path / "b.txt").write_bytes(TEXT[600:])
  return ml_collections.ConfigDict(dict(
      name="text", paths=[str(tmp_path / "a.txt"), str(tmp_path / "b*.txt")],
      seq_len=16, batch_size=8, eval_batches=2, eval_fraction=0.1))


@pytest.fixture
def tfds_config():
  config = ml_collections.ConfigDict(dict(
      name="tfds", tfds_name="lm1b", seq_len=16, batch_size=4, eval_batches=2))
  with tfds.testing.mock_data(num_examples=24):
    yield config


def _take(ds, n, start=0):
  return list(itertools.islice(iter(ds), start, start + n))


def _assert_batches_equal(xs, ys):
  assert len(xs) == len(ys)
  for x, y in zip(xs, ys):
    np.testing.assert_array_equal(x["inputs"], y["inputs"])
    np.testing.assert_array_equal(x["targets"], y["targets"])


# ----------------------------------------------------------------- bigram spec


def test_bigram_spec_structure():
  spec = bigram.BigramSpec.create(64, 4, seed=3, epsilon=1e-3)
  p = spec.transition
  assert p.shape == (64, 64) and p.dtype == np.float64
  np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
  assert np.all(p > 0)
  np.testing.assert_allclose(spec.stationary @ p, spec.stationary, atol=1e-12)
  np.testing.assert_allclose(spec.stationary.sum(), 1.0)
  np.testing.assert_array_equal(np.bincount(spec.group_of_token), [16] * 4)
  np.testing.assert_array_equal(spec.support_sizes, [1, 4, 16, 64])
  h, g = spec.token_entropy, spec.group_of_token
  np.testing.assert_allclose(h, -np.sum(p * np.log(p), axis=1))
  for k in range(3):  # Entropies of the groups do not overlap.
    assert h[g == k].max() < h[g == k + 1].min()
  assert np.all(np.diff(spec.optimal_loss_by_group) > 0)
  # Group 0 is deterministic up to the epsilon mixing.
  assert np.all(p[g == 0].max(axis=1) >= 1 - 1e-3)
  assert h[g == 0].max() < 0.02
  assert h[g == 3].min() > np.log(64) - 0.2
  np.testing.assert_allclose(spec.optimal_loss, spec.stationary @ h)
  by_group = [spec.stationary[g == k] @ h[g == k] / spec.stationary[g == k].sum()
              for k in range(4)]
  np.testing.assert_allclose(spec.optimal_loss_by_group, by_group)


def test_bigram_spec_deterministic_from_seed():
  a, b = bigram.BigramSpec.create(32, 4, seed=1), bigram.BigramSpec.create(32, 4, seed=1)
  np.testing.assert_array_equal(a.transition, b.transition)
  c = bigram.BigramSpec.create(32, 4, seed=2)
  assert not np.allclose(a.transition, c.transition)


@pytest.mark.parametrize("kwargs, match", [
    (dict(vocab_size=1, num_groups=1), "vocab_size"),
    (dict(vocab_size=8, num_groups=9), "num_groups.*9"),
    (dict(vocab_size=8, num_groups=2, epsilon=0.0), "epsilon"),
])
def test_bigram_spec_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    bigram.BigramSpec.create(**kwargs)


def test_bigram_optimal_loss_matches_monte_carlo():
  config = _bigram_config(batch_size=64, seq_len=64)
  spec = bigram.spec_of(config)
  batches = _take(data.make_dataset(config, "train", seed=0), 20)
  x = np.concatenate([b["inputs"].ravel() for b in batches])
  y = np.concatenate([b["targets"].ravel() for b in batches])
  nll = -np.log(spec.transition[x, y])
  assert abs(nll.mean() - spec.optimal_loss) < 0.03, (nll.mean(), spec.optimal_loss)
  # The first token is drawn from pi, so token frequencies match pi.
  freq = np.bincount(x, minlength=64) / x.size
  assert np.abs(freq - spec.stationary).sum() < 0.05


# ------------------------------------------------------- behaviour per source


def _configs(text_config, tfds_config):
  return {"bigram": _bigram_config(), "text": text_config, "tfds": tfds_config}


@pytest.mark.parametrize("source", ["bigram", "text", "tfds"])
def test_batches_shapes_and_shift(source, text_config, tfds_config):
  config = _configs(text_config, tfds_config)[source]
  for split in ("train", "eval"):
    batch = _take(data.make_dataset(config, split, seed=0), 1)[0]
    shape = (config.batch_size, config.seq_len)
    assert batch["inputs"].shape == batch["targets"].shape == shape
    assert batch["inputs"].dtype == batch["targets"].dtype == np.int32
    np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
    assert 0 <= batch["inputs"].min() and batch["inputs"].max() < data.vocab_size(config)


@pytest.mark.parametrize("source", ["bigram", "text", "tfds"])
def test_deterministic_from_seed(source, text_config, tfds_config):
  config = _configs(text_config, tfds_config)[source]
  a = _take(data.make_dataset(config, "train", seed=7), 3)
  b = _take(data.make_dataset(config, "train", seed=7), 3)
  c = _take(data.make_dataset(config, "train", seed=8), 3)
  _assert_batches_equal(a, b)
  assert [data.fingerprint(x) for x in a] != [data.fingerprint(x) for x in c]


@pytest.mark.parametrize("source", ["bigram", "text", "tfds"])
def test_checkpoint_round_trip(source, text_config, tfds_config):
  ds = data.make_dataset(_configs(text_config, tfds_config)[source], "train", seed=0)
  it = iter(ds)
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(4)]
  resumed = iter(ds)
  resumed.set_state(state)
  _assert_batches_equal([next(resumed) for _ in range(4)], expected)


@pytest.mark.parametrize("source", ["bigram", "text", "tfds"])
def test_eval_is_finite_and_identical_across_iterations(source, text_config,
                                                        tfds_config):
  config = _configs(text_config, tfds_config)[source]
  first = list(data.make_dataset(config, "eval", seed=0))
  assert len(first) == config.eval_batches
  _assert_batches_equal(list(data.make_dataset(config, "eval", seed=0)), first)
  _assert_batches_equal(list(data.make_dataset(config, "eval", seed=5)), first)
  train = _take(data.make_dataset(config, "train", seed=0), 1)[0]
  assert data.fingerprint(train) not in {data.fingerprint(b) for b in first}


@pytest.mark.parametrize("source", ["bigram", "text"])
def test_process_shards_concatenate_to_global_batch(source, text_config,
                                                    tfds_config):
  config = _configs(text_config, tfds_config)[source]
  for split in ("train", "eval"):
    whole = _take(data.make_dataset(config, split, seed=1), 2)
    shards = [_take(data.make_dataset(config, split, seed=1, process_index=p,
                                      process_count=4), 2) for p in range(4)]
    for step, batch in enumerate(whole):
      parts = [s[step]["inputs"] for s in shards]
      assert parts[0].shape == (config.batch_size // 4, config.seq_len)
      np.testing.assert_array_equal(np.concatenate(parts), batch["inputs"])


def test_tfds_process_shards_are_disjoint(tfds_config):
  shards = [_take(data.make_dataset(tfds_config, "train", seed=1, process_index=p,
                                    process_count=2), 3) for p in range(2)]
  assert shards[0][0]["inputs"].shape == (2, 16)
  prints = [{data.fingerprint(b) for b in s} for s in shards]
  assert not prints[0] & prints[1]


def test_tfds_packs_utf8_documents(tfds_config):
  source = tfds.data_source("lm1b", split="train")
  text = b"".join(source[i]["text"].encode() + b"\0" for i in range(len(source)))
  batch = _take(data.make_dataset(tfds_config, "eval", seed=0), 1)[0]
  row = bytes(np.concatenate([batch["inputs"][0], batch["targets"][0, -1:]])
              .astype(np.uint8))
  assert row in text


# ---------------------------------------------------------------------- text


def test_text_windows_come_from_the_files(text_config):
  train_part, eval_part = TEXT[:-int(len(TEXT) * 0.1)], TEXT[-int(len(TEXT) * 0.1):]
  num_windows = (len(train_part) - 1) // 16
  seen = []
  for batch in _take(data.make_dataset(text_config, "train", seed=0),
                     -(-2 * num_windows // 8)):
    for row in np.concatenate([batch["inputs"], batch["targets"][:, -1:]], axis=1):
      start = train_part.find(bytes(row.astype(np.uint8)))
      assert start >= 0 and start % 16 == 0
      seen.append(start)
  # Two epochs: every window exactly twice, in a different order each epoch.
  seen = seen[:2 * num_windows]
  assert sorted(seen) == sorted(list(range(0, 16 * num_windows, 16)) * 2)
  assert seen[:num_windows] != seen[num_windows:2 * num_windows]
  for batch in data.make_dataset(text_config, "eval", seed=0):
    assert bytes(batch["inputs"][0].astype(np.uint8)) in eval_part


# -------------------------------------------------------------- misc and errors


def test_fingerprint():
  batch = _take(data.make_dataset(_bigram_config(), "train", seed=0), 2)
  fp = data.fingerprint(batch[0])
  assert len(fp) == 16 and int(fp, 16) >= 0
  assert fp == data.fingerprint({k: v.copy() for k, v in batch[0].items()})
  assert fp != data.fingerprint(batch[1])


def test_vocab_size(text_config, tfds_config):
  assert data.vocab_size(_bigram_config(vocab_size=50)) == 50
  assert data.vocab_size(text_config) == data.vocab_size(tfds_config) == 256


@pytest.mark.parametrize("overrides, kwargs, match", [
    (dict(name="wiki"), {}, r"'wiki'.*bigram, text, tfds"),
    (dict(seq_len=0), {}, r"seq_len.*0"),
    (dict(batch_size=6), dict(process_count=4), r"batch_size 6.*process_count 4"),
    ({}, dict(process_index=2, process_count=2), r"process_index 2"),
    (dict(eval_batches=0), dict(split="eval"), r"eval_batches.*0"),
    ({}, dict(split="test"), r"'test'"),
    (dict(name="text", paths="/nonexistent/x.txt"), {}, r"/nonexistent/x.txt"),
    (dict(name="text", paths="/nonexistent/*.txt"), {}, r"/nonexistent/\*.txt"),
    (dict(name="text", paths=""), {}, r"paths"),
    (dict(name="tfds"), {}, r"tfds_name"),
])
def test_errors(overrides, kwargs, match):
  kwargs = {"split": "train", **kwargs}
  with pytest.raises(ValueError, match=match):
    data.make_dataset(_bigram_config(**overrides), kwargs.pop("split"), seed=0,
                      **kwargs)


def test_text_too_short_for_a_window(tmp_path):
  (tmp_path / "a.txt").write_bytes(b"short")
  config = ml_collections.ConfigDict(dict(name="text", paths=str(tmp_path / "a.txt"),
                                          seq_len=16, batch_size=2, eval_batches=1))
  with pytest.raises(ValueError, match=r"5 bytes.*seq_len \+ 1 = 17"):
    data.make_dataset(config, "train", seed=0)
