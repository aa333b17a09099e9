r"""Prints the run tree of a main run and draws it (WORKDIR/plots/runs.png).

  python -m experiments.runs --workdir=/tmp/r [--out=FILE.png]

Only reads the run directory; when it is read-only, the figure goes to
``--out`` or ``./NAME_runs.png``.
"""

from absl import app, flags

from experiments import cli
from wsd_jax import reports, runs
from wsd_jax.runs import tree

_WORKDIR = flags.DEFINE_string("workdir", None, "Main run directory.",
                               required=True)
_OUT = flags.DEFINE_string("out", None,
                           "Figure path (default WORKDIR/plots/runs.png).")


@cli.friendly_errors
def main(argv):
  del argv
  root = runs.Run(_WORKDIR.value)
  print(tree.format_tree(root))
  try:
    png = reports.tree_figure(_WORKDIR.value, _OUT.value)
  except OSError:  # a read-only run directory
    png = reports.tree_figure(_WORKDIR.value, f"{root.name}_runs.png")
  print(f"\nwrote {png}")


if __name__ == "__main__":
  app.run(main)
