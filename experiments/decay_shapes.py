r"""Decay shapes and decay fractions (issue #15 item 6): does a 20% 1-sqrt
cooldown match cosine (Hägele et al., arXiv 2405.18392), and is the optimal
WSD decay fraction 10-20%, shrinking with run length, as the annealing law
predicts (Tissue et al., arXiv 2408.11029)? Trains every run of the study on
the byte-level text LM, writes DIR/report.md, DIR/results.json and
DIR/decay_shapes_{shapes,fractions}.png with the computed verdicts.

  python -m experiments.decay_shapes --workdir=/tmp/decay_shapes [--quick]

``--quick`` is the CI form. Rerunning resumes the runs and redoes the
analysis (``wsd_jax.studies.decay_shapes``).
"""

from absl import flags

from experiments import cli
from wsd_jax.studies import decay_shapes

_WORKDIR = cli.define_workdir("Study directory.")
_QUICK = flags.DEFINE_bool("quick", False, "A short version (CI).")


@cli.friendly_errors
def main(argv):
  del argv
  r = decay_shapes.run(_WORKDIR.value, quick=_QUICK.value)
  a, b = r["shapes"], r["fractions"]
  print(f"[decay_shapes] 20% 1-sqrt matches cosine: "
        f"{a['claim_1sqrt_matches_cosine']}")
  for m in b["per_length"]:
    print(f"[decay_shapes] {m['steps']} steps: optimal fraction "
          f"{m['optimum']:.3f} [{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]")
  print(f"[decay_shapes] optimum in [10%, 20%]: {b['in_range']}; shrinks "
        f"with length: {b['shrinks']}; law inside the interval: "
        f"{r['law_verdict']}")
  print(f"[decay_shapes] report: {_WORKDIR.value}/report.md "
        f"({r['wall_s']:.0f} s)")


if __name__ == "__main__":
  cli.run(main)
