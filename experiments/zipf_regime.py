r"""A toy in the right regime (issue 15, item 2): a Zipfian bigram language,
a context-1 MLP LM and AdamW. Checks the regime (stable vs river slope, the
hill's share of the excess, whether the river runs out) and Wen et al.'s
order WSD-S <= WSD <= cyclic cosine at equal compute, each method at its
own best peak; every loss exact (population loss from the checkpoints).
Writes DIR/report.md, DIR/results.json and DIR/zipf_regime.png.

  python -m experiments.zipf_regime --workdir=/tmp/zipf_regime [--quick]

``--quick`` is the CI form. Rerunning resumes the runs and redoes the
analysis (``wsd_jax.studies.zipf_regime``).
"""

from absl import flags

from experiments import cli
from wsd_jax.studies import zipf_regime

_WORKDIR = cli.define_workdir("Study directory.")
_QUICK = flags.DEFINE_bool("quick", False, "A short version (CI).")


@cli.friendly_errors
def main(argv):
  del argv
  r = zipf_regime.run(_WORKDIR.value, quick=_QUICK.value)
  a = r["analysis"]
  g = a["regime"]
  print(f"[zipf_regime] stable slope {g['stable_slope']:+.4f}, river slope "
        f"{g['river_slope']:+.4f} nats/1k steps; hill share "
        f"{g['hill_share'][-1]:.1%} at step {g['steps'][-1]}")
  print(f"[zipf_regime] river has not run out: "
        f"{g['last_third']['verdict']}")
  for row in a["order"]["budgets"]:
    print(f"[zipf_regime] budget {row['budget']}: WSD-S <= WSD <= cyclic "
          f"cosine: {row['verdict']}")
  print(f"[zipf_regime] report: {_WORKDIR.value}/report.md "
        f"({r['wall_s']:.0f} s)")


if __name__ == "__main__":
  cli.run(main)
