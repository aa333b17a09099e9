"""Shared grain plumbing: example ids -> per-process batches of inputs/targets.

Every random-access source is an array of example ids in *global stream order*
(shuffled and repeated for training) plus a vectorised `read(ids) -> int32[n,
T+1]`. The global stream is cut into global batches of `batch_size` ids;
process `p` of `P` reads the contiguous slice `[p*B/P, (p+1)*B/P)` of every
global batch. So the shards are disjoint and, concatenated in process order,
equal the single-process batch exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable

import grain
import numpy as np


# Sources here are in memory and one grain element is a whole batch: one read
# thread keeps ahead of the step, and a short buffer keeps a short run from
# computing hundreds of batches it never uses (grain's default is 16 threads
# and 500 elements per iterator, i.e. per run of a study).
READ_OPTIONS = grain.ReadOptions(num_threads=1, prefetch_buffer_size=4)


def to_example(tokens_BxT1: np.ndarray) -> dict[str, np.ndarray]:
  """Splits T+1 tokens per row into `inputs` and next-token `targets`."""
  tokens_BxT1 = np.asarray(tokens_BxT1, dtype=np.int32)
  return {"inputs": tokens_BxT1[:, :-1], "targets": tokens_BxT1[:, 1:]}


@dataclasses.dataclass(frozen=True)
class _ReadShard:
  """Picklable map fn: global batch of ids -> this process's example dict."""

  read: Callable[[np.ndarray], np.ndarray]
  start: int
  stop: int

  def __call__(self, ids_B: np.ndarray) -> dict[str, np.ndarray]:
    return to_example(self.read(np.asarray(ids_B)[self.start:self.stop]))


def batches_from_ids(
    ids: grain.MapDataset,
    read: Callable[[np.ndarray], np.ndarray],
    *,
    batch_size: int,
    process_index: int,
    process_count: int,
) -> grain.IterDataset:
  """Global batches of `ids` -> this process's `{"inputs", "targets"}` batches."""
  per_process = batch_size // process_count
  start = process_index * per_process
  ds = ids.batch(batch_size, drop_remainder=True)
  ds = ds.map(_ReadShard(read, start, start + per_process))
  return ds.to_iter_dataset(READ_OPTIONS)


def fingerprint(batch: dict[str, np.ndarray]) -> str:
  """A short stable hash of a batch (16 hex chars) to detect repeats/skips."""
  h = hashlib.blake2b(digest_size=8)
  for key in ("inputs", "targets"):
    array = np.ascontiguousarray(np.asarray(batch[key]))
    h.update(str(array.shape).encode())
    h.update(array.tobytes())
  return h.hexdigest()
