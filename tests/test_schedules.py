"""Exact values, pytree behaviour and validation of every schedule.

The reference formulas below are written independently of the library (plain
NumPy in float64) from DESIGN.md and PAPERS.md.
"""

import dataclasses
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from wsd_jax import schedules as S

RTOL = 2e-6  # float32 rounding of values computed in float32.
ULPS = 5e-7  # A few float32 ulps: eager vs fused (jit) evaluation.


def ref_shape(shape, p, start, final, param=None):
  """The decay formulas of DESIGN.md, in float64."""
  p = float(p)
  if shape == "exp":
    return start * (final / start) ** p
  if shape == "inverse-linear":
    return start / (1 + (start / final - 1) * p)
  m = {
      "linear": lambda: 1 - p,
      "cosine": lambda: (1 + math.cos(math.pi * p)) / 2,
      "1-sqrt": lambda: 1 - math.sqrt(p),
      "square": lambda: 1 - p * p,
      "rex": lambda: (1 - p) / (1 - (1 - param) * p),
      "uba": lambda: (2 * (1 + math.cos(math.pi * p)) /
                      (2 * param + (2 - param) * (1 + math.cos(math.pi * p)))),
  }[shape]()
  return final + (start - final) * m


def check_points(schedule, expected: dict):
  steps = np.array(sorted(expected))
  got = np.asarray(jax.jit(lambda s, t: s(t))(schedule, steps))
  assert got.dtype == np.float32
  want = np.array([expected[s] for s in steps])
  np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-7,
                             err_msg=f"{schedule} at steps {steps}")


PEAK, INIT, FINAL = 3e-3, 3e-5, 3e-4


@pytest.mark.parametrize("shape", S.DECAY_SHAPES)
def test_wsd_every_shape(shape):
  total, decay, warm = 1000, 200, 100
  sched = S.wsd(PEAK, total, decay, warmup_steps=warm, decay_shape=shape,
                init_value=INIT, final_value=FINAL)
  d0 = total - decay
  check_points(sched, {
      0: INIT,
      warm // 2: INIT + (PEAK - INIT) * 0.5,
      warm: PEAK,
      500: PEAK,
      d0: PEAK,
      d0 + 1: ref_shape(shape, 1 / decay, PEAK, FINAL),
      d0 + decay // 4: ref_shape(shape, 0.25, PEAK, FINAL),
      d0 + decay // 2: ref_shape(shape, 0.5, PEAK, FINAL),
      total - 1: ref_shape(shape, (decay - 1) / decay, PEAK, FINAL),
      total: FINAL,
      total + 1: FINAL,
      10 * total: FINAL,
  })


@pytest.mark.parametrize("name,shape,param", [
    ("linear", "linear", None), ("cosine", "cosine", None),
    ("rex", "rex", 0.5), ("rex", "rex", 0.2), ("uba", "uba", 2.0),
    ("uba", "uba", 0.5), ("uba", "uba", 5.0)])
def test_warmup_then_decay_schedules(name, shape, param):
  total, warm = 1000, 100
  kwargs = dict(peak_value=PEAK, total_steps=total, warmup_steps=warm,
                init_value=INIT, final_value=FINAL)
  if name == "rex":
    kwargs["beta"] = param
  if name == "uba":
    kwargs["phi"] = param
  sched = S.get(name, **kwargs)
  d = total - warm
  check_points(sched, {
      0: INIT, 50: (INIT + PEAK) / 2, warm: PEAK,
      warm + d // 4: ref_shape(shape, 0.25, PEAK, FINAL, param),
      warm + d // 2: ref_shape(shape, 0.5, PEAK, FINAL, param),
      total - 9: ref_shape(shape, (d - 9) / d, PEAK, FINAL, param),
      total: FINAL, 5 * total: FINAL})


def test_uba_phi_2_is_cosine():
  steps = np.arange(0, 1200, 7)
  np.testing.assert_allclose(S.uba(1.0, 1000, 2.0, warmup_steps=50)(steps),
                             S.cosine(1.0, 1000, warmup_steps=50)(steps),
                             rtol=1e-5, atol=1e-7)


def test_constant():
  check_points(S.constant(0.5), {0: 0.5, 7: 0.5, 2**31 - 1: 0.5})


@pytest.mark.parametrize("shape", ["linear", "exp"])
def test_power(shape):
  a, b, tps, peak = 4.6, -0.51, 2048.0, 0.02
  total, warm, decay = 10_000, 100, 1_000
  sched = S.power(max_value=peak, a=a, b=b, tokens_per_step=tps,
                  total_steps=total, warmup_steps=warm, decay_steps=decay,
                  decay_shape=shape, final_value=1e-5)
  pw = lambda s: min(peak, a * (tps * s) ** b) if s > 0 else peak
  d0 = total - decay
  check_points(sched, {
      0: 0.0, warm // 2: pw(warm) / 2, warm: pw(warm), 5000: pw(5000),
      d0: pw(d0), d0 + decay // 2: ref_shape(shape, 0.5, pw(d0), 1e-5),
      total: 1e-5, total + 100: 1e-5})
  # max_value binds early in training when tokens are few.
  capped = S.power(max_value=1e-3, a=a, b=b, tokens_per_step=1.0,
                   total_steps=total)
  check_points(capped, {0: 1e-3, 1: 1e-3, 9000: min(1e-3, a * 9000**b)})
  # Without a decay the power law goes on past total_steps.
  open_ended = S.power(max_value=peak, a=a, b=b, tokens_per_step=tps,
                       total_steps=total)
  check_points(open_ended, {total: pw(total), 4 * total: pw(4 * total)})


def test_wsd_s_checkpoints_and_values():
  sched = S.wsd_s(1e-3, (12500, 25000, 50000), decay_fraction=0.1,
                  final_value=1e-4)
  assert sched.checkpoint_steps == (12500, 26250, 53750)
  check_points(sched, {
      0: 1e-3,
      11250: 1e-3,                                    # decay 1 starts
      11875: ref_shape("linear", 0.5, 1e-3, 1e-4),
      12500: 1e-3,                                    # resumed at the peak
      12499: ref_shape("linear", 1249 / 1250, 1e-3, 1e-4),
      12501: 1e-3,
      23750: 1e-3,                                    # decay 2 starts
      25000: ref_shape("linear", 0.5, 1e-3, 1e-4),
      26250 - 1: ref_shape("linear", 2499 / 2500, 1e-3, 1e-4),
      26250: 1e-3, 26251: 1e-3,
      48750: 1e-3,                                    # decay 3 starts
      53750 - 1: ref_shape("linear", 4999 / 5000, 1e-3, 1e-4),
      53750: 1e-4, 60000: 1e-4})


def test_wsd_s_decayed_value_at_each_checkpoint():
  """The model of budget i is the one at E_i after its decay's last update."""
  sched = S.wsd_s(1e-3, (12500, 25000, 50000), decay_fraction=0.1,
                  warmup_steps=100, decay_shape="inverse-linear",
                  final_value=1e-4)
  for end, budget in zip(sched.checkpoint_steps, (12500, 25000, 50000)):
    d = budget // 10
    np.testing.assert_allclose(
        sched(end - 1), ref_shape("inverse-linear", (d - 1) / d, 1e-3, 1e-4),
        rtol=RTOL)


def ref_wsd_s(peak, budgets, fraction, final, steps):
  """WSD-S with linear decays from PAPERS.md, in float64: the decay lengths
  are Python's ``round(fraction * B_i)`` (float64, ties to even)."""
  decays = [round(fraction * b) for b in budgets]
  ends = [b + sum(decays[:i]) for i, b in enumerate(budgets)]
  lrs = np.full(len(steps), float(peak))
  for end, d in zip(ends, decays):
    inside = (steps >= end - d) & (steps < end)
    lrs[inside] = final + (peak - final) * (1 - (steps[inside] - (end - d)) / d)
  lrs[steps >= ends[-1]] = final
  return tuple(ends), decays, lrs


WSD_S_STEPS = np.arange(4096)  # One array shape: one compile per budget count.
jit_eval = jax.jit(lambda sched, step: sched(step))
jit_checkpoints = jax.jit(lambda sched: sched.checkpoint_steps)


# Fractions num/den (num odd, den even) times budgets (den/2) * odd are exact
# ties n + 1/2; in float32 the decimal ones round either way.
TIES = [(1, 2), (1, 4), (3, 4), (3, 8), (1, 10), (3, 10), (7, 10), (1, 20),
        (3, 20), (7, 20), (9, 20)]


@st.composite
def wsd_s_args(draw):
  """A decay fraction and increasing budgets; half of them exact ties."""
  count = draw(st.integers(1, 4))
  if draw(st.booleans()):
    num, den = draw(st.sampled_from(TIES))
    top = 300 // den
    js = np.cumsum([draw(st.integers(0, top))] +
                   [draw(st.integers(1, top)) for _ in range(count - 1)])
    return num / den, tuple(int(den // 2 * (2 * j + 1)) for j in js)
  budgets = np.cumsum([draw(st.integers(2, 300))] +
                      [draw(st.integers(1, 300)) for _ in range(count - 1)])
  return draw(st.floats(0.01, 0.6)), tuple(int(b) for b in budgets)


@pytest.mark.slow
@example(args=(0.15, (190, 381, 763)))  # The example.
@example(args=(0.5, (381, 763)))        # Binary ties, 190.5 and 381.5.
@settings(max_examples=100, deadline=None, derandomize=True)
@given(wsd_s_args())
def test_property_wsd_s_eager_jit_and_checkpoints_agree(args):
  """Eager and jitted evaluation agree at every step, both follow the float64
  reference, and each decay ends exactly at its checkpoint step."""
  fraction, budgets = args
  peak, final = 1.0, 0.1
  ends, decays, want = ref_wsd_s(peak, budgets, fraction, final, WSD_S_STEPS)
  ok = all(e - d >= prev for e, d, prev in zip(ends, decays, (0,) + ends))
  assume(ok and ends[-1] + 2 < len(WSD_S_STEPS))
  sched = S.wsd_s(peak, budgets, fraction, final_value=final)
  assert sched.checkpoint_steps == ends
  assert tuple(int(e) for e in jit_checkpoints(sched)) == ends
  eager = np.asarray(sched(WSD_S_STEPS))
  traced = np.asarray(jit_eval(sched, WSD_S_STEPS))
  np.testing.assert_allclose(eager, traced, rtol=ULPS, atol=1e-30)
  np.testing.assert_allclose(eager, want, rtol=RTOL, atol=1e-7)
  for i, (end, d) in enumerate(zip(ends, decays)):
    if d == 0:
      continue
    assert eager[end - d] == np.float32(peak)  # The decay starts at the peak,
    # and its last step is one step of the decay short of final_value: the
    # decay reaches final_value exactly at ``end``.
    np.testing.assert_allclose(eager[end - 1], final + (peak - final) / d,
                               rtol=RTOL)
    if i < len(ends) - 1:
      assert eager[end] == np.float32(peak)  # Resumed at the peak.
      if ends[i + 1] - decays[i + 1] > end + 1:
        assert eager[end + 1] == np.float32(peak)
    else:
      assert eager[end] == eager[end + 1] == np.float32(final)


def test_wsd_s_population_uses_each_members_decay_lengths():
  """vmap over stacked WSD-S schedules whose fractions round at ties."""
  budgets = (190, 381, 763)
  members = [S.wsd_s(1.0, budgets, f, final_value=0.1)
             for f in (0.15, 0.5, 0.25, 0.1)]
  pop = S.stack(members)
  got = jax.jit(jax.vmap(lambda s: s(WSD_S_STEPS)))(pop)
  ends = jax.jit(jax.vmap(lambda s: jnp.stack(s.checkpoint_steps)))(pop)
  for m, member in enumerate(members):
    want_ends, _, want = ref_wsd_s(1.0, budgets, member.decay_fraction, 0.1,
                                   WSD_S_STEPS)
    assert tuple(np.asarray(ends[m]).tolist()) == want_ends
    np.testing.assert_allclose(got[m], member(WSD_S_STEPS), rtol=ULPS,
                               atol=1e-30)
    np.testing.assert_allclose(got[m], want, rtol=RTOL, atol=1e-7)


def test_wsd_s_built_from_traced_fraction_is_an_error():
  """The decay lengths are rounded on the host only: a traced fraction would
  need a second (float32) definition."""
  with pytest.raises(ValueError, match="decay_fraction"):
    jax.jit(lambda f: S.wsd_s(1.0, (100, 200), f)(3))(0.1)
  # A traced peak is fine (the lengths come from concrete arguments).
  g = jax.grad(lambda p: S.wsd_s(p, (100, 200), 0.1)(95))(2.0)
  assert g == pytest.approx(0.5)


def test_cyclic_cosine():
  sched = S.cyclic_cosine(1.0, (100, 300, 600), warmup_steps=20,
                          rewarm_steps=50, init_value=0.0, final_value=0.1)
  check_points(sched, {
      0: 0.0, 10: 0.5, 20: 1.0,
      60: ref_shape("cosine", 0.5, 1.0, 0.1),
      100: 0.1, 125: 0.55, 150: 1.0,
      225: ref_shape("cosine", 0.5, 1.0, 0.1),
      300: 0.1, 350: 1.0, 475: ref_shape("cosine", 0.5, 1.0, 0.1),
      600: 0.1, 900: 0.1})


@pytest.mark.parametrize("cool,anneal", [("cosine", "exp"),
                                         ("linear", "1-sqrt"),
                                         ("inverse-linear", "linear")])
def test_infinite(cool, anneal):
  sched = S.infinite(1.0, warmup_steps=10, cooldown_steps=90,
                     constant_value=0.25, total_steps=1000, anneal_steps=100,
                     final_value=0.01, cooldown_shape=cool, anneal_shape=anneal,
                     init_value=0.1)
  check_points(sched, {
      0: 0.1, 10: 1.0, 55: ref_shape(cool, 0.5, 1.0, 0.25), 100: 0.25,
      500: 0.25, 900: 0.25, 950: ref_shape(anneal, 0.5, 0.25, 0.01),
      1000: 0.01, 2000: 0.01})


def test_inverse_sqrt():
  check_points(S.inverse_sqrt(1.0, 100), {
      0: 0.0, 50: 0.5, 100: 1.0, 200: math.sqrt(100 / 200),
      400: math.sqrt(100 / 400)})
  check_points(S.inverse_sqrt(2.0, 10, timescale=40.0), {
      10: 2.0, 50: 2 * math.sqrt(40 / 80)})


@pytest.mark.parametrize("shape", S.DECAY_SHAPES)
def test_branch_equals_main_then_decays(shape):
  main = S.wsd(1e-3, 10_000, 1_000, warmup_steps=200, init_value=1e-5)
  s_at, d = 4_000, 500
  br = S.branch(main, at_step=s_at, decay_steps=d, decay_shape=shape,
                final_value=1e-5)
  before = np.arange(0, s_at + 1, 13)
  np.testing.assert_array_equal(br(before), main(before))
  start = float(main(s_at))
  check_points(br, {s_at: start,
                    s_at + d // 2: ref_shape(shape, 0.5, start, 1e-5),
                    s_at + d: 1e-5, 20_000: 1e-5})


def test_branch_from_warmup_decays_from_current_value():
  main = S.wsd(1.0, 1000, 100, warmup_steps=100)
  br = S.branch(main, at_step=50, decay_steps=50)
  check_points(br, {50: 0.5, 75: 0.25, 100: 0.0})
  with pytest.raises(ValueError, match="final_value"):
    S.branch(main, at_step=50, decay_steps=50, final_value=0.8)


def test_splice():
  first, second = S.constant(1.0), S.linear(2.0, 100)
  check_points(S.splice(first, 30, second), {0: 1.0, 29: 1.0, 30: 1.4,
                                             50: 1.0, 100: 0.0})


def test_tabulated():
  check_points(S.tabulated([3.0, 2.0, 1.0]), {0: 3.0, 1: 2.0, 2: 1.0, 99: 1.0})


# --- JAX transformations ------------------------------------------------------


def test_jit_compiles_once_for_numeric_changes():
  f = jax.jit(lambda sched, step: sched(step))
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, duration, **kw: compiles.append(event)
      if event == "/jax/core/compile/backend_compile_duration" else None)
  try:
    a = S.wsd(1e-3, 1000, 100, warmup_steps=10)
    b = S.wsd(5e-3, 2000, 300, warmup_steps=50, final_value=1e-5)
    np.testing.assert_allclose(f(a, 950), a(950), rtol=RTOL)
    first = len(compiles)
    np.testing.assert_allclose(f(b, 1900), b(1900), rtol=RTOL)
    assert len(compiles) == first  # new numbers: no new program
    f(S.wsd(1e-3, 1000, 100, decay_shape="cosine"), 3)  # static change
    assert len(compiles) > first
  finally:
    jax.monitoring.clear_event_listeners()


def test_vmap_over_stacked_peaks():
  peaks = np.geomspace(1e-4, 1e-2, 16)
  pop = S.stack([S.wsd(float(p), 1000, 200, warmup_steps=10) for p in peaks])
  got = jax.jit(jax.vmap(lambda s: s(900)))(pop)
  np.testing.assert_allclose(got, peaks * 0.5, rtol=RTOL)
  with pytest.raises(ValueError, match="static"):
    S.stack([S.wsd(1.0, 10, 2), S.wsd(1.0, 10, 2, decay_shape="cosine")])


def test_grad_wrt_peak():
  def lr(peak, step):
    return S.wsd(peak, 1000, 200, warmup_steps=100)(step)
  assert jax.grad(lr)(2.0, 50) == pytest.approx(0.5)
  assert jax.grad(lr)(2.0, 500) == pytest.approx(1.0)
  assert jax.grad(lr)(2.0, 950) == pytest.approx(0.25)
  sched = S.cosine(1.0, 100)
  # Gradient w.r.t. the whole pytree (integer step leaves get float0).
  g = jax.grad(lambda s: s(50), allow_int=True)(sched)
  assert g.peak_value == pytest.approx(0.5, rel=1e-5)


def test_optax_sgd_applies_the_scheduled_lr():
  sched = S.wsd(0.1, 10, 5, warmup_steps=2)
  tx = optax.sgd(learning_rate=sched)
  params = jnp.zeros(3)
  state = tx.init(params)
  grads = jnp.array([1.0, -2.0, 0.5])
  for step in range(12):
    updates, state = tx.update(grads, state, params)
    np.testing.assert_allclose(updates, -float(sched(step)) * grads, rtol=1e-6)
  for make in (optax.adamw, optax.inject_hyperparams(optax.adamw)):
    tx = make(learning_rate=sched)
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    assert np.all(updates == 0.0)  # step 0 of the warmup has lr 0
    updates, state = tx.update(grads, state, params)
    # Adam's first steps move each coordinate by about lr * sign(grad).
    np.testing.assert_allclose(updates, -0.05 * np.sign(grads), rtol=1e-3)
  assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.05)


def test_large_steps_do_not_overflow():
  big = 2**31 - 1
  sched = S.wsd(1.0, big, 1000)
  np.testing.assert_allclose(sched(np.array([big - 1000, big - 500, big])),
                             [1.0, 0.5, 0.0], rtol=1e-6)
  assert sched(np.int64(big)) == 0.0
  assert np.isfinite(S.wsd_s(1.0, (10, 20)).__call__(big))


# --- configs and the registry -------------------------------------------------


ALL = [
    S.constant(0.1), S.linear(1.0, 100, warmup_steps=5),
    S.cosine(1.0, 100, final_value=0.1), S.wsd(1.0, 100, 20),
    S.rex(1.0, 100, beta=0.3), S.uba(1.0, 100, phi=1.5),
    S.power(0.02, 4.6, -0.51, 1024.0, 100, decay_steps=10),
    S.wsd_s(1.0, (10, 20, 40)), S.cyclic_cosine(1.0, (10, 30), rewarm_steps=5),
    S.infinite(1.0, 5, 10, 0.5, 100, 10, 0.05), S.inverse_sqrt(1.0, 10),
    S.branch(S.wsd(1.0, 100, 20), 50, 10, "1-sqrt"),
    S.splice(S.branch(S.constant(1.0), 20, 10), 30, S.constant(1.0)),
    S.tabulated([1.0, 0.5]),
]


@pytest.mark.parametrize("sched", ALL, ids=lambda s: s.name)
def test_config_round_trip(sched):
  import json
  cfg = json.loads(json.dumps(S.to_config(sched)))
  again = S.from_config(cfg)
  steps = np.arange(0, 120, 3)
  np.testing.assert_array_equal(again(steps), sched(steps))
  assert jax.tree.structure(again) == jax.tree.structure(sched)


def test_tree_structures_tell_schedule_classes_apart():
  """``jax.jit`` caches executables by tree structure, so two classes with the
  same fields (linear and cosine) must not have equal structures: with
  ``register_dataclass`` nodes they compare equal and jit at times ran
  linear's executable for a cosine schedule."""
  lin, cos = S.linear(1.0, 10), S.cosine(1.0, 10)
  assert jax.tree.structure(lin) != jax.tree.structure(cos)
  for a in ALL:
    for b in ALL:
      if type(a) is not type(b):
        assert jax.tree.structure(a) != jax.tree.structure(b), (a, b)
  steps = np.arange(12)
  for sched in (lin, cos, lin, cos):
    np.testing.assert_allclose(jit_eval(sched, steps), sched(steps),
                               rtol=ULPS, atol=1e-7)


def test_every_registered_schedule_is_tested():
  assert {s.name for s in ALL} == set(S.SCHEDULES)


def test_get_unknown_lists_names():
  with pytest.raises(ValueError, match="wsd_s") as e:
    S.get("nope")
  assert "'nope'" in str(e.value) and "cyclic_cosine" in str(e.value)
  with pytest.raises(ValueError, match="decay_stepz"):
    S.get("wsd", peak_value=1.0, total_steps=10, decay_stepz=2)


def test_from_flat_config_dict():
  import ml_collections
  cfg = ml_collections.ConfigDict(dict(name="wsd", peak_value=1e-3,
                                       total_steps=100, decay_steps=10))
  assert S.from_config(cfg)(95) == pytest.approx(5e-4)


# --- validation ---------------------------------------------------------------


@pytest.mark.parametrize("build,param", [
    (lambda: S.wsd(-1.0, 100, 10), "peak_value"),
    (lambda: S.wsd(float("inf"), 100, 10), "peak_value"),
    (lambda: S.wsd(0.0, 100, 10), "peak_value"),
    (lambda: S.wsd(1.0, 100, 10.5), "decay_steps"),
    (lambda: S.wsd(1.0, -100, 10), "total_steps"),
    (lambda: S.wsd(1.0, 100, 60, warmup_steps=50), "total_steps"),
    (lambda: S.wsd(1.0, 100, 10, decay_shape="sqrt"), "decay_shape"),
    (lambda: S.wsd(1.0, 100, 10, final_value=2.0), "final_value"),
    (lambda: S.wsd(1.0, 100, 10, decay_shape="exp"), "final_value"),
    (lambda: S.wsd(1.0, 100, 10, init_value=2.0), "init_value"),
    (lambda: S.cosine(1.0, 100, warmup_steps=101), "total_steps"),
    (lambda: S.rex(1.0, 100, beta=0.0), "beta"),
    (lambda: S.uba(1.0, 100, phi=-1.0), "phi"),
    (lambda: S.power(0.02, 4.6, 0.5, 1.0, 100), "b"),
    (lambda: S.wsd_s(1.0, (20, 10)), "budgets"),
    (lambda: S.wsd_s(1.0, (100, 110), decay_fraction=1.5), "decay_fraction"),
    (lambda: S.wsd_s(1.0, (100,), 0.5, warmup_steps=60), "warmup_steps"),
    (lambda: S.wsd_s(1.0, (100,), decay_fraction=0.0), "decay_fraction"),
    (lambda: S.cyclic_cosine(1.0, (100, 120), rewarm_steps=30), "cycle_ends"),
    (lambda: S.infinite(1.0, 10, 10, 2.0, 100, 10, 0.1), "constant_value"),
    (lambda: S.infinite(1.0, 10, 10, 0.5, 100, 10, 0.0), "final_value"),
    (lambda: S.inverse_sqrt(1.0, 0), "timescale"),
    (lambda: S.branch(S.constant(1.0), 10, 0), "decay_steps"),
    (lambda: S.constant(float("nan")), "value"),
    (lambda: S.tabulated([1.0, float("nan")]), "values"),
])
def test_invalid_arguments_name_the_parameter(build, param):
  with pytest.raises(ValueError, match=param):
    build()


# --- properties ---------------------------------------------------------------

steps_st = st.integers(min_value=1, max_value=100_000)
value_st = st.floats(min_value=1e-6, max_value=10.0)
frac_st = st.floats(min_value=0.0, max_value=1.0)
shape_st = st.sampled_from(S.DECAY_SHAPES)


KINDS = sorted(set(S.SCHEDULES) - {"tabulated", "splice"})


@st.composite
def valid_kwargs(draw, kind):
  """Keyword arguments of ``S.get(kind, ...)`` that DESIGN.md allows."""
  peak = draw(value_st)
  total = draw(steps_st)
  warm = draw(st.integers(0, total))
  init = peak * draw(frac_st)
  shape = draw(shape_st)
  final = peak * draw(frac_st) * 0.99
  if shape in ("exp", "inverse-linear"):
    final = max(final, peak * 1e-3)
  common = dict(peak_value=peak, warmup_steps=warm, init_value=init)
  if kind == "constant":
    return dict(value=peak)
  if kind in ("linear", "cosine"):
    return dict(common, total_steps=total, final_value=final)
  if kind == "rex":
    return dict(common, total_steps=total, final_value=final,
                beta=draw(st.floats(0.01, 5.0)))
  if kind == "uba":
    return dict(common, total_steps=total, final_value=final,
                phi=draw(st.floats(0.01, 10.0)))
  if kind == "wsd":
    return dict(common, total_steps=total, final_value=final,
                decay_steps=draw(st.integers(0, total - warm)),
                decay_shape=shape)
  if kind == "power":
    return dict(max_value=peak, a=draw(st.floats(0.1, 10.0)),
                b=draw(st.floats(-1.0, -0.05)),
                tokens_per_step=draw(st.floats(1.0, 1e6)), total_steps=total,
                warmup_steps=warm, decay_steps=draw(st.integers(0, total - warm)),
                decay_shape=draw(st.sampled_from(["linear", "cosine", "1-sqrt"])),
                final_value=0.0)
  if kind == "wsd_s":
    b1 = draw(st.integers(max(warm, 1) * 2, 200_000))
    return dict(common, budgets=(b1, b1 * 2, b1 * 4),
                decay_fraction=draw(st.floats(0.01, 0.5)),
                warmup_steps=min(warm, b1 // 2), decay_shape=shape,
                final_value=final)
  if kind == "cyclic_cosine":
    rewarm = draw(st.integers(0, 100))
    ends = (warm + draw(steps_st),)
    ends += (ends[0] + rewarm + draw(steps_st),)
    return dict(common, cycle_ends=ends, rewarm_steps=rewarm,
                final_value=final)
  if kind == "infinite":
    cool = draw(st.integers(0, total - warm))
    anneal = draw(st.integers(0, total - warm - cool))
    const = max(peak * draw(frac_st), peak * 1e-2)
    return dict(common, cooldown_steps=cool, constant_value=const,
                total_steps=total, anneal_steps=anneal,
                final_value=const * draw(st.floats(1e-3, 1.0)),
                cooldown_shape=draw(shape_st), anneal_shape=shape)
  if kind == "inverse_sqrt":
    return dict(common, timescale=float(max(warm, 1)))
  assert kind == "branch", kind
  base = S.wsd(peak, 2 * total + 1, 0, warm, "linear", init, 0.0)
  return dict(base=base, at_step=draw(st.integers(warm, 2 * total)),
              decay_steps=draw(steps_st), decay_shape=shape, final_value=final)


@st.composite
def valid_schedules(draw):
  kind = draw(st.sampled_from(KINDS))
  return S.get(kind, **draw(valid_kwargs(kind)))


def _bounds(sched):
  if sched.name == "power":
    return 0.0, sched.max_value
  if sched.name == "inverse_sqrt":  # decays towards 0
    return 0.0, sched.peak_value
  if sched.name == "constant":
    return sched.value, sched.value
  base = sched.base if sched.name == "branch" else sched
  init = getattr(base, "init_value", 0.0)
  final = min(getattr(sched, "final_value", init), init)
  return final, base.peak_value


def _warmup_end(sched):
  base = sched.base if sched.name == "branch" else sched
  return getattr(base, "warmup_steps", 0)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@pytest.mark.slow
@given(valid_schedules(), st.integers(0, 2**31 - 1))
def test_property_values_bounded_and_monotone(sched, far_step):
  horizon = max(getattr(sched, "total_steps", 0),
                max(getattr(sched, "checkpoint_steps", (0,))),
                max(getattr(sched, "cycle_ends", (0,))),
                getattr(sched, "end_step", 0))
  steps = np.sort(np.concatenate([  # One shape: no recompiles.
      np.linspace(0, horizon + 10, 400).astype(np.int64),
      [far_step, 2**31 - 1]]))
  lrs = np.asarray(jit_eval(sched, steps), np.float64)
  lo, hi = _bounds(sched)
  # Eager and traced evaluation share one definition of every boundary (the
  # values may differ in the last bits: XLA fuses the traced arithmetic).
  np.testing.assert_allclose(np.asarray(sched(steps), np.float64), lrs,
                             rtol=ULPS, atol=ULPS * hi)
  assert np.all(np.isfinite(lrs)), sched
  assert np.all(lrs >= lo * (1 - 1e-5) - 1e-12), (sched, lrs.min(), lo)
  assert np.all(lrs <= hi * (1 + 1e-5)), (sched, lrs.max(), hi)
  if sched.name not in ("wsd_s", "cyclic_cosine"):
    after = steps >= _warmup_end(sched)
    diffs = np.diff(lrs[after])
    assert np.all(diffs <= hi * 1e-5), (sched, diffs.max())


def bad_value_st():
  """Not a positive finite number."""
  return st.one_of(st.floats(-10.0, 0.0),
                   st.sampled_from([math.nan, math.inf, -math.inf]))


def bad_steps_st():
  """Not a step count: negative, fractional or beyond 2**31-1."""
  return st.one_of(st.integers(-10**6, -1),
                   st.integers(0, 10**5).map(lambda n: n + 0.5),
                   st.integers(2**31, 2**40))


def bad_shape_st():
  return st.one_of(st.sampled_from(["sqrt", "rex", "uba", "Linear", ""]),
                   st.text(max_size=8)).filter(
                       lambda x: x not in S.DECAY_SHAPES)


def above_st(start):
  """A value above ``start`` (a decay's start value)."""
  return st.floats(1e-4, 10.0).map(lambda r: start * (1 + r) + 1e-6)


def decay_start_value(kind, kw):
  """The value the (last) decay of ``S.get(kind, **kw)`` starts from."""
  if kind == "infinite":
    return kw["constant_value"]
  if kind == "branch":
    return float(kw["base"](kw["at_step"]))
  if kind == "power":
    tokens = kw["tokens_per_step"] * (kw["total_steps"] - kw["decay_steps"])
    return min(kw["max_value"], kw["a"] * tokens**kw["b"]) if tokens else \
        kw["max_value"]
  return kw["peak_value"]


def invalid_values(kind, kw):
  """For each parameter of ``kw``, a strategy of values that make it invalid
  while every other argument stays valid."""
  out = {}
  negative = st.floats(-10.0, -1e-9)
  if "peak_value" in kw:
    out["peak_value"] = bad_value_st()
  if "init_value" in kw:
    out["init_value"] = st.one_of(negative, above_st(kw["peak_value"]))
  if "final_value" in kw:
    if kind == "power" and kw["decay_steps"] == 0:
      out["final_value"] = negative  # no decay: any final_value >= 0 is valid
    else:
      out["final_value"] = st.one_of(negative, above_st(decay_start_value(
          kind, kw)))
  if "warmup_steps" in kw:
    out["warmup_steps"] = bad_steps_st()
  if "total_steps" in kw:
    used = sum(kw.get(k, 0) for k in ("warmup_steps", "decay_steps",
                                       "cooldown_steps", "anneal_steps"))
    out["total_steps"] = (st.one_of(bad_steps_st(), st.integers(0, used - 1))
                          if used else bad_steps_st())
  if "decay_steps" in kw:
    out["decay_steps"] = bad_steps_st()
    if "total_steps" in kw:
      room = kw["total_steps"] - kw["warmup_steps"] - kw["decay_steps"]
      out["decay_steps"] = st.one_of(out["decay_steps"], st.integers(
          1, 100).map(lambda k: kw["decay_steps"] + room + k))
    if kind == "branch":
      out["decay_steps"] = st.one_of(out["decay_steps"], st.just(0))
  if "decay_shape" in kw:
    out["decay_shape"] = bad_shape_st()
  if kind == "constant":
    out["value"] = st.one_of(negative, st.sampled_from([math.nan, math.inf]))
  if kind == "rex":
    out["beta"] = st.one_of(st.floats(-5.0, 0.0), st.just(math.nan))
  if kind == "uba":
    out["phi"] = st.one_of(st.floats(-5.0, 0.0), st.just(math.nan))
  if kind == "power":
    for k in ("max_value", "a", "tokens_per_step"):
      out[k] = bad_value_st()
    out["b"] = st.one_of(st.floats(0.0, 5.0), st.just(math.nan))
  if kind == "wsd_s":
    b = kw["budgets"]
    out["budgets"] = st.sampled_from([(), (b[1], b[0]), (b[0], b[0]),
                                      (-b[0], b[1]), (b[0] + 0.5,)])
    out["decay_fraction"] = st.one_of(
        st.floats(-1.0, 0.0), st.floats(1.0, 10.0, exclude_min=True),
        st.sampled_from([math.nan, math.inf]))
    first_start = b[0] - round(kw["decay_fraction"] * b[0])
    out["warmup_steps"] = st.one_of(out["warmup_steps"], st.integers(
        first_start + 1, first_start + 100))
  if kind == "cyclic_cosine":
    e0 = kw["cycle_ends"][0]
    out["cycle_ends"] = st.sampled_from(
        [(), (-1,), (e0, e0 + kw["rewarm_steps"] - 1), (e0, e0 - 1)])
    out["rewarm_steps"] = bad_steps_st()
  if kind == "infinite":
    out["constant_value"] = st.one_of(st.floats(-1.0, 0.0),
                                      above_st(kw["peak_value"]))
    out["cooldown_shape"] = out["anneal_shape"] = bad_shape_st()
    out["cooldown_steps"] = out["anneal_steps"] = bad_steps_st()
  if kind == "inverse_sqrt":
    out["timescale"] = st.one_of(st.floats(-10.0, 0.0), st.just(math.nan))
  if kind == "branch":
    out["at_step"] = bad_steps_st()
    out["base"] = st.sampled_from([1.0, "wsd", {"peak_value": 1.0}])
  return out


def names(param, message):
  """Whether ``message`` names ``param`` as DESIGN.md asks: it starts with
  the name (``"peak_value must ..."``) or quotes it (``"... total_steps=9"``)."""
  return bool(re.match(rf"{param}(\[\d+\])?[ :]", message) or
              re.search(rf"(^|\s){param}=", message))


# Every parameter of every schedule, as ``invalid_values`` knows them.
INVALID_CASES = [
    ("constant", "value"),
    *[(k, p) for k in ("linear", "cosine", "rex", "uba", "wsd") for p in (
        "peak_value", "init_value", "final_value", "warmup_steps",
        "total_steps")],
    ("rex", "beta"), ("uba", "phi"), ("wsd", "decay_steps"),
    ("wsd", "decay_shape"),
    *[("power", p) for p in ("max_value", "a", "b", "tokens_per_step",
                             "total_steps", "warmup_steps", "decay_steps",
                             "decay_shape", "final_value")],
    *[("wsd_s", p) for p in ("peak_value", "budgets", "decay_fraction",
                             "warmup_steps", "decay_shape", "init_value",
                             "final_value")],
    *[("cyclic_cosine", p) for p in ("peak_value", "cycle_ends",
                                     "warmup_steps", "rewarm_steps",
                                     "init_value", "final_value")],
    *[("infinite", p) for p in ("peak_value", "warmup_steps",
                                "cooldown_steps", "constant_value",
                                "total_steps", "anneal_steps", "final_value",
                                "cooldown_shape", "anneal_shape",
                                "init_value")],
    *[("inverse_sqrt", p) for p in ("peak_value", "warmup_steps", "timescale",
                                    "init_value")],
    *[("branch", p) for p in ("base", "at_step", "decay_steps", "decay_shape",
                              "final_value")],
]


def test_invalid_cases_cover_every_parameter():
  for kind in KINDS:
    fields = {f.name for f in dataclasses.fields(S.SCHEDULES[kind]) if f.init}
    assert {p for k, p in INVALID_CASES if k == kind} == fields, kind


@pytest.mark.parametrize("kind,param", INVALID_CASES)
@settings(max_examples=8, deadline=None, derandomize=True)
@given(data=st.data())
def test_property_invalid_arguments_raise_naming_the_parameter(kind, param,
                                                              data):
  """Valid arguments build a schedule with finite values; the same arguments
  with ``param`` made invalid raise ``ValueError`` naming it and its value."""
  kw = data.draw(valid_kwargs(kind), label="valid kwargs")
  sched = S.get(kind, **kw)
  assert np.all(np.isfinite(np.asarray(sched(np.arange(0, 400, 3)))))
  value = data.draw(invalid_values(kind, kw)[param], label="invalid value")
  with pytest.raises(ValueError) as e:
    S.get(kind, **{**kw, param: value})
  message = str(e.value)
  assert names(param, message), (param, value, message)
  if not isinstance(value, (tuple, dict)):
    assert repr(value) in message, (param, value, message)


def test_warmup_from_a_tiny_init_to_a_large_peak_is_exact_at_both_ends():
  """Step 0 gives init_value and the warmup's end the peak, to float32
  rounding, however far apart they are (no cancellation)."""
  init, peak = 0.01715971479602167, 8.785773975563096
  sched = S.wsd(peak, 3, 0, warmup_steps=1, init_value=init)
  np.testing.assert_array_equal(sched(np.array([0, 1])),
                                np.float32([init, peak]))
  decay = S.branch(sched, at_step=1, decay_steps=4, final_value=1e-4)
  np.testing.assert_array_equal(decay(np.array([1, 5])),
                                np.float32([peak, 1e-4]))
