r"""A fair equal-compute comparison of WSD (4 variants), WSD-S and cyclic
cosine on the river-valley bigram toy: every method at its own best peak LR
(chosen on selection seeds), compared on fresh evaluation seeds with paired
95% intervals; writes DIR/report.md, DIR/results.json and
DIR/fair_compare_{peaks,tuned}.png with the computed verdicts.

  python -m experiments.fair_compare --workdir=/tmp/fair_compare [--quick]

``--quick`` (3 peaks, budgets 40/80, 1 + 2 seeds) is the CI form. Rerunning
resumes the runs and redoes the analysis (``wsd_jax.studies.fair_compare``).
"""

from absl import flags

from experiments import cli
from wsd_jax.studies import fair_compare

_WORKDIR = cli.define_workdir("Study directory.")
_QUICK = flags.DEFINE_bool("quick", False, "A short version (CI).")


@cli.friendly_errors
def main(argv):
  del argv
  r = fair_compare.run(_WORKDIR.value, quick=_QUICK.value)
  a = r["analysis"]
  for b, v in zip(r["plan"]["budgets"], a["order_by_budget"]):
    print(f"[fair_compare] budget {b}: {fair_compare.PAPER_ORDER} "
          f"(tuned peaks): {v}")
  print(f"[fair_compare] over budgets: {a['verdict']}")
  print(f"[fair_compare] report: {_WORKDIR.value}/report.md "
        f"({r['wall_s']:.0f} s)")


if __name__ == "__main__":
  cli.run(main)
