"""The piecewise phase engine and the pytree machinery every schedule shares.

A schedule is a list of :class:`Phase` objects, each a start step and a function
of the step. ``evaluate`` picks, for every step, the last phase that has
started (phases with equal starts: the later one wins, so a zero-length warmup
disappears). Decays, warmups and holds are all built by :func:`ramp` and
:func:`hold`, so no schedule carries its own copy of warmup or decay code.

Schedules are frozen dataclasses registered as JAX pytrees with
:func:`schedule_class`: fields made with :func:`steps` or :func:`value` are
leaves, fields made with :func:`static` are part of the tree structure. When a
schedule is built from concrete numbers its ``check`` method validates them
and the leaves are normalised to Python ``int``/``float`` (so two schedules
that differ only in numbers have identical avals under ``jax.jit``). When a
schedule is rebuilt from tracers (inside ``jit``, ``vmap`` or ``grad``) nothing
is checked.

A quantity computed from the arguments that traced code must not recompute
(e.g. WSD-S's rounded decay lengths: float64 rounding on the host and float32
rounding under ``jit`` disagree at ties) is a :func:`derived_steps` field: the
schedule's ``derive`` computes it once, on the host, when the schedule is
built, and the pytree carries it as integer leaves, so eager calls, ``jit``,
``vmap`` and the schedule's own properties all read the same integers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from wsd_jax.schedules import shapes

MAX_STEP = 2**31 - 1

_KIND = "wsd_jax_kind"


def steps(**kwargs) -> Any:
  """A dataclass field holding a step count (an integer leaf)."""
  return dataclasses.field(metadata={_KIND: "steps"}, **kwargs)


def value(**kwargs) -> Any:
  """A dataclass field holding a real number (a float leaf)."""
  return dataclasses.field(metadata={_KIND: "value"}, **kwargs)


def step_tuple(**kwargs) -> Any:
  """A dataclass field holding a tuple of steps (integer leaves)."""
  return dataclasses.field(metadata={_KIND: "step_tuple"}, **kwargs)


def child(**kwargs) -> Any:
  """A dataclass field holding another schedule (a pytree child)."""
  return dataclasses.field(metadata={_KIND: "child"}, **kwargs)


def derived_steps(**kwargs) -> Any:
  """A tuple of steps that ``derive()`` computes from the other fields.

  Not a constructor argument; carried in the pytree as integer leaves.
  """
  return dataclasses.field(init=False, metadata={_KIND: "derived"}, **kwargs)


def static(**kwargs) -> Any:
  """A dataclass field holding a discrete choice (static, not a leaf)."""
  return dataclasses.field(metadata={_KIND: "static", "static": True}, **kwargs)


def concrete_value(x: Any) -> np.ndarray | None:
  """``x`` as a NumPy array if it is a concrete number, else ``None``."""
  if isinstance(x, jax.core.Tracer) or isinstance(x, bool):
    return None
  if isinstance(x, (int, float, np.ndarray, np.generic, jax.Array)):
    arr = np.asarray(x)
    if arr.dtype.kind in "iuf":
      return arr
  return None


def _normalise(name: str, kind: str, x: Any) -> Any:
  """Checks one concrete leaf and returns it as int/float (0-d) or an array."""
  arr = concrete_value(x)
  if kind == "steps":
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
      raise ValueError(f"{name} must be a whole number of steps, got {x!r}")
    if np.any(arr < 0) or np.any(arr > MAX_STEP):
      raise ValueError(f"{name} must be in [0, 2**31-1], got {x!r}")
    return int(arr) if arr.ndim == 0 else arr.astype(np.int32)
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"{name} must be finite, got {x!r}")
  return float(arr) if arr.ndim == 0 else arr.astype(np.float32)


def _normalise_tuple(name: str, items: tuple) -> tuple:
  """Checks a tuple of concrete steps (see :func:`_normalise`)."""
  return tuple(_normalise(f"{name}[{i}]", "steps", v)
               for i, v in enumerate(items))


class Schedule:
  """Base class: ``schedule(step) -> float32 LR``; an ``optax.Schedule``.

  Subclasses define ``phases()`` (the piecewise description, written with
  traceable arithmetic) and ``check()`` (validation of concrete values).
  """

  name: str = ""

  def __post_init__(self):
    leaves, concrete = {}, True
    for f in dataclasses.fields(self):
      kind = f.metadata.get(_KIND)
      x = getattr(self, f.name, None)
      if kind in ("steps", "value"):
        if concrete_value(x) is None:
          concrete = False  # Rebuilt from tracers or placeholders.
          break
        leaves[f.name] = _normalise(f.name, kind, x)
      elif kind == "step_tuple":
        if isinstance(x, (int, float, np.integer, np.floating)):
          x = (x,)
        items = tuple(x)
        if not items:
          raise ValueError(f"{f.name} must not be empty, got {x!r}")
        if any(concrete_value(i) is None for i in items):
          concrete = False
          break
        leaves[f.name] = _normalise_tuple(f.name, items)
      elif kind == "child" and not isinstance(x, Schedule):
        if isinstance(x, jax.core.Tracer) or x is None or type(x) is object:
          concrete = False
          break
        raise ValueError(f"{f.name} must be a schedule, got {x!r}")
    if concrete:
      for k, v in leaves.items():
        object.__setattr__(self, k, v)
    # Derived fields are computed once, here, unless the pytree (rebuilt by
    # jit, vmap, tree.map, ...) already carries them.
    if any(f.metadata.get(_KIND) == "derived" and f.name not in vars(self)
           for f in dataclasses.fields(self)):
      for k, v in self.derive().items():
        object.__setattr__(self, k, _normalise_tuple(k, tuple(v)))
    if concrete and all(np.ndim(v) == 0 for k, v in leaves.items()
                        if not isinstance(v, tuple)):
      self.check()

  def derive(self) -> dict[str, Any]:
    """The :func:`derived_steps` fields, computed from concrete values."""
    return {}

  def check(self) -> None:
    """Raises ``ValueError`` naming a bad argument (concrete values only)."""

  def phases(self) -> list["Phase"]:
    raise NotImplementedError

  def __call__(self, step: jax.typing.ArrayLike) -> jax.Array:
    return evaluate(self.phases(), step)


def schedule_class(cls: type) -> type:
  """Makes ``cls`` a frozen dataclass registered as a JAX pytree.

  Fields made with :func:`static` are the node's aux data, the others its
  children. Registered as a custom node rather than with
  ``jax.tree_util.register_dataclass``: in jax 0.10 the tree structures of
  two such dataclasses with the same fields compare equal (``Linear`` and
  ``Cosine``), and ``jax.jit`` then at times reuses one class's executable
  for the other; custom nodes compare their types. Derived fields are
  children but not constructor arguments, so a schedule is rebuilt around the
  constructor: every field is set, then ``__post_init__`` checks it.
  """
  cls = dataclasses.dataclass(frozen=True)(cls)
  fields = dataclasses.fields(cls)
  meta = tuple(f.name for f in fields if f.metadata.get("static"))
  data = tuple(f.name for f in fields if not f.metadata.get("static"))
  keys = tuple(jax.tree_util.GetAttrKey(n) for n in data)

  def flatten_with_keys(x):
    return ([(k, getattr(x, n)) for k, n in zip(keys, data)],
            tuple(getattr(x, n) for n in meta))

  def flatten(x):
    return [getattr(x, n) for n in data], tuple(getattr(x, n) for n in meta)

  def unflatten(meta_values, children):
    obj = object.__new__(cls)
    for n, v in zip(meta + data, (*meta_values, *children)):
      object.__setattr__(obj, n, v)
    obj.__post_init__()
    return obj

  jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten,
                                          flatten)
  return cls


# ----------------------------------------------------------------------------
# The phase engine.


class Phase(NamedTuple):
  """A piece of a schedule: active from ``start`` until the next phase."""
  start: jax.typing.ArrayLike
  fn: Callable[[jax.Array], jax.Array]


def as_step(step: jax.typing.ArrayLike) -> jax.Array:
  """Steps as int32 (0-based, like optax's ``count``)."""
  step = jnp.asarray(step)
  if not jnp.issubdtype(step.dtype, jnp.integer):
    step = jnp.floor(step)
  return step.astype(jnp.int32)


def progress(step: jax.Array, start: jax.typing.ArrayLike,
             length: jax.typing.ArrayLike) -> jax.Array:
  """``clip((step - start) / length, 0, 1)``; 1 for a zero-length phase.

  The offset is taken in int32 (exact for any step < 2**31) before the
  division in float32.
  """
  offset = (step - jnp.asarray(start, jnp.int32)).astype(jnp.float32)
  length = jnp.asarray(length, jnp.float32)
  p = jnp.where(length > 0, offset / jnp.maximum(length, 1.0), 1.0)
  return jnp.clip(p, 0.0, 1.0)


def ramp(shape: str, start: jax.typing.ArrayLike, length: jax.typing.ArrayLike,
         from_value: jax.typing.ArrayLike, to_value: jax.typing.ArrayLike,
         param: jax.typing.ArrayLike = 0.0) -> Phase:
  """A phase going from ``from_value`` to ``to_value`` over ``length`` steps."""
  def fn(step):
    p = progress(step, start, length)
    return shapes.interpolate(shape, p, from_value, to_value, param)
  return Phase(start, fn)


def hold(start: jax.typing.ArrayLike, level: jax.typing.ArrayLike) -> Phase:
  """A phase that keeps ``level``."""
  return Phase(start, lambda step: jnp.full(step.shape, level, jnp.float32))


def warmup(init_value, peak_value, warmup_steps) -> list[Phase]:
  """Linear warmup from ``init_value`` at step 0 to the peak at ``warmup_steps``."""
  return [ramp("linear", 0, warmup_steps, init_value, peak_value)]


def evaluate(phases: Sequence[Phase], step: jax.typing.ArrayLike) -> jax.Array:
  """Evaluates a piecewise schedule at ``step`` (any shape); float32."""
  step = as_step(step)
  out = jnp.asarray(phases[0].fn(step), jnp.float32)
  for phase in phases[1:]:
    out = jnp.where(step >= jnp.asarray(phase.start, jnp.int32),
                    jnp.asarray(phase.fn(step), jnp.float32), out)
  return jnp.broadcast_to(out, step.shape)


# ----------------------------------------------------------------------------
# Validation helpers for ``check`` methods (concrete Python numbers only).


def require(ok: bool, name: str, x: Any, why: str) -> None:
  if not ok:
    raise ValueError(f"{name} {why}, got {x!r}")


def check_peak(name: str, peak: float) -> None:
  require(math.isfinite(peak) and peak > 0, name, peak,
          "must be positive and finite")


def check_warmup_init(init_value: float, peak: float) -> None:
  require(0 <= init_value <= peak, "init_value", init_value,
          f"must be in [0, peak={peak}]")


def check_decay(shape: str, start: float, final: float,
                shape_name: str = "decay_shape",
                known: tuple[str, ...] = shapes.DECAY_SHAPES) -> None:
  """Checks a decay's shape name and its end value against its start value."""
  require(shape in known, shape_name, shape, f"must be one of {known}")
  require(final >= 0, "final_value", final, "must be >= 0")
  require(final <= start, "final_value", final,
          f"must not exceed the value the decay starts from ({start})")
  if shape in shapes.RATIO_SHAPES:
    require(final > 0, "final_value", final,
            f"must be > 0 for decay_shape {shape!r}")


def check_fits(total_name: str, total: int, **parts: int) -> None:
  """Checks that the named step counts add up to at most ``total``."""
  used = sum(parts.values())
  if used > total:
    detail = " + ".join(f"{k}={v}" for k, v in parts.items())
    raise ValueError(f"{detail} = {used} exceeds {total_name}={total}")
