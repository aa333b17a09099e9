r"""Prints the run tree of a main run and writes WORKDIR/plots/runs.png.

  python -m experiments.runs --workdir=/tmp/r
"""

from absl import app, flags

from experiments import cli
from wsd_jax.runs import tree

_WORKDIR = flags.DEFINE_string("workdir", None, "Main run directory.",
                               required=True)


@cli.friendly_errors
def main(argv):
  del argv
  table, png = tree.summarize(_WORKDIR.value)
  print(table)
  print(f"\nwrote {png}")


if __name__ == "__main__":
  app.run(main)
