r"""Plots the whole schedule family on a common budget, a panel per schedule.

  python -m experiments.plot_schedules --out=schedules.png
"""

from absl import app, flags, logging

from wsd_jax import plots, schedules

FLAGS = flags.DEFINE_string("out", "schedules.png", "Output PNG path.")
_TOTAL = flags.DEFINE_integer("total_steps", 10_000, "Common budget in steps.")
_PEAK = flags.DEFINE_float("peak", 1e-3, "Peak learning rate.")


def family(total: int, peak: float) -> dict[str, schedules.Schedule]:
  """One instance of every schedule, on a budget of ``total`` steps."""
  warm, decay = total // 20, total // 5
  main = schedules.wsd(peak, total, decay, warm)
  third = total // 3
  budget = int(total / 4.3)  # budgets B, 2B, 4B end at 4.3 B with 10% decays
  return {
      "constant": schedules.constant(peak),
      "linear": schedules.linear(peak, total, warm),
      "cosine (to 0.1 peak)": schedules.cosine(peak, total, warm,
                                               final_value=0.1 * peak),
      "WSD, linear 20% decay": main,
      "WSD, 1-sqrt 20% decay": schedules.wsd(peak, total, decay, warm,
                                             "1-sqrt"),
      "WSD, square 20% decay": schedules.wsd(peak, total, decay, warm,
                                            "square"),
      "WSD, exp (WSDC, to 0.01 peak)": schedules.wsd(
          peak, total, decay, warm, "exp", final_value=0.01 * peak),
      "WSD, inverse-linear (to 0.1)": schedules.wsd(
          peak, total, decay, warm, "inverse-linear", final_value=0.1 * peak),
      "REX (beta=1/2)": schedules.rex(peak, total, warm),
      "UBA (phi=0.5)": schedules.uba(peak, total, 0.5, warm),
      "Power (a=4.6, b=-0.51)": schedules.power(
          peak, 4.6, -0.51, 2**20, total, warm, decay),
      "WSD-S (budgets B, 2B, 4B)": schedules.wsd_s(
          peak, (budget, 2 * budget, 4 * budget), 0.1, warm,
          final_value=0.1 * peak),
      "cyclic cosine (re-warm)": schedules.cyclic_cosine(
          peak, (third, 2 * third, total), warm, total // 50,
          final_value=0.1 * peak),
      "infinite (cooldown, anneal)": schedules.infinite(
          peak, warm, total // 5, 0.3 * peak, total, total // 10,
          0.01 * peak),
      "inverse sqrt": schedules.inverse_sqrt(peak, warm),
      "branch of WSD at 50%": schedules.branch(main, total // 2, total // 10,
                                               "1-sqrt"),
  }


def main(argv):
  del argv
  path = plots.schedule_grid(family(_TOTAL.value, _PEAK.value), _TOTAL.value,
                             FLAGS.value)
  logging.info("wrote %s", path)
  print(path)


if __name__ == "__main__":
  app.run(main)
