r"""WSD vs WSD-S vs cyclic cosine at equal compute, GPT on stdlib text.

  python -m experiments.wsd_s --config=configs/wsd_s.py:size=nano \
      --workdir=/tmp/wsd_s [--quick]

For budgets B_1 < B_2 < B_3 (decays d_i = 10% of B_i, to 0.1 x peak): WSD is
one constant main run with a decay branch per budget, WSD-S one
``schedules.wsd_s`` run, cyclic cosine one run decaying at WSD-S's
checkpoints; all three spend B_3 + d_1 + d_2 steps. Writes
wsd_s.{md,json,png} into WORKDIR (``wsd_jax.studies.wsd_s``); rerunning
reuses finished runs.
"""

from absl import flags

from configs import wsd_s as wsd_s_config
from experiments import cli
from wsd_jax.studies import wsd_s


@cli.friendly_errors
def main(argv):
  del argv
  result = wsd_s.run(cli.study_config(wsd_s_config), flags.FLAGS.workdir)
  print(wsd_s.markdown(result["rows"]))
  print(f"wall: {result['info']['wall_s']:.0f} s")


if __name__ == "__main__":
  cli.define_study_flags("configs/wsd_s.py")
  cli.run(main)
