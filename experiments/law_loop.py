r"""Predict, then choose: a fitted law proposes schedules; train and compare.

  python -m experiments.law_loop --config=configs/law_extrapolation.py \
      --workdir=/tmp/law_extrapolation [--quick]

Uses (and trains if missing) the runs of ``experiments.law_extrapolation``
in WORKDIR; fits ``loop.law`` on its short fit runs, lets it propose a
schedule per family in ``loop.families`` (``laws.optimize_schedule``),
trains each for the full budget and compares predicted and observed curves
and final losses with the held-out cosine and WSD runs; writes
law_loop.{md,json,png} into WORKDIR (``wsd_jax.studies.law_loop``).
"""

from absl import flags

from configs import law_extrapolation as law_extrapolation_config
from experiments import cli
from wsd_jax.runs import rundir
from wsd_jax.studies import law_loop


@cli.friendly_errors
def main(argv):
  del argv
  workdir = flags.FLAGS.workdir
  config = cli.study_config(law_extrapolation_config)
  result = law_loop.run(config, workdir)
  print(law_loop.markdown(result["rows"], float(config.study.level)))
  print(f"wall: {result['info']['wall_s']:.0f} s")
  for ext in ("md", "json", "png"):
    print(f"wrote {rundir.join(workdir, f'law_loop.{ext}')}")


if __name__ == "__main__":
  cli.define_study_flags("configs/law_extrapolation.py")
  cli.run(main)
