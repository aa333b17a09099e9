"""The river-valley study (Wen et al., arXiv 2410.05192) on the bigram corpus.

    python -m experiments.river_valley --workdir=DIR [--quick]

Trains WSD (main run + decay branches), cosine, WSD-S and cyclic cosine
runs over several seeds, then writes DIR/report.md with every figure (PNG)
and table (Markdown + JSON) and DIR/claims.json
(``wsd_jax.studies.river_valley_report``). Rerunning reuses finished runs.
Settings: configs/river_valley.py.
"""

from absl import flags

from configs import river_valley as river_valley_config
from experiments import cli
from wsd_jax.studies import river_valley_report


@cli.friendly_errors
def main(argv):
  del argv
  workdir = flags.FLAGS.workdir
  result = river_valley_report.run(cli.study_config(river_valley_config),
                                   workdir)
  for c in result["claims"]:
    print(f"[river_valley] {c['verdict'].upper()}: {c['claim']}")
  print(f"[river_valley] report: {workdir}/report.md "
        f"({result['wall_time_s']['total_s']:.0f} s)")


if __name__ == "__main__":
  cli.define_study_flags("configs/river_valley.py")
  cli.run(main)
