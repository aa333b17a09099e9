"""The named schedules of the literature, each a pytree built on the phase engine.

Every class is a frozen dataclass and a JAX pytree: numbers are leaves, shape
names are static. Build them with the lower-case factories in
``wsd_jax.schedules`` (or the classes directly: both validate). All of them
are ``optax.Schedule``s: ``lr = schedule(step)`` with a 0-based step.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from wsd_jax.schedules import engine, shapes
from wsd_jax.schedules.engine import (Phase, Schedule, check_decay, check_fits,
                                      check_peak, check_warmup_init, child,
                                      derived_steps, hold, ramp, require,
                                      schedule_class, static, step_tuple,
                                      steps, value, warmup)


@schedule_class
class Constant(Schedule):
  """``lr = value`` at every step."""
  name = "constant"
  value: float = value()

  def check(self):
    require(self.value >= 0, "value", self.value, "must be >= 0")

  def phases(self):
    return [hold(0, self.value)]


class _WarmupDecayRule(Schedule):
  """Warmup, then one decay of a fixed shape over the rest of ``total_steps``."""
  _shape = "linear"

  def check(self):
    check_peak("peak_value", self.peak_value)
    check_warmup_init(self.init_value, self.peak_value)
    check_fits("total_steps", self.total_steps, warmup_steps=self.warmup_steps)
    check_decay(self._shape, self.peak_value, self.final_value,
                known=(self._shape,))

  def _param(self):
    return 0.0

  def phases(self):
    return warmup(self.init_value, self.peak_value, self.warmup_steps) + [
        ramp(self._shape, self.warmup_steps,
             self.total_steps - self.warmup_steps, self.peak_value,
             self.final_value, self._param()),
        hold(self.total_steps, self.final_value)]


@dataclasses.dataclass(frozen=True)
class _WarmupDecay(_WarmupDecayRule):
  peak_value: float = value()
  total_steps: int = steps()
  warmup_steps: int = steps(default=0)
  init_value: float = value(default=0.0)
  final_value: float = value(default=0.0)


@schedule_class
class Linear(_WarmupDecay):
  """Linear warmup, then linear decay from the peak to ``final_value``."""
  name = "linear"
  _shape = "linear"


@schedule_class
class Cosine(_WarmupDecay):
  """Linear warmup, then ``final + (peak - final) (1 + cos(pi p)) / 2``."""
  name = "cosine"
  _shape = "cosine"


@schedule_class
class Rex(_WarmupDecay):
  """REX (Chen et al., arXiv 2107.04197): warmup, then the shape

      m(p) = (1 - p) / (1 - (1 - beta) p),

  ``lr = final + (peak - final) m(p)``; ``beta = 1/2`` is the paper's REX.
  """
  name = "rex"
  _shape = "rex"
  beta: float = value(default=0.5)

  def check(self):
    require(self.beta > 0, "beta", self.beta, "must be > 0")
    super().check()

  def _param(self):
    return self.beta


@schedule_class
class UBA(_WarmupDecayRule):
  """UBA (Tang et al., arXiv 2505.24452): warmup, then the shape

      m(p) = 2 (1 + cos(pi p)) / (2 phi + (2 - phi)(1 + cos(pi p))),

  ``lr = final + (peak - final) m(p)``; ``phi = 2`` is cosine. Reconstructed
  from third-party code (see PAPERS.md), not checked against the paper's own
  equation.
  """
  name = "uba"
  _shape = "uba"
  peak_value: float = value()
  total_steps: int = steps()
  phi: float = value()
  warmup_steps: int = steps(default=0)
  init_value: float = value(default=0.0)
  final_value: float = value(default=0.0)

  def check(self):
    require(self.phi > 0, "phi", self.phi, "must be > 0")
    super().check()

  def _param(self):
    return self.phi


@schedule_class
class WSD(Schedule):
  """Warmup-stable-decay (Hu et al., MiniCPM, arXiv 2404.06395).

  Linear warmup to the peak over ``warmup_steps``, constant peak, then a decay
  of ``decay_shape`` over ``[total_steps - decay_steps, total_steps]`` to
  ``final_value`` (held after). Shapes: linear, cosine, 1-sqrt (Hägele et al.,
  arXiv 2405.18392), square, exp, inverse-linear. WSDC is ``final_value > 0``.
  """
  name = "wsd"
  peak_value: float = value()
  total_steps: int = steps()
  decay_steps: int = steps()
  warmup_steps: int = steps(default=0)
  decay_shape: str = static(default="linear")
  init_value: float = value(default=0.0)
  final_value: float = value(default=0.0)

  def check(self):
    check_peak("peak_value", self.peak_value)
    check_warmup_init(self.init_value, self.peak_value)
    check_fits("total_steps", self.total_steps,
               warmup_steps=self.warmup_steps, decay_steps=self.decay_steps)
    check_decay(self.decay_shape, self.peak_value, self.final_value)

  def phases(self):
    start = self.total_steps - self.decay_steps
    return warmup(self.init_value, self.peak_value, self.warmup_steps) + [
        hold(self.warmup_steps, self.peak_value),
        ramp(self.decay_shape, start, self.decay_steps, self.peak_value,
             self.final_value),
        hold(self.total_steps, self.final_value)]


@schedule_class
class Power(Schedule):
  """Power scheduler (Shen et al., arXiv 2408.13359), defined in tokens.

  ``lr(n) = min(max_value, a * n**b)`` with ``n = tokens_per_step * step``
  tokens seen (``b < 0``; at ``n = 0`` the value is ``max_value``). Following
  IBM's code, the warmup rises linearly from 0 to the power value at the end
  of warmup, with no constant phase. With ``decay_steps > 0`` a decay of
  ``decay_shape`` over ``[total_steps - decay_steps, total_steps]`` starts
  from the value the schedule has at its start (the paper ends with such a
  decay; its exact shape is a documented choice here).
  """
  name = "power"
  max_value: float = value()
  a: float = value()
  b: float = value()
  tokens_per_step: float = value()
  total_steps: int = steps()
  warmup_steps: int = steps(default=0)
  decay_steps: int = steps(default=0)
  decay_shape: str = static(default="linear")
  final_value: float = value(default=0.0)

  def check(self):
    check_peak("max_value", self.max_value)
    check_peak("a", self.a)
    require(self.b < 0, "b", self.b, "must be < 0")
    check_peak("tokens_per_step", self.tokens_per_step)
    check_fits("total_steps", self.total_steps,
               warmup_steps=self.warmup_steps, decay_steps=self.decay_steps)
    require(self.decay_shape in shapes.DECAY_SHAPES, "decay_shape",
            self.decay_shape, f"must be one of {shapes.DECAY_SHAPES}")
    require(self.final_value >= 0, "final_value", self.final_value,
            "must be >= 0")
    if self.decay_steps > 0:
      start = self.total_steps - self.decay_steps
      check_decay(self.decay_shape, float(self._power(start)),
                  self.final_value)

  def _power(self, step):
    tokens = jnp.asarray(self.tokens_per_step, jnp.float32) * jnp.asarray(
        step, jnp.float32)
    safe = jnp.where(tokens > 0, tokens, 1.0)
    power = jnp.where(tokens > 0, self.a * safe**self.b, jnp.inf)
    return jnp.minimum(self.max_value, power)

  def phases(self):
    decay_start = self.total_steps - self.decay_steps
    decay = ramp(self.decay_shape, decay_start, self.decay_steps,
                 self._power(decay_start), self.final_value)
    has_decay = jnp.asarray(self.decay_steps) > 0
    return [
        ramp("linear", 0, self.warmup_steps, 0.0,
             self._power(self.warmup_steps)),
        Phase(self.warmup_steps, self._power),
        # Without a decay the power law simply goes on past total_steps.
        Phase(decay_start, lambda step: jnp.where(
            has_decay, decay.fn(step), self._power(step))),
        Phase(self.total_steps, lambda step: jnp.where(
            has_decay, self.final_value, self._power(step))),
    ]


@schedule_class
class WSDS(Schedule):
  """WSD-S (Wen et al., arXiv 2410.05192): one main branch, decays reused.

  For budgets ``B_1 < B_2 < ...`` the decay ``i`` has length
  ``d_i = round(decay_fraction * B_i)``, ends at ``E_i = B_i + sum_{j<i} d_j``
  and starts at ``E_i - d_i``. After ``E_i`` training resumes *from the
  decayed weights* at the peak LR with no re-warmup. ``checkpoint_steps`` are
  the ``E_i``: e.g. budgets (12500, 25000, 50000) with fraction 0.1 give
  (12500, 26250, 53750). After the last budget the LR stays at
  ``final_value``. The paper's configs decay linearly to 0.1 x peak.

  The ``d_i`` are computed once, when the schedule is built: Python's
  ``round`` of the float64 product (ties to even, e.g. ``0.5 * 381 -> 190``).
  They are the integer leaves ``decay_steps``, so eager calls, ``jit``,
  ``vmap`` and ``checkpoint_steps`` use the same lengths (a float32
  ``decay_fraction`` rounded under ``jit`` would move ties such as
  ``0.15 * 190``).
  """
  name = "wsd_s"
  peak_value: float = value()
  budgets: tuple[int, ...] = step_tuple()
  decay_fraction: float = value(default=0.1)
  warmup_steps: int = steps(default=0)
  decay_shape: str = static(default="linear")
  init_value: float = value(default=0.0)
  final_value: float = value(default=0.0)
  decay_steps: tuple[int, ...] = derived_steps()

  def derive(self):
    fraction = engine.concrete_value(self.decay_fraction)
    budgets = [engine.concrete_value(b) for b in self.budgets]
    if fraction is None or any(b is None for b in budgets):
      raise ValueError(
          "wsd_s needs concrete decay_fraction and budgets to round its decay "
          f"lengths, got {self.decay_fraction!r} and {self.budgets!r}: build "
          "the schedule outside jit/vmap/grad and pass it in as an argument")
    fraction = fraction.astype(np.float64)
    require(np.all((fraction > 0) & (fraction <= 1)), "decay_fraction",
            self.decay_fraction, "must be in (0, 1]")
    return {"decay_steps": tuple(np.round(fraction * b.astype(np.float64))
                                 for b in budgets)}

  @property
  def checkpoint_steps(self) -> tuple:
    """The steps ``E_i`` at which decay ``i`` ends (the budget's model)."""
    ends, decayed = [], 0
    for b, d in zip(self.budgets, self.decay_steps):
      ends.append(b + decayed)
      decayed = decayed + d
    return tuple(ends)

  def check(self):
    check_peak("peak_value", self.peak_value)
    check_warmup_init(self.init_value, self.peak_value)
    check_decay(self.decay_shape, self.peak_value, self.final_value)
    previous = 0
    for i, b in enumerate(self.budgets):
      require(b > previous, f"budgets[{i}]", b,
              f"must exceed the previous budget ({previous})")
      previous = b
    ends = self.checkpoint_steps
    starts = [e - d for e, d in zip(ends, self.decay_steps)]
    require(starts[0] >= self.warmup_steps, "warmup_steps", self.warmup_steps,
            f"must end before the first decay starts (step {starts[0]})")
    require(ends[-1] <= engine.MAX_STEP, "budgets", self.budgets,
            "give a last checkpoint beyond 2**31-1")
    for i in range(1, len(ends)):
      require(starts[i] >= ends[i - 1], "decay_fraction", self.decay_fraction,
              f"makes decay {i} start (step {starts[i]}) before decay {i - 1} "
              f"ends (step {ends[i - 1]})")

  def phases(self):
    phases = warmup(self.init_value, self.peak_value, self.warmup_steps)
    phases.append(hold(self.warmup_steps, self.peak_value))
    for end, decay in zip(self.checkpoint_steps, self.decay_steps):
      phases.append(ramp(self.decay_shape, end - decay, decay,
                         self.peak_value, self.final_value))
      phases.append(hold(end, self.peak_value))
    phases[-1] = hold(phases[-1].start, self.final_value)
    return phases


@schedule_class
class CyclicCosine(Schedule):
  """Cyclic cosine, the baseline of Wen et al. (arXiv 2410.05192).

  Cycle ``i`` is a cosine decay from the peak to ``final_value`` ending at
  ``cycle_ends[i]``; the first starts after a linear warmup, every later one
  with a linear re-warm from ``final_value`` to the peak over
  ``rewarm_steps``. The paper: cosine to 0.1 x peak at each budget, re-warm
  over 2,000 steps. ``final_value`` is held after the last cycle.
  """
  name = "cyclic_cosine"
  peak_value: float = value()
  cycle_ends: tuple[int, ...] = step_tuple()
  warmup_steps: int = steps(default=0)
  rewarm_steps: int = steps(default=0)
  init_value: float = value(default=0.0)
  final_value: float = value(default=0.0)

  def check(self):
    check_peak("peak_value", self.peak_value)
    check_warmup_init(self.init_value, self.peak_value)
    check_decay("cosine", self.peak_value, self.final_value)
    previous, ramp_steps = 0, self.warmup_steps
    for i, end in enumerate(self.cycle_ends):
      require(end >= previous + ramp_steps, f"cycle_ends[{i}]", end,
              f"leaves no room for the {'warmup' if i == 0 else 're-warm'} "
              f"of {ramp_steps} steps after step {previous}")
      previous, ramp_steps = end, self.rewarm_steps

  def phases(self):
    phases = warmup(self.init_value, self.peak_value, self.warmup_steps)
    start, ramp_steps = 0, self.warmup_steps
    for i, end in enumerate(self.cycle_ends):
      if i > 0:
        phases.append(ramp("linear", start, ramp_steps, self.final_value,
                           self.peak_value))
      top = start + ramp_steps
      phases.append(ramp("cosine", top, end - top, self.peak_value,
                         self.final_value))
      start, ramp_steps = end, self.rewarm_steps
    phases.append(hold(start, self.final_value))
    return phases


@schedule_class
class Infinite(Schedule):
  """Infinite schedule (Ibrahim et al., arXiv 2403.08763; Singh et al., 2503.02844).

  Linear warmup; a ``cooldown_shape`` decay from the peak to
  ``constant_value`` over ``[warmup_steps, warmup_steps + cooldown_steps]``;
  ``constant_value`` for as long as training goes on; then an
  ``anneal_shape`` decay (exponential in Singh et al.) to ``final_value`` over
  ``[total_steps - anneal_steps, total_steps]``.
  """
  name = "infinite"
  peak_value: float = value()
  warmup_steps: int = steps()
  cooldown_steps: int = steps()
  constant_value: float = value()
  total_steps: int = steps()
  anneal_steps: int = steps()
  final_value: float = value()
  cooldown_shape: str = static(default="cosine")
  anneal_shape: str = static(default="exp")
  init_value: float = value(default=0.0)

  def check(self):
    check_peak("peak_value", self.peak_value)
    check_warmup_init(self.init_value, self.peak_value)
    check_fits("total_steps", self.total_steps,
               warmup_steps=self.warmup_steps,
               cooldown_steps=self.cooldown_steps,
               anneal_steps=self.anneal_steps)
    require(0 < self.constant_value <= self.peak_value, "constant_value",
            self.constant_value, f"must be in (0, peak={self.peak_value}]")
    check_decay(self.cooldown_shape, self.peak_value, self.constant_value,
                "cooldown_shape")
    check_decay(self.anneal_shape, self.constant_value, self.final_value,
                "anneal_shape")

  def phases(self):
    anneal_start = self.total_steps - self.anneal_steps
    return warmup(self.init_value, self.peak_value, self.warmup_steps) + [
        ramp(self.cooldown_shape, self.warmup_steps, self.cooldown_steps,
             self.peak_value, self.constant_value),
        ramp(self.anneal_shape, anneal_start, self.anneal_steps,
             self.constant_value, self.final_value),
        hold(self.total_steps, self.final_value)]


@schedule_class
class InverseSqrt(Schedule):
  """Linear warmup, then ``peak * sqrt(tau / (step - warmup_steps + tau))``.

  ``tau = timescale`` or ``warmup_steps`` when no timescale is given
  (Vaswani et al. style; the infinite-schedule papers use it as a cooldown).
  """
  name = "inverse_sqrt"
  peak_value: float = value()
  warmup_steps: int = steps()
  timescale: float | None = value(default=None)
  init_value: float = value(default=0.0)

  def __post_init__(self):
    if self.timescale is None:
      object.__setattr__(self, "timescale", self.warmup_steps)
    super().__post_init__()

  def check(self):
    check_peak("peak_value", self.peak_value)
    check_warmup_init(self.init_value, self.peak_value)
    require(self.timescale > 0, "timescale", self.timescale,
            "must be > 0 (give timescale when warmup_steps is 0)")

  def phases(self):
    def fn(step):
      t = (step - jnp.asarray(self.warmup_steps, jnp.int32)).astype(jnp.float32)
      return self.peak_value * jnp.sqrt(self.timescale /
                                        (jnp.maximum(t, 0.0) + self.timescale))
    return warmup(self.init_value, self.peak_value, self.warmup_steps) + [
        Phase(self.warmup_steps, fn)]


@schedule_class
class Branch(Schedule):
  """A decay branch forked from ``base`` at ``at_step`` (WSD from a checkpoint).

  Equal to ``base`` before ``at_step``; then a ``decay_shape`` decay from
  ``base(at_step)`` to ``final_value`` over ``[at_step, at_step +
  decay_steps]``, held after. This is OLMo-core's "override the decay from the
  LR the main schedule has at step s".
  """
  name = "branch"
  base: Schedule = child()
  at_step: int = steps()
  decay_steps: int = steps()
  decay_shape: str = static(default="linear")
  final_value: float = value(default=0.0)

  def check(self):
    require(self.decay_steps > 0, "decay_steps", self.decay_steps,
            "must be > 0")
    require(self.at_step + self.decay_steps <= engine.MAX_STEP, "at_step",
            self.at_step, f"+ decay_steps={self.decay_steps} exceeds 2**31-1")
    check_decay(self.decay_shape, float(self.base(self.at_step)),
                self.final_value)

  @property
  def end_step(self):
    return self.at_step + self.decay_steps

  def phases(self):
    start_value = self.base(self.at_step)
    return [
        Phase(0, self.base),
        ramp(self.decay_shape, self.at_step, self.decay_steps, start_value,
             self.final_value),
        hold(self.at_step + self.decay_steps, self.final_value)]


@schedule_class
class Splice(Schedule):
  """``first`` before ``at_step``, ``second`` from ``at_step`` on.

  The effective schedule of a run whose schedule changed when it resumed,
  e.g. a WSD-S main branch continued from a decayed branch at ``at_step``.
  """
  name = "splice"
  first: Schedule = child()
  at_step: int = steps()
  second: Schedule = child()

  def phases(self):
    return [Phase(0, self.first), Phase(self.at_step, self.second)]


@schedule_class
class Tabulated(Schedule):
  """Per-step values: ``lr = values[step]``, the last value held after the end.

  For schedules found numerically (e.g. by optimising a loss-curve law).
  """
  name = "tabulated"
  values: np.ndarray = value()

  def __post_init__(self):
    if not isinstance(self.values, jax.core.Tracer) and self.values is not None \
        and type(self.values) is not object:
      arr = np.asarray(self.values, np.float32)
      # 1-D: one schedule; 2-D: a stacked population (``schedules.stack``,
      # the trainer's vmapped groups), one row per member.
      if arr.ndim not in (1, 2) or arr.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence, got shape "
                         f"{arr.shape}")
      if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("values must be finite and >= 0, got "
                         f"min={arr.min()} max={arr.max()}")
      object.__setattr__(self, "values", arr)

  def phases(self):
    values = jnp.asarray(self.values, jnp.float32)
    def fn(step):
      return values[jnp.clip(step, 0, values.shape[0] - 1)]
    return [Phase(0, fn)]
