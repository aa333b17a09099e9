r"""Validates the loss-curve laws on real text: fit on two runs, predict others.

  python -m experiments.law_study --config=configs/law_study.py \
      --workdir=/tmp/law_study [--quick]

Trains (or resumes) the study's runs in WORKDIR/runs, fits each law on
``study.fit``, measures the noise floor (eval-set sampling error and the
constant run's jitter) and writes law_study.{md,json,png} and report.md into
WORKDIR (``wsd_jax.studies.law_study``).
"""

from absl import flags

from configs import law_study as law_study_config
from experiments import cli
from wsd_jax.studies import law_study


@cli.friendly_errors
def main(argv):
  del argv
  workdir = flags.FLAGS.workdir
  result = law_study.run(cli.study_config(law_study_config), workdir)
  print(law_study.markdown(result["rows"]))
  for law, row in result["summary"].items():
    print(f"{law}: held-out mean {row['mean_rel_err']:.3%}, worst "
          f"{row['max_rel_err']:.3%}, min R^2 {row['min_r2']:.5f}")
  floor = result["noise"]
  print(f"noise floor: sigma {floor['sigma']:.3%} ({floor['limited_by']}); "
        f"jitter {floor['jitter']:.3%}, paired eval SE "
        f"{floor['max_paired_rel_se']:.3%}, absolute eval SE "
        f"{floor['sampling_rel_se']:.3%} ({floor['eval_tokens']:,} tokens)")
  for law, v in result["verdicts"].items():
    print(f"{law}: {v['ratio']:.1f}x the floor: {v['verdict']}")
  print(f"wall: train {result['info']['train_wall_s']:.0f} s, "
        f"total {result['total_wall_s']:.0f} s")


if __name__ == "__main__":
  cli.define_study_flags("configs/law_study.py")
  cli.run(main)
