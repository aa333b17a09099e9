r"""Sets AlgoPerf-style targets (run once per workload; never in CI).

  python -m experiments.algoperf_targets --workdir=/tmp/algoperf_targets \
      --workloads=bigram_quick,bigram,digits [--trials=64] [--seeds=10]

Writes each workload's target with its provenance into
``wsd_jax/studies/algoperf/targets.json`` (``--out`` to write elsewhere).
"""

from absl import flags

from experiments import cli
from wsd_jax.studies.algoperf import app

_WORKLOADS = flags.DEFINE_list("workloads", ["bigram"], "Workloads.")
_TRIALS = flags.DEFINE_integer("trials", 64, "Quasirandom search trials.")
_SEEDS = flags.DEFINE_integer("seeds", 10, "Seeds of the best point.")
_OUT = flags.DEFINE_string("out", None, "targets.json to update (default: "
                           "the committed one).")


@cli.friendly_errors
def main(argv):
  del argv
  for name, entry in app.set_targets(flags.FLAGS.workdir, _WORKLOADS.value,
                                     _TRIALS.value, _SEEDS.value,
                                     _OUT.value).items():
    print(f"{name}: target {entry['metric']} = {entry['target']:.5f} "
          f"({entry['provenance']['wall_s']:.0f} s)")


if __name__ == "__main__":
  cli.define_workdir("Where the target-setting runs go.")
  cli.run(main)
