r"""Forks a decay branch from a checkpoint of a main run.

  python -m experiments.branch --workdir=/tmp/r --from_step=400 \
      --decay_steps=80 [--decay_shape=1-sqrt] [--final_value=0] [--name=NAME]

The branch lives in WORKDIR/branches/NAME and trains from step S to S + D;
rerunning the same command resumes it.
"""

from absl import app, flags

from experiments import cli
from wsd_jax import train

_WORKDIR = flags.DEFINE_string("workdir", None, "Main run directory.",
                               required=True)
_FROM = flags.DEFINE_integer("from_step", None, "Checkpoint step to fork at.",
                             required=True)
_DECAY = flags.DEFINE_integer("decay_steps", None, "Length of the decay.",
                              required=True)
_SHAPE = flags.DEFINE_string("decay_shape", "linear", "Decay shape.")
_FINAL = flags.DEFINE_float("final_value", 0.0, "LR at the end of the decay.")
_NAME = flags.DEFINE_string("name", None, "Branch name (default from args).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Replace an existing branch of that name.")


@cli.friendly_errors
def main(argv):
  del argv
  summary = train.branch(_WORKDIR.value, _FROM.value, _DECAY.value,
                             _SHAPE.value, _FINAL.value, _NAME.value,
                             _OVERWRITE.value)
  print(f"{summary['workdir']}: step {summary['step']}, "
        f"eval_loss {summary.get('eval_loss', float('nan')):.5f}")


if __name__ == "__main__":
  app.run(main)
