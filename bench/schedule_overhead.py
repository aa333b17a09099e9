r"""What evaluating the LR schedule inside the train step costs.

    python -m bench.schedule_overhead [--size=nano] [--steps=20] [--repeats=5]

(model flags as in ``bench.step_throughput``; ``--steps`` per timed block)

The same GPT step (``bench.step_throughput.build``) runs with a constant LR
and with WSD, cosine and WSD-S schedules (each its own compiled program: the
schedule is a pytree argument). Blocks of ``--steps`` steps alternate between
the schedules ``--repeats`` times in a rotating order; the fastest block of
each is compared, so machine noise does not count as schedule cost. Goal: <= 1%.
"""

from __future__ import annotations

from absl import app, flags

from bench import step_throughput as st
from wsd_jax import schedules

_REPEATS = flags.DEFINE_integer("repeats", 5, "Blocks per schedule.")


def schedules_to_compare(total: int = 100_000) -> dict:
  peak = 3e-4
  return {
      "constant": schedules.constant(peak),
      "wsd": schedules.wsd(peak, total, total // 5, warmup_steps=1000,
                           decay_shape="1-sqrt"),
      "cosine": schedules.cosine(peak, total, warmup_steps=1000,
                                 final_value=peak / 10),
      "wsd_s": schedules.wsd_s(peak, (total // 4, total // 2, total),
                               warmup_steps=1000),
  }


def main(argv):
  del argv
  b = st.build_from_flags()
  scheds = schedules_to_compare()
  for schedule in scheds.values():
    st.compile_and_warm(b, schedule, 2)
  names = list(scheds)
  best = {name: float("inf") for name in names}
  for r in range(_REPEATS.value):
    k = r % len(names)  # rotate the order: no schedule always runs first
    for name in names[k:] + names[:k]:
      best[name] = min(best[name], st.run_steps(b, scheds[name],
                                                st.STEPS.value))
  print(st.describe(b))
  base = best["constant"]
  for name, seconds in best.items():
    print(f"schedule_overhead size={st.SIZE.value} {name:9s}: step "
          f"{1e3 * seconds / st.STEPS.value:8.3f} ms, "
          f"{100 * (seconds / base - 1):+6.2f}% vs constant")


if __name__ == "__main__":
  app.run(main)
