r"""The adaptive-methods study: refined schedules, Adam-HD, schedule-free
AdamW and AutoLRS against tuned schedules (each method at its own best peak
LR, paired over seeds) on the bigram corpus and a byte-level MLP LM of the
stdlib docstrings, and FedHyper-G against FedAvg; writes DIR/report.md,
DIR/results.json and DIR/adaptive_*.png with computed verdicts.

  python -m experiments.adaptive_study --workdir=/tmp/adaptive [--quick]

``--quick`` (bigram only, 2 seeds, 3 peaks, 100 steps) is the CI form.
Rerunning resumes the runs and redoes the analysis
(``wsd_jax.studies.adaptive``, ``adaptive_report``).
"""

from absl import flags

from experiments import cli
from wsd_jax.studies import adaptive_report

_WORKDIR = cli.define_workdir("Study directory.")
_QUICK = flags.DEFINE_bool("quick", False, "A short version (CI).")


@cli.friendly_errors
def main(argv):
  del argv
  results = adaptive_report.run(_WORKDIR.value, quick=_QUICK.value)
  for c in results["claims"]:
    print(f"[adaptive] ({c['claim']}, {c['workload']}) {c['verdict']}")
  print(f"[adaptive] report: {_WORKDIR.value}/report.md "
        f"({results['wall_s']:.0f} s)")


if __name__ == "__main__":
  cli.run(main)
