"""Grain data pipelines: synthetic bigram, byte-level text files, BPE tokens
of an offline corpus, TFDS.

Every dataset yields `{"inputs": int32[B, T], "targets": int32[B, T]}` with
`B = batch_size // process_count` and targets = inputs shifted by one. `train`
is endless (finite sources are reshuffled every epoch with the seed); `eval`
is `eval_batches` batches of `eval_batch_size` rows (default `batch_size`),
the same on every iteration. `iter(ds)` is grain's checkpointable iterator
(`get_state()` / `set_state()`).
"""

from __future__ import annotations

import grain
import ml_collections
import numpy as np

from wsd_jax.data import bigram
from wsd_jax.data import bpe
from wsd_jax.data import digits
from wsd_jax.data import pipeline
from wsd_jax.data import text
from wsd_jax.data import tfds_source
from wsd_jax.data import zipf_bigram
from wsd_jax.data.bigram import BigramSpec
from wsd_jax.data.pipeline import fingerprint

KNOWN_DATASETS = ("bigram", "text", "tfds", "bpe", "digits", "zipf_bigram")
SPLITS = ("train", "eval")
_READERS = {"bigram": bigram.reader, "text": text.reader, "bpe": bpe.reader,
            "zipf_bigram": zipf_bigram.reader}
# Generated languages with a known transition matrix: name -> spec_of.
_LANGUAGES = {"bigram": bigram.spec_of, "zipf_bigram": zipf_bigram.spec_of}
_ENDLESS = 2**62  # Length of the id stream of a generated source.

__all__ = ["BigramSpec", "KNOWN_DATASETS", "check_files", "data_info",
           "fingerprint", "make_dataset", "token_groups", "vocab_size"]


def _batch_size(data_config, split: str) -> int:
  """Global rows per batch of ``split``: ``eval_batch_size`` (when set) for
  eval, so a model trained with gradient accumulation evaluates in
  batches that fit in memory."""
  if split == "eval" and data_config.get("eval_batch_size") is not None:
    return int(data_config.eval_batch_size)
  return int(data_config.batch_size)


def _validate(data_config, split: str, process_index: int,
              process_count: int) -> None:
  name = data_config.get("name", None)
  if name not in KNOWN_DATASETS:
    raise ValueError(
        f"unknown dataset name {name!r}; known names: {', '.join(KNOWN_DATASETS)}")
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}")
  seq_len, batch_size = int(data_config.seq_len), _batch_size(data_config,
                                                              split)
  if seq_len < 1:
    raise ValueError(f"seq_len must be >= 1, got {seq_len}")
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(
        f"process_index {process_index} must be in [0, process_count "
        f"{process_count})")
  if batch_size < 1 or batch_size % process_count:
    raise ValueError(
        f"batch_size {batch_size} must be a positive multiple of "
        f"process_count {process_count}")
  if split == "eval" and int(data_config.get("eval_batches", 1)) < 1:
    raise ValueError(f"eval_batches must be >= 1, got {data_config.eval_batches}")


def make_dataset(data_config, split: str, *, seed: int, process_index: int = 0,
                 process_count: int = 1) -> grain.IterDataset:
  """This process's batches of `split` ("train" or "eval") of a dataset.

  Args:
    data_config: ConfigDict with `name` in KNOWN_DATASETS, `seq_len`,
      `batch_size` (global), `eval_batches` and the source's own fields.
    split: "train" (endless) or "eval" (`eval_batches` batches).
    seed: shuffling / sampling seed of the train split.
    process_index: this process (`jax.process_index()`).
    process_count: number of processes (`jax.process_count()`).

  Returns:
    A `grain.IterDataset`; `iter()` of it is checkpointable.
  """
  _validate(data_config, split, process_index, process_count)
  batch_size = _batch_size(data_config, split)
  if data_config.name == "tfds":
    if batch_size != int(data_config.batch_size):
      data_config = ml_collections.ConfigDict(dict(data_config.to_dict(),
                                                   batch_size=batch_size))
    return tfds_source.make_dataset(data_config, split, seed=seed,
                                    process_index=process_index,
                                    process_count=process_count)
  if data_config.name == "digits":  # classification: no next-token shift
    return digits.make_dataset(data_config, split, seed=seed,
                               process_index=process_index,
                               process_count=process_count)
  read, num_examples = _READERS[data_config.name](data_config, split, seed)
  if split == "train":
    ids = (grain.MapDataset.range(_ENDLESS) if num_examples is None else
           grain.MapDataset.range(num_examples).shuffle(seed=int(seed)).repeat(None))
  else:
    needed = int(data_config.eval_batches) * batch_size
    ids = (grain.MapDataset.range(needed) if num_examples is None else
           grain.MapDataset.range(num_examples).repeat(None)[:needed])
  return pipeline.batches_from_ids(ids, read, batch_size=batch_size,
                                   process_index=process_index,
                                   process_count=process_count)


def vocab_size(data_config) -> int:
  """Number of token ids the dataset can produce."""
  if data_config.get("name", None) in _LANGUAGES:
    return int(data_config.vocab_size)
  if data_config.get("name", None) in ("text", "tfds"):
    return text.VOCAB_SIZE
  if data_config.get("name", None) == "bpe":
    return bpe.vocab_size(data_config)
  if data_config.get("name", None) == "digits":
    return digits.NUM_LEVELS
  raise ValueError(f"unknown dataset name {data_config.get('name', None)!r}; "
                   f"known names: {', '.join(KNOWN_DATASETS)}")


def check_files(data_config) -> None:
  """Refuses, before any compute, an unknown dataset and the input files a
  dataset would fail on: missing or binary text files, an unknown BPE
  corpus or tokenizer. Builds nothing."""
  vocab_size(data_config)
  if data_config.get("name") == "text":
    text.resolve_paths(data_config.get("paths"))
  elif data_config.get("name") == "bpe":
    bpe.check(data_config)


def token_groups(data_config) -> np.ndarray | None:
  """The group of every token id when the dataset defines groups whose loss
  is worth reporting apart (the bigram corpus's entropy groups), else None.
  The trainer logs ``eval_loss_group{g}`` for each group."""
  spec_of = _LANGUAGES.get(data_config.get("name", None))
  if spec_of is None:
    return None
  return np.asarray(spec_of(data_config).group_of_token, np.int32)


def data_info(data_config) -> dict:
  """Facts about the data that a run records in ``run.json`` (the bigram
  corpus's exact optimal loss, overall and per group)."""
  if data_config.get("name", None) in _LANGUAGES:
    spec = _LANGUAGES[data_config.name](data_config)
    return {"optimal_loss": float(spec.optimal_loss),
            "optimal_loss_by_group": [float(x)
                                      for x in spec.optimal_loss_by_group]}
  if data_config.get("name", None) == "bpe":  # the corpus's bytes and hash
    return bpe.prepare(data_config).describe()
  return {}
