"""Offline BPE data: the corpus builder and its manifest, the byte-level BPE
tokenizer cached beside the corpus, the memory-mapped token array and the
grain source that reads it (deterministic, resumable, split over processes),
and a GPT trained on it."""

import hashlib
import json
import os

import ml_collections
import numpy as np
import pytest

from configs import gpt as gpt_config
from wsd_jax import data as data_lib
from wsd_jax.data import bpe, corpus
from wsd_jax.runs import rundir
from wsd_jax.train import config as config_lib
from wsd_jax.train import train_and_evaluate

VOCAB = 300
TRICKY = ("naïve café — 東京 ok.\n\n  indented  \n\ttab\r\nend.  \n"
          "x = f(a, b)  # comment\n'quoted' it's\n\n\n")


@pytest.fixture(scope="module")
def text() -> str:
  """About 8 KB of real docstrings plus awkward whitespace and Unicode."""
  return corpus.build_text(max_bytes=6_000) + TRICKY * 20


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory, text) -> str:
  path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
  path.write_text(text, encoding="utf-8")
  return str(path)


def bpe_config(corpus_file: str, cache_dir, **kw) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      dict(name="bpe", corpus="files", paths=corpus_file, vocab_size=VOCAB,
           cache_dir=str(cache_dir), seq_len=16, batch_size=4, eval_batches=2,
           eval_fraction=0.1), **kw))


def test_tokenizer_round_trips_and_pieces_tokenise_like_the_whole(text):
  tok = bpe.train_tokenizer(text, VOCAB)
  assert tok.get_vocab_size() == VOCAB
  ids = tok.encode(text).ids
  assert tok.decode(ids) == text  # byte-level: exact, whitespace included
  assert len(ids) < 0.8 * len(text.encode())  # 44 merges were learnt
  pieces = list(bpe.chunks(text, 64))
  assert len(pieces) > 20 and "".join(pieces) == text
  arr = bpe.encode(tok, text, chunk_chars=64)
  assert arr.dtype == np.uint16
  np.testing.assert_array_equal(arr, ids)
  assert bpe.train_tokenizer(text, VOCAB).to_str() == tok.to_str()  # same


def test_corpus_of_packages_and_user_files(tmp_path):
  site = tmp_path / "site-packages"
  for rel, doc in (("pkg/__init__.py", "Package docs."),
                   ("pkg/mod.py", "Module docs."),
                   ("pkg/again.py", "Module docs."),         # duplicate
                   ("pkg/tests/test_x.py", "Test docs."),     # skipped
                   ("pkg/_vendor/six.py", "Vendored docs."),  # skipped
                   ("pkg-1.0.dist-info/x.py", "Metadata.")):  # skipped
    (site / rel).parent.mkdir(parents=True, exist_ok=True)
    (site / rel).write_text(f'"""{doc}"""\ndef f():\n  """Function docs."""\n')
  user = tmp_path / "notes.txt"
  user.write_text("My own notes.\n")
  out = str(tmp_path / "c.txt")
  m = corpus.build_corpus(out, sources=("packages",), files=[str(user)],
                          roots=[str(site)], workers=1)
  data = open(out, "rb").read()
  assert data.decode() == ("Package docs.\n\nFunction docs.\n\nModule docs."
                           "\n\nMy own notes.\n")
  assert m["bytes"] == len(data) and m["documents"] == 4
  assert m["sha256"] == hashlib.sha256(data).hexdigest()
  assert json.load(open(out + ".manifest.json")) == m
  assert m["request"]["packages"] and m["request"]["package_roots"] == [
      str(site)]
  mtime = os.path.getmtime(out)
  assert corpus.build_corpus(out, sources=("packages",), files=[str(user)],
                             roots=[str(site)]) == m  # reused
  assert os.path.getmtime(out) == mtime
  user.write_text("Changed notes.\n")
  m2 = corpus.build_corpus(out, sources=("packages",), files=[str(user)],
                           roots=[str(site)])
  assert m2["sha256"] != m["sha256"] and b"Changed" in open(out, "rb").read()
  assert corpus.describe(out)["sha256"] == m2["sha256"]
  with pytest.raises(ValueError, match=r"unknown corpus source\(s\) \['pypi'\]"):
    corpus.build_corpus(out, sources=("pypi",))
  real = corpus.package_roots()
  assert real and all(os.path.isdir(r) for r in real)


def test_token_array_matches_the_tokenizer_and_is_cached(corpus_file, text,
                                                         tmp_path):
  c = bpe_config(corpus_file, tmp_path)
  p = bpe.prepare(c)
  assert os.path.dirname(p.tokenizer_path) == os.path.dirname(p.corpus_path)
  sha = hashlib.sha256(text.encode()).hexdigest()
  assert p.manifest["sha256"] == sha and p.manifest["bytes"] == len(
      text.encode())
  assert f"bpe{VOCAB}-{sha[:16]}" in p.tokenizer_path  # keyed by corpus + V
  tokens = p.tokens()
  assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16
  np.testing.assert_array_equal(tokens, p.tokenizer().encode(text).ids)
  assert p.describe()["tokens"] == len(tokens) and p.vocab_size == VOCAB
  stamp = os.path.getmtime(p.tokenizer_path), os.path.getmtime(p.tokens_path)
  bpe._prepare.cache_clear()  # as a new process would
  again = bpe.prepare(c)
  assert again == p and (os.path.getmtime(p.tokenizer_path),
                         os.path.getmtime(p.tokens_path)) == stamp
  other = bpe.prepare(bpe_config(corpus_file, tmp_path, vocab_size=280))
  assert other.tokenizer_path != p.tokenizer_path
  given = bpe.prepare(bpe_config(corpus_file, tmp_path / "b",
                                 tokenizer=p.tokenizer_path))
  np.testing.assert_array_equal(given.tokens(), tokens)


@pytest.mark.slow
def test_batches_are_deterministic_resumable_and_split(corpus_file, tmp_path):
  c = bpe_config(corpus_file, tmp_path)
  tokens = bpe.prepare(c).tokens()
  ds = data_lib.make_dataset(c, "train", seed=3)
  it = iter(ds)
  first = [next(it) for _ in range(5)]
  for b in first:
    assert b["inputs"].shape == (4, 16) and b["inputs"].dtype == np.int32
    np.testing.assert_array_equal(b["inputs"][:, 1:], b["targets"][:, :-1])
    assert b["inputs"].max() < VOCAB
  row = first[0]["inputs"][0]  # a window of the train part of the tokens
  starts = np.flatnonzero(tokens[:-16] == row[0])
  assert any((tokens[s:s + 16] == row).all() for s in starts)
  again = iter(data_lib.make_dataset(c, "train", seed=3))
  assert all(data_lib.fingerprint(next(again)) == data_lib.fingerprint(b)
             for b in first)
  it = iter(ds)
  next(it), next(it)
  state = it.get_state()
  resumed = iter(data_lib.make_dataset(c, "train", seed=3))
  resumed.set_state(state)
  assert [data_lib.fingerprint(next(resumed)) for _ in range(3)] == [
      data_lib.fingerprint(b) for b in first[2:]]
  shards = [next(iter(data_lib.make_dataset(c, "train", seed=3,
                                            process_index=i,
                                            process_count=2)))
            for i in range(2)]
  np.testing.assert_array_equal(
      np.concatenate([s["inputs"] for s in shards]), first[0]["inputs"])
  evals = list(data_lib.make_dataset(c, "eval", seed=0))
  assert len(evals) == 2
  cut = len(tokens) - int(len(tokens) * 0.1)
  np.testing.assert_array_equal(evals[0]["inputs"][0], tokens[cut:cut + 16])
  eval_c = bpe_config(corpus_file, tmp_path, eval_batch_size=2)
  assert [b["inputs"].shape for b in data_lib.make_dataset(
      eval_c, "eval", seed=0)] == [(2, 16)] * 2


@pytest.mark.slow
def test_gpt_nano_trains_on_bpe_tokens(corpus_file, tmp_path):
  c = gpt_config.get_config("size=nano,data=bpe")
  c.data.update(corpus="files", paths=corpus_file, vocab_size=VOCAB,
                cache_dir=str(tmp_path / "cache"), seq_len=32, batch_size=8,
                eval_batches=2, eval_fraction=0.1)
  c.train.update(steps=30, log_every=5, eval_every=30, checkpoint_every=30,
                 progress=False, plots=False)
  c.schedule.peak_value = 1e-2
  summary = train_and_evaluate(c, str(tmp_path / "run"))
  rows = rundir.read_metrics(tmp_path / "run")
  assert rows[-1]["loss"] < rows[0]["loss"] - 0.5
  assert summary["eval_loss"] < np.log(VOCAB) - 1.0  # below uniform guessing
  info = rundir.read_run(tmp_path / "run")["data"]
  assert info["sha256"] == hashlib.sha256(
      open(corpus_file, "rb").read()).hexdigest()
  assert info["vocab_size"] == VOCAB and info["tokens"] > 1000


@pytest.mark.parametrize("change, match", [
    (dict(corpus="wikipedia"), "config.data.corpus='wikipedia' is not a "
     "corpus; known: python, stdlib, files"),
    (dict(paths=""), "text data needs files"),
    (dict(vocab_size=100), "vocab_size=100: a byte-level BPE vocabulary needs "
     ">= 256"),
    (dict(tokenizer="/nonexistent/tok.json"), "config.data.tokenizer="
     "'/nonexistent/tok.json': file not found"),
    (dict(cache_dir="gs://bucket/cache"), "must be a local directory"),
])
def test_bad_bpe_configs_fail_before_any_compute(corpus_file, tmp_path, change,
                                                 match):
  c = gpt_config.get_config("size=nano,data=bpe")
  c.data.update(bpe_config(corpus_file, tmp_path / "cache").to_dict())
  c.data.update(change)
  with pytest.raises(ValueError, match=match):
    config_lib.validate(c)
  assert not (tmp_path / "cache").exists()  # nothing built


def test_a_study_builds_its_bpe_corpus_in_its_workdir(corpus_file, tmp_path):
  c = ml_collections.ConfigDict()
  c.train_config = gpt_config.get_config("size=nano,data=bpe")
  c.train_config.data.update(corpus="files", paths=corpus_file,
                             vocab_size=VOCAB)
  info = corpus.use_corpus(c, str(tmp_path))
  assert c.train_config.data.cache_dir == str(tmp_path)
  assert info["path"].startswith(str(tmp_path)) and info["tokens"] > 1000
  assert info["sha256"] == hashlib.sha256(
      open(corpus_file, "rb").read()).hexdigest()
