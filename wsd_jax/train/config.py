"""The trainer's config: defaults, and validation before any compute starts."""

from __future__ import annotations

import math

import ml_collections

from wsd_jax import data as data_lib
from wsd_jax import schedules
from wsd_jax.train import sharding

# Sections whose keys the trainer owns; other sections (model, data,
# schedule, optimizer, population) are checked by the code that reads them.
_TRAIN_DEFAULTS = dict(
    steps=1000,             # train until state.step == steps
    log_every=50,           # metrics.jsonl / TensorBoard / progress
    eval_every=250,         # held-out evaluation (and at the last step)
    grad_clip=1.0,          # global-norm clipping; 0 disables
    skip_nonfinite=False,   # skip steps with a NaN/inf loss instead of stopping
    checkpoint_every=250,   # save a checkpoint every N steps (and at the end)
    keep_last=3,            # keep the latest N checkpoints ...
    keep_every=1000,        # ... plus every K-th step (branch points); 0: none
    keep_steps=(),          # ... plus these steps
    async_checkpoint=True,  # Orbax async saves
    progress=True,          # a progress bar on stderr
    plots=True,             # plots/ at the end
    fingerprints=False,     # fingerprints.jsonl: a hash of every batch
)


def base_config() -> ml_collections.ConfigDict:
  """The defaults every config file starts from."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(name="bigram"))
  c.data = ml_collections.ConfigDict(dict(
      name="bigram", vocab_size=64, num_groups=4, seq_len=16, batch_size=64,
      eval_batches=4))
  c.schedule = ml_collections.ConfigDict(dict(
      name="wsd", peak_value=1e-2, total_steps=1000, decay_steps=200,
      warmup_steps=50))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", b1=0.9, b2=0.95, weight_decay=0.0))
  c.train = ml_collections.ConfigDict(_TRAIN_DEFAULTS)
  # data=-1: every device that fsdp does not use; fsdp>1 shards the state.
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
  # Optional: a sweep trained as one program (see train/population.py).
  c.population = ml_collections.ConfigDict(dict(grid="", members=""))
  return c


def validate(config: ml_collections.ConfigDict, *, mesh,
             process_count: int = 1) -> schedules.Schedule:
  """Checks a config; returns its schedule. Raises ``ValueError`` naming the
  bad key or value, before anything is compiled."""
  known = set(base_config().keys())
  if unknown := sorted(set(config.keys()) - known):
    raise ValueError(f"unknown config key(s) {unknown}; known: {sorted(known)}")
  if unknown := sorted(set(config.train.keys()) - set(_TRAIN_DEFAULTS)):
    raise ValueError(f"unknown config.train key(s) {unknown}; known: "
                     f"{sorted(_TRAIN_DEFAULTS)}")
  t = config.train
  for key in ("steps", "log_every", "eval_every", "checkpoint_every"):
    if int(t[key]) < 1:
      raise ValueError(f"config.train.{key} must be >= 1, got {t[key]}")
  try:
    schedule = schedules.from_config(config.schedule)
  except ValueError as e:
    raise ValueError(f"config.schedule: {e}") from None
  batch = int(config.data.batch_size)
  sharding.check_batch_size(mesh, batch)
  data_lib.vocab_size(config.data)  # unknown dataset names
  if batch % process_count:
    raise ValueError(f"config.data.batch_size={batch} is not divisible by the "
                     f"{process_count} processes")
  return schedule


def with_schedule(base: ml_collections.ConfigDict, schedule: schedules.Schedule,
                  steps: int, *, keep_steps=(), **train
                  ) -> ml_collections.ConfigDict:
  """A copy of ``base`` that trains ``steps`` steps under ``schedule``.

  With ``keep_steps`` it checkpoints exactly where those steps (and the end)
  fall and keeps only them (plus the latest): the branch points of a study.
  ``train`` overrides further ``config.train`` fields.
  """
  c = ml_collections.ConfigDict(base.to_dict())
  c.schedule = ml_collections.ConfigDict(schedules.to_config(schedule))
  c.train.steps = int(steps)
  if keep_steps:
    keep = tuple(int(k) for k in keep_steps)
    c.train.update(checkpoint_every=math.gcd(int(steps), *keep),
                   keep_steps=keep, keep_last=1, keep_every=0)
  c.train.update(train)
  return c
