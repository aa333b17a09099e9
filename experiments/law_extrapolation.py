r"""Loss-curve laws fitted on short runs, asked to predict runs 3x longer.

  python -m experiments.law_extrapolation --config=configs/law_extrapolation.py \
      --workdir=/tmp/law_extrapolation [--quick]

Trains (or resumes) the protocol's runs in WORKDIR/runs, fits every fitting
variant of each law on the short runs, scores it on them and on the long
held-out runs, checks the coverage of the kept variant's bootstrap band and
writes law_extrapolation.{md,json,png} into WORKDIR
(``wsd_jax.studies.law_extrapolation``).
"""

from absl import flags

from configs import law_extrapolation as law_extrapolation_config
from experiments import cli
from wsd_jax.runs import rundir
from wsd_jax.studies import law_extrapolation


@cli.friendly_errors
def main(argv):
  del argv
  workdir = flags.FLAGS.workdir
  result = law_extrapolation.run(cli.study_config(law_extrapolation_config),
                                 workdir)
  print(law_extrapolation.variants_markdown(result["variants"]))
  print(law_extrapolation.coverage_markdown(result["coverage"]))
  info = result["info"]
  print(f"wall: train {info['train_wall_s']:.0f} s, analysis "
        f"{info['analysis_wall_s']:.0f} s, total {info['total_wall_s']:.0f} s")
  for ext in ("md", "json", "png"):
    print(f"wrote {rundir.join(workdir, f'law_extrapolation.{ext}')}")


if __name__ == "__main__":
  cli.define_study_flags("configs/law_extrapolation.py")
  cli.run(main)
