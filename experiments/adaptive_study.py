r"""The adaptive-methods study: refined schedules, Adam-HD, schedule-free
AdamW against WSD on the bigram corpus, FedHyper-G against FedAvg; writes
DIR/report.md and DIR/results.json with verdicts.

  python -m experiments.adaptive_study --workdir=/tmp/adaptive [--quick]

``--quick`` (150 steps, 30 federation rounds) takes about two minutes on two
CPU cores. Rerunning resumes the runs.
"""

from absl import flags

from experiments import cli
from wsd_jax.adaptive import study

_WORKDIR = cli.define_workdir("Study directory.")
_QUICK = flags.DEFINE_bool("quick", False, "A short version (CI).")


@cli.friendly_errors
def main(argv):
  del argv
  results = study.run_study(_WORKDIR.value, quick=_QUICK.value)
  for v in results["verdicts"]:
    print(f"{v['run']}: {v['verdict']}")
  print(f"report: {_WORKDIR.value}/report.md")


if __name__ == "__main__":
  cli.run(main)
