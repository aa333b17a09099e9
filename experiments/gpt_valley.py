r"""Valley cross-sections and sharpness on GPT nano (issue #15 item 5):
trains a constant-LR main run per seed with stable checkpoints and a linear
decay branch, draws the loss along segments between checkpoints on a fixed
held-out set, measures the top Hessian eigenvalue (power iteration on
forward-over-reverse HVPs) along the paths, and writes DIR/report.md,
DIR/results.json and DIR/gpt_valley_{sections,sharpness}.png with the
computed verdicts.

  python -m experiments.gpt_valley --workdir=/tmp/gpt_valley [--quick]

``--quick`` (1-layer GPT, 2 seeds, 40 + 10 steps) is the CI form. Rerunning
resumes the runs and reuses the per-seed measurements
(``wsd_jax.studies.gpt_valley``).
"""

from absl import flags

from experiments import cli
from wsd_jax.studies import gpt_valley

_WORKDIR = cli.define_workdir("Study directory.")
_QUICK = flags.DEFINE_bool("quick", False, "A short version (CI).")


@cli.friendly_errors
def main(argv):
  del argv
  r = gpt_valley.run(_WORKDIR.value, quick=_QUICK.value)
  a = r["analysis"]
  for k in ("dip", "monotone", "sharpness_rises", "sharpness_falls",
            "precond_sharpness_rises", "precond_sharpness_falls"):
    print(f"[gpt_valley] {a[k]['claim']}: {a[k]['verdict']}")
  print(f"[gpt_valley] report: {_WORKDIR.value}/report.md "
        f"({r['wall_s']:.0f} s)")


if __name__ == "__main__":
  cli.run(main)
