"""The LR schedules of the literature as optax-native JAX pytrees.

Every schedule is a frozen dataclass registered as a pytree (numbers are
leaves, shape names are static) and an ``optax.Schedule``::

    from wsd_jax import schedules
    lr = schedules.wsd(peak_value=3e-3, total_steps=10_000, decay_steps=2_000,
                       warmup_steps=500, decay_shape="1-sqrt")
    tx = optax.adamw(learning_rate=lr)

Since schedules are pytrees, a jitted step can take one as an argument (a
sweep over peaks compiles once) and ``jax.vmap`` runs a stacked population.
"""

import functools

import numpy as np

from wsd_jax.schedules.engine import MAX_STEP, Phase, Schedule, evaluate
from wsd_jax.schedules.named import (UBA, WSD, WSDS, Branch, Constant, Cosine,
                                     CyclicCosine, Infinite, InverseSqrt,
                                     Linear, Power, Rex, Splice,
                                     Tabulated)
from wsd_jax.schedules.registry import SCHEDULES, from_config, get, to_config
from wsd_jax.schedules.shapes import DECAY_SHAPES

# The factories of the contract (DESIGN.md): the classes validate on
# construction, so each factory is its class.
constant = Constant
linear = Linear
cosine = Cosine
wsd = WSD
rex = Rex
uba = UBA
power = Power
wsd_s = WSDS
cyclic_cosine = CyclicCosine
infinite = Infinite
inverse_sqrt = InverseSqrt
branch = Branch
splice = Splice
tabulated = Tabulated


def equal(a: Schedule, b: Schedule) -> bool:
  """Whether two schedules are the same: class, static choices and every
  number (arrays, e.g. a tabulated schedule's values, compared elementwise;
  ``==`` on the dataclasses cannot compare arrays)."""
  import jax
  la, ta = jax.tree.flatten(a)
  lb, tb = jax.tree.flatten(b)
  return ta == tb and all(
      np.shape(x) == np.shape(y) and np.array_equal(np.asarray(x), np.asarray(y))
      for x, y in zip(la, lb))


def stack(schedules_: list[Schedule]) -> Schedule:
  """Stacks schedules of one structure into a population for ``jax.vmap``."""
  import jax
  import jax.numpy as jnp
  treedefs = {jax.tree.structure(s) for s in schedules_}
  if len(treedefs) != 1:
    raise ValueError("cannot stack schedules that differ in static choices "
                     f"(names or shapes): {sorted(map(str, treedefs))}")
  return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]),
                      *schedules_)


@functools.cache
def _jitted_values():
  import jax
  return jax.jit(lambda schedule, steps: schedule(steps))


def values(schedule: Schedule, num_steps: int) -> np.ndarray:
  """``schedule(t)`` for ``t < num_steps`` as a float32 NumPy array.

  Jitted with the schedule as an argument and the step range padded to a
  power of two, so reading many runs' LRs compiles once per schedule
  structure and size class instead of evaluating op by op.
  """
  n = int(num_steps)
  if n <= 0:
    return np.zeros((0,), np.float32)
  padded = 1 << max(n - 1, 1).bit_length()
  out = _jitted_values()(schedule, np.arange(padded, dtype=np.int32))
  return np.asarray(out, np.float32)[:n]
