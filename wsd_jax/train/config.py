"""The trainer's config: defaults, the one resolver of the schedule and
optimizer sections, and validation before any compute starts.

``config.schedule`` declares every keyword argument of every schedule family
(``wsd_jax.schedules.SCHEDULES``) and ``config.optimizer`` the common optax
arguments, as ``ml_collections`` placeholders (None: not set). So any family,
decay shape, optimizer or argument can be chosen with ``--config.KEY=VALUE``
on every config, while a key that no family takes is still refused.
:func:`schedule_kwargs` and :func:`optimizer_kwargs` turn a section into the
keyword arguments of the chosen family or optax factory, by its signature.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import types
import typing
from typing import Any, Callable, NamedTuple

import ml_collections
import numpy as np
import optax
from absl import logging
from ml_collections import config_dict

from wsd_jax import data as data_lib
from wsd_jax import models, schedules
from wsd_jax.adaptive import hypergradient
from wsd_jax.train import sharding

# Sections whose keys the trainer owns; other sections (model, data,
# population) are checked by the code that reads them.
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
    grad_accum_steps=1,     # K microbatches per batch (static: a new K
                            # compiles the step once more); same update
)

# Schedule lengths given as fractions: ``KEY = round(FRACTION * total)`` where
# total is the resolved ``total_steps`` (``train.steps`` for a family without
# one), unless the step count itself is set, which wins.
FRACTIONS = {"warmup_fraction": "warmup_steps", "decay_fraction": "decay_steps"}

# The optax arguments ``config.optimizer`` declares (any other argument of a
# factory can still be set from Python). ``learning_rate`` is the schedule's.
OPTIMIZER_ARGUMENTS = dict(b1=float, b2=float, eps=float, eps_root=float,
                           weight_decay=float, momentum=float, nesterov=bool,
                           decay=float, centered=bool,
                           # the hypergradient optimizers (adaptive): the
                           # initial adapted LR, which the schedule scales
                           learning_rate=float, hypergrad_lr=float)


class Resolved(NamedTuple):
  """A config section resolved against the function it configures."""
  name: str                # the family / optax factory
  kwargs: dict[str, Any]   # what it is called with
  ignored: dict[str, Any]  # set values it does not take (warned about)


def _config_type(hint: Any) -> type | None:
  """The placeholder type of a schedule argument annotated ``hint``; None for
  arguments that only Python sets (nested schedules)."""
  args = [hint]
  if typing.get_origin(hint) in (typing.Union, types.UnionType):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
  base = typing.get_origin(args[0]) or args[0]
  if base in (int, float, str, bool):
    return base
  if base in (tuple, list, np.ndarray):
    return tuple
  return None


@functools.cache
def schedule_arguments() -> dict[str, type]:
  """Every keyword argument of every schedule family (and the fractions),
  with the type its ``config.schedule`` placeholder has."""
  out = {}
  for name, cls in schedules.SCHEDULES.items():
    hints = typing.get_type_hints(cls)
    for arg in inspect.signature(cls).parameters:
      kind = _config_type(hints.get(arg))
      if kind is None:
        continue
      if out.setdefault(arg, kind) is not kind:
        raise TypeError(f"schedule argument {arg!r} is a {out[arg]} in one "
                        f"family and a {kind} in {name!r}")
  return out | {k: float for k in FRACTIONS}


def base_config() -> ml_collections.ConfigDict:
  """The defaults every config file starts from.

  The schedule is WSD with warmup and decay as fractions of its length, which
  follows ``train.steps`` (``total_steps`` unset), so a config scales with
  ``--config.train.steps``.
  """
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(name="bigram"))
  c.data = ml_collections.ConfigDict(dict(
      name="bigram", vocab_size=64, num_groups=4, seq_len=16, batch_size=64,
      eval_batches=4))
  c.schedule = ml_collections.ConfigDict(dict(name="wsd"))
  for key, kind in sorted(schedule_arguments().items()):
    c.schedule[key] = config_dict.placeholder(kind)
  c.schedule.update(peak_value=1e-2, warmup_fraction=0.05, decay_fraction=0.2)
  c.optimizer = ml_collections.ConfigDict(dict(name="adamw"))
  for key, kind in OPTIMIZER_ARGUMENTS.items():
    c.optimizer[key] = config_dict.placeholder(kind)
  c.optimizer.update(b1=0.9, b2=0.95, weight_decay=0.0)
  c.train = ml_collections.ConfigDict(_TRAIN_DEFAULTS)
  # data=-1: every device that fsdp does not use; fsdp>1 shards the state.
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
  # Optional: a sweep trained as one program (see train/population.py).
  c.population = ml_collections.ConfigDict(dict(grid="", members=""))
  return c


@functools.cache
def _warn_once(message: str) -> None:
  """One warning line per distinct message (a population resolves every
  member's config)."""
  logging.warning("%s", message)


def _plain(section: Any) -> dict[str, Any]:
  """A section as a flat dict: ``{"name", "kwargs": {...}}`` (as
  ``schedules.to_config`` writes it) is flattened."""
  d = dict(section.to_dict() if hasattr(section, "to_dict") else section)
  nested = d.pop("kwargs", None) or {}
  return d | dict(nested)


def _accepted(fn: Callable, exclude: tuple[str, ...] = ()) -> set[str] | None:
  """The keyword arguments of ``fn``; None if it takes ``**kwargs``."""
  params = inspect.signature(fn).parameters.values()
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
    return None
  return {p.name for p in params if p.name not in exclude}


def _split(where: str, name: str, values: dict[str, Any],
           accepted: set[str] | None) -> Resolved:
  """Drops unset values, keeps the accepted ones, warns once about the rest."""
  kwargs, ignored = {}, {}
  for key, v in values.items():
    if v is None:
      continue
    (kwargs if accepted is None or key in accepted else ignored)[key] = v
  if ignored:
    _warn_once(f"{where}: {name!r} takes no "
               + ", ".join(f"{k}={v!r}" for k, v in sorted(ignored.items()))
               + f" (ignored: set for another choice of {where}.name)")
  return Resolved(name, kwargs, ignored)


def schedule_kwargs(config: ml_collections.ConfigDict) -> Resolved:
  """The schedule family ``config`` trains with and its keyword arguments.

  ``config.schedule`` is resolved against ``config.schedule.name``:

  * ``total_steps``, if the family takes it and it is unset, is
    ``config.train.steps``; set explicitly, it must be >= 1.
  * ``warmup_fraction`` / ``decay_fraction`` give ``warmup_steps`` /
    ``decay_steps = round(fraction * total_steps)`` (``train.steps`` for a
    family without ``total_steps``) unless the step count is set, which
    wins; a family that takes the fraction itself (``wsd_s``) gets it as is.
  * Unset (None) keys are dropped; set keys that the family does not take are
    dropped with one warning naming them (e.g. the ``decay_fraction`` of a
    WSD config switched to ``cosine`` on the command line); a key that no
    family takes is an error.

  Also takes the ``{"name": ..., "kwargs": {...}}`` form of
  ``schedules.to_config`` (branches and studies write it).

  Raises:
    ValueError: naming the bad key and its value.
  """
  values = _plain(config.schedule)
  name = values.pop("name", None)
  if name not in schedules.SCHEDULES:
    raise ValueError(f"config.schedule.name={name!r} is not a schedule; known: "
                     f"{', '.join(sorted(schedules.SCHEDULES))}")
  known = set(schedule_arguments()) | {"base", "first", "second"}
  if unknown := sorted(k for k in values if k not in known):
    close = difflib.get_close_matches(unknown[0], known, n=1)
    raise ValueError(
        f"config.schedule.{unknown[0]} is not an argument of any schedule"
        + (f" (did you mean {close[0]!r}?)" if close else "")
        + f"; known: {', '.join(sorted(known))}")
  accepted = _accepted(schedules.SCHEDULES[name])
  total = values.get("total_steps")
  if "total_steps" in accepted:
    if total is None:
      total = values["total_steps"] = int(config.train.steps)
    elif int(total) < 1:
      raise ValueError(
          f"config.schedule.total_steps={total} must be >= 1 (leave it unset "
          f"to follow config.train.steps={config.train.steps})")
  else:
    total = int(config.train.steps)
  for fraction_key, steps_key in FRACTIONS.items():
    fraction = values.get(fraction_key)
    if fraction is None or fraction_key in accepted:
      continue
    if not 0 <= fraction <= 1:
      raise ValueError(f"config.schedule.{fraction_key}={fraction} must be in "
                       "[0, 1]")
    if steps_key in accepted:
      del values[fraction_key]
      if values.get(steps_key) is None:
        values[steps_key] = int(round(fraction * int(total)))
      else:
        logging.info("config.schedule.%s=%s is given: %s=%s is not used",
                     steps_key, values[steps_key], fraction_key, fraction)
  return _split("config.schedule", name, values, accepted)


def schedule_end(schedule: schedules.Schedule) -> int | None:
  """The step from which ``schedule`` holds its final value; None if it has
  none (constant, inverse_sqrt, power without a decay)."""
  if (end := getattr(schedule, "end_step", None)) is not None:
    return int(end)
  if isinstance(schedule, schedules.Splice):
    return schedule_end(schedule.second)
  if isinstance(schedule, schedules.WSDS):
    return int(schedule.checkpoint_steps[-1])
  if isinstance(schedule, schedules.CyclicCosine):
    return int(schedule.cycle_ends[-1])
  if isinstance(schedule, schedules.Tabulated):
    return len(schedule.values)
  if isinstance(schedule, schedules.Power) and not schedule.decay_steps:
    return None
  end = getattr(schedule, "total_steps", None)
  return None if end is None else int(end)


def resolve_schedule(config: ml_collections.ConfigDict) -> schedules.Schedule:
  """The schedule of ``config``: the one way to read ``config.schedule``.

  Builds :func:`schedule_kwargs`' family and arguments, then compares its end
  with ``config.train.steps``: training past the end warns (the LR stays at
  its final value); stopping before it is a main run to fork decays from
  (an INFO line).

  Raises:
    ValueError: naming the bad key or value.
  """
  r = schedule_kwargs(config)
  try:
    schedule = schedules.get(r.name, **r.kwargs)
  except ValueError as e:
    raise ValueError(f"config.schedule: {e}") from None
  steps, end = int(config.train.steps), schedule_end(schedule)
  if end is not None and steps > end:
    fix = ("leave config.schedule.total_steps unset to follow train.steps"
           if hasattr(schedule, "total_steps") else
           f"set config.train.steps={end} or lengthen the schedule")
    _warn_once(
        f"config.train.steps={steps} trains past the end of the schedule at "
        f"step {end}: the LR stays at {float(schedule(end)):.4g} for the last "
        f"{steps - end} steps ({fix})")
  elif end is not None and steps < end:
    logging.info("config.train.steps=%d stops before the schedule ends at "
                 "step %d (LR %.4g at the last step): a main run to fork "
                 "decays from", steps, end, float(schedule(steps - 1)))
  return schedule


def optimizer_factory(name: str) -> Callable[..., optax.GradientTransformation]:
  """The optax factory called ``name`` (``adamw``, ``sgd``, ``lion``,
  ``contrib.schedule_free_adamw``, ...), or a hypergradient optimizer of
  ``wsd_jax.adaptive`` (``sgd_hd``, ``adam_hd``)."""
  if name in hypergradient.OPTIMIZERS:
    return hypergradient.OPTIMIZERS[name]
  factory = optax
  for part in str(name).split("."):
    factory = getattr(factory, part, None)
  if factory is None or not callable(factory) or isinstance(factory, type):
    raise ValueError(f"config.optimizer.name={name!r} is not an optax "
                     "optimizer (e.g. adamw, sgd, lion, nadamw, adafactor, "
                     "contrib.schedule_free_adamw, sgd_hd, adam_hd)")
  return factory


def optimizer_kwargs(opt_config) -> Resolved:
  """``config.optimizer`` resolved against its optax factory's signature:
  unset (None) keys are dropped, set keys the factory does not take (e.g.
  ``b1`` for ``sgd``) are dropped with one warning naming them.

  A hypergradient optimizer (``sgd_hd``, ``adam_hd``) takes
  ``learning_rate``, its initial LR, which the schedule multiplies (a
  ``constant`` schedule of value 1 is pure HD); any other takes its LR from
  the schedule only."""
  values = _plain(opt_config)
  name = values.pop("name", None)
  adaptive = name in hypergradient.OPTIMIZERS
  accepted = _accepted(optimizer_factory(name), exclude=(
      (hypergradient.SCALE,) if adaptive else ("learning_rate",)))
  if adaptive and values.get("learning_rate") is None:
    raise ValueError(f"config.optimizer.learning_rate: {name} needs its "
                     "initial LR (the schedule multiplies it; "
                     "config.schedule.name=constant, value=1.0 is pure HD)")
  if not adaptive and values.get("learning_rate") is not None:
    raise ValueError("config.optimizer.learning_rate: the LR is the "
                     "schedule's; set config.schedule.peak_value")
  return _split("config.optimizer", name, values, accepted)


def resolved(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """What ``config`` trains with, as JSON-ready dicts (for ``--print_config``
  and records): the schedule and optimizer calls and the schedule's end."""
  r, opt = schedule_kwargs(config), optimizer_kwargs(config.optimizer)
  end = schedule_end(resolve_schedule(config))
  return {"schedule": {"name": r.name, "kwargs": r.kwargs,
                       "ignored": r.ignored, "end_step": end},
          "optimizer": {"name": opt.name, "kwargs": opt.kwargs,
                        "ignored": opt.ignored}}


def validate(config: ml_collections.ConfigDict, *, mesh=None,
             process_count: int = 1) -> schedules.Schedule:
  """Checks a config; returns its schedule (:func:`resolve_schedule`).

  Raises ``ValueError`` naming the bad key or value, before anything is
  compiled. Without a ``mesh`` the checks against the devices are left out
  (an app checks a config before it touches them).
  """
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
  schedule = resolve_schedule(config)
  optimizer_kwargs(config.optimizer)  # an unknown optimizer fails here
  batch = int(config.data.batch_size)
  if mesh is not None:
    sharding.check_batch_size(mesh, batch)
    eval_batch = config.data.get("eval_batch_size")
    if eval_batch is not None and int(eval_batch) % sharding.batch_divisor(
        mesh):
      raise ValueError(
          f"config.data.eval_batch_size={eval_batch} is not divisible by "
          f"data={mesh.shape['data']} x fsdp={mesh.shape['fsdp']} = "
          f"{sharding.batch_divisor(mesh)} devices")
  data_lib.check_files(config.data)  # unknown names, missing or binary files
  models.check(config.model, vocab_size=data_lib.vocab_size(config.data),
               max_seq_len=int(config.data.seq_len))
  if batch % process_count:
    raise ValueError(f"config.data.batch_size={batch} is not divisible by the "
                     f"{process_count} processes")
  check_grad_accum(config, mesh=mesh, process_count=process_count)
  return schedule


def check_grad_accum(config: ml_collections.ConfigDict, *, mesh=None,
                     process_count: int = 1) -> int:
  """``config.train.grad_accum_steps``, checked: an integer K >= 1 that
  splits each process's rows into equal microbatches which, with a ``mesh``,
  still split over its ``data x fsdp`` devices.

  Raises:
    ValueError: naming the values.
  """
  k = config.train.get("grad_accum_steps", 1)
  if isinstance(k, bool) or not isinstance(k, int) or k < 1:
    raise ValueError(f"config.train.grad_accum_steps must be an integer >= 1, "
                     f"got {k!r}")
  batch = int(config.data.batch_size)
  rows = batch // process_count
  if rows % k:
    raise ValueError(
        f"config.data.batch_size={batch} ({rows} rows per process) is not "
        f"divisible by config.train.grad_accum_steps={k}")
  if mesh is not None and (batch // k) % sharding.batch_divisor(mesh):
    raise ValueError(
        f"config.train.grad_accum_steps={k}: microbatches of "
        f"{batch // k} rows (config.data.batch_size={batch} / {k}) do not "
        f"split over data={mesh.shape['data']} x fsdp={mesh.shape['fsdp']} "
        f"= {sharding.batch_divisor(mesh)} devices")
  return k


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
