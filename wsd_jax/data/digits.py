"""scikit-learn's bundled 8x8 digits (``sklearn.datasets.load_digits``,
offline) as a classification source.

A batch is ``{"inputs": int32[B, 64], "targets": int32[B, 64]}``: the 64
pixel levels (0..16) of each image, and its class (0..9) repeated at every
position, so a classifier that predicts the same logits at every position
trains with the trainer's mean per-token cross-entropy unchanged (it equals
the per-image cross-entropy). A fixed permutation (seed 0) holds out the
last ``EVAL_SIZE`` images: the evaluation set is always those images, in
order (``eval_batches * eval_batch_size`` of them).
"""

from __future__ import annotations

import dataclasses
import functools

import grain
import numpy as np

from wsd_jax.data import pipeline

NUM_PIXELS = 64
NUM_LEVELS = 17      # pixel values 0..16: the "vocabulary" of the inputs
NUM_CLASSES = 10
EVAL_SIZE = 360


@functools.cache
def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
  """``(pixels int32[N, 64], labels int32[N])`` of ``split``."""
  from sklearn.datasets import load_digits  # optional dependency
  d = load_digits()
  order = np.random.default_rng(0).permutation(len(d.target))
  cut = len(order) - EVAL_SIZE
  idx = order[:cut] if split == "train" else order[cut:]
  return (np.asarray(d.data[idx], np.int32),
          np.asarray(d.target[idx], np.int32))


@dataclasses.dataclass(frozen=True)
class _Read:
  """Picklable map fn: a global batch of example ids -> this process's
  rows."""
  split: str
  start: int
  stop: int

  def __call__(self, ids_B: np.ndarray) -> dict[str, np.ndarray]:
    pixels, labels = arrays(self.split)
    ids = np.asarray(ids_B)[self.start:self.stop]
    y = labels[ids]
    return {"inputs": pixels[ids],
            "targets": np.repeat(y[:, None], NUM_PIXELS, axis=1)}


def make_dataset(data_config, split: str, *, seed: int,
                 process_index: int = 0, process_count: int = 1
                 ) -> grain.IterDataset:
  """Batches of ``split``: ``train`` shuffled each epoch with ``seed`` and
  endless (``batch_size`` rows); ``eval`` the held-out images in order
  (``eval_batch_size`` rows when set)."""
  batch_size = int(data_config.batch_size)
  if split == "eval" and data_config.get("eval_batch_size") is not None:
    batch_size = int(data_config.eval_batch_size)
  n = len(arrays(split)[1])
  if split == "train":
    ids = grain.MapDataset.range(n).shuffle(seed=int(seed)).repeat(None)
  else:
    needed = int(data_config.eval_batches) * batch_size
    if needed > n:
      raise ValueError(f"digits eval set has {n} images; eval_batches x "
                       f"batch size asks for {needed}")
    ids = grain.MapDataset.range(needed)
  per = batch_size // process_count
  return (ids.batch(batch_size, drop_remainder=True)
          .map(_Read(split, process_index * per, (process_index + 1) * per))
          .to_iter_dataset(pipeline.READ_OPTIONS))
