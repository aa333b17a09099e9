r"""AlgoPerf-style comparison of LR schedules (DESIGN.md).

  python -m experiments.algoperf --workdir=/tmp/algoperf --quick      # CI
  python -m experiments.algoperf --workdir=/tmp/algoperf_qual \
      --workloads=bigram_quick,digits,mlp_text --studies=1 --trials=5  # CPU
  python -m experiments.algoperf --workdir=/tmp/algoperf              # full

Writes AlgoPerf's layout (targets.json, submissions/SUB/study_K/
WORKLOAD_jax/trial_I/eval_measurements.csv, and each study's clock.json),
time_to_targets.csv, scores.csv, performance_profile_{steps,seconds}.png,
curves_WORKLOAD.png, robustness.png, anytime.csv (with wsd_s) and report.md
into WORKDIR (``wsd_jax.studies.algoperf``); each study's best trial rerun
alone under alone/ (--rerun_best, the default except with --quick).
Rerunning resumes per (submission, study, workload).
"""

from absl import flags

from experiments import cli
from wsd_jax.studies.algoperf import app

_WORKLOADS = flags.DEFINE_list(
    "workloads", None, "Workloads (default: bigram, digits, mlp_text, "
    "gpt_nano; --quick: bigram_quick).")
_SUBMISSIONS = flags.DEFINE_list("submissions", None, "Submissions.")
_STUDIES = flags.DEFINE_integer("studies", None, "Studies (default 3).")
_TRIALS = flags.DEFINE_integer("trials", None, "Trials per study (default "
                               "5).")
_RERUN_BEST = flags.DEFINE_bool(
    "rerun_best", None, "Train each study's best trial again alone for its "
    "own seconds (default: on, off with --quick).")


@cli.friendly_errors
def main(argv):
  del argv
  result = app.run(flags.FLAGS.workdir, quick=flags.FLAGS.quick,
                   workloads=_WORKLOADS.value,
                   submissions=_SUBMISSIONS.value, studies=_STUDIES.value,
                   trials=_TRIALS.value, rerun_best=_RERUN_BEST.value)
  for r in result["scores"]:
    print(f"{r['submission']:>14}: score {r['score_steps']:.3f} (steps), "
          f"{r['score_seconds']:.3f} (seconds), "
          f"{r['workloads_reached']} workload(s) reached")
  print(f"wall: {result['info']['wall_s']:.0f} s")


if __name__ == "__main__":
  cli.define_workdir("Benchmark directory.")
  flags.DEFINE_bool("quick", False, "CI form: bigram_quick, 3 submissions, "
                    "1 study x 2 trials.")
  cli.run(main)
