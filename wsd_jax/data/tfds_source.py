"""Any TFDS text dataset, byte-level (vocab 256), through `tfds.data_source`.

Records are read with random access (no TensorFlow needed), shuffled per epoch
with the seed for train, sharded across processes by record (`[p::P]`), encoded
as UTF-8 bytes with a 0 byte appended as end-of-document, then packed with
grain's concat-then-split into rows of T+1 tokens (no padding). Eval reads
`eval_split` in order, cycled if it is short, and stops after `eval_batches`.
`tensorflow_datasets` is imported lazily: it is heavy and optional.
"""

from __future__ import annotations

import dataclasses

import grain
import numpy as np

from wsd_jax.data import pipeline

VOCAB_SIZE = 256
END_OF_DOCUMENT = 0


@dataclasses.dataclass(frozen=True)
class _Encode:
  text_key: str

  def __call__(self, record) -> dict[str, np.ndarray]:
    text = record[self.text_key]
    if isinstance(text, np.ndarray):
      text = text.item()
    if isinstance(text, str):
      text = text.encode("utf-8")
    tokens = np.frombuffer(bytes(text) + bytes([END_OF_DOCUMENT]), np.uint8)
    return {"tokens": tokens.astype(np.int32)}


def _rows_to_batch(packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  return pipeline.to_example(packed["tokens"])


def make_dataset(data_config, split: str, *, seed: int, process_index: int,
                 process_count: int) -> grain.IterDataset:
  """The packed, batched TFDS pipeline of one process."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  name = data_config.get("tfds_name", None)
  if not name:
    raise ValueError(f"tfds data needs data_config.tfds_name, got {name!r}")
  tfds_split = data_config.get(f"{split}_split", "train" if split == "train" else "test")
  source = tfds.data_source(name, split=tfds_split,
                            data_dir=data_config.get("data_dir", None))
  if len(source) == 0:
    raise ValueError(f"TFDS {name!r} split {tfds_split!r} is empty")
  records = grain.MapDataset.source(source)
  if split == "train":
    records = records.shuffle(seed=int(seed))
  records = records.repeat(None)[process_index::process_count]
  ds = records.map(_Encode(data_config.get("text_key", "text"))).to_iter_dataset()
  ds = grain.experimental.ConcatThenSplitIterDataset(
      ds, length_struct={"tokens": int(data_config.seq_len) + 1})
  ds = ds.batch(int(data_config.batch_size) // process_count, drop_remainder=True)
  ds = ds.map(_rows_to_batch)
  if split == "eval":
    ds = grain.experimental.LimitIterDataset(ds, int(data_config.eval_batches))
  return ds
