r"""Forks a decay branch from a checkpoint of a main run.

  python -m experiments.branch --workdir=/tmp/r --from_step=400 \
      --decay_steps=80 [--decay_shape=1-sqrt] [--final_value=0] [--name=NAME] \
      [--eval_every=N] [--log_every=N]

The branch lives in WORKDIR/branches/NAME and trains from step S to S + D;
rerunning the same command resumes it. It keeps the main run's config
(WORKDIR/config.json) but for its schedule and the flags above.
"""

from absl import flags

from experiments import cli
from wsd_jax import train
from wsd_jax.train import distributed

_WORKDIR = cli.define_workdir("Main run directory.")
_FROM = flags.DEFINE_integer("from_step", None, "Checkpoint step to fork at.",
                             required=True)
_DECAY = flags.DEFINE_integer("decay_steps", None, "Length of the decay.",
                              required=True)
_SHAPE = flags.DEFINE_string("decay_shape", "linear", "Decay shape.")
_FINAL = flags.DEFINE_float("final_value", 0.0, "LR at the end of the decay.")
_NAME = flags.DEFINE_string("name", None, "Branch name (default from args).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Replace an existing branch of that name.")
_EVAL_EVERY = flags.DEFINE_integer(
    "eval_every", None, "Evaluate every N steps (default: the main run's "
    "train.eval_every).", lower_bound=1)
_LOG_EVERY = flags.DEFINE_integer(
    "log_every", None, "Log metrics every N steps (default: the main run's "
    "train.log_every).", lower_bound=1)


def train_overrides() -> dict:
  """The ``config.train`` fields the flags set for the branch."""
  return {k: v for k, v in (("eval_every", _EVAL_EVERY.value),
                            ("log_every", _LOG_EVERY.value)) if v is not None}


@cli.friendly_errors
def main(argv):
  del argv
  # On a pod slice / under SLURM every process runs this same command.
  distributed.initialize()
  summary = train.branch(_WORKDIR.value, _FROM.value, _DECAY.value,
                         _SHAPE.value, _FINAL.value, _NAME.value,
                         _OVERWRITE.value, train_overrides=train_overrides())
  print(f"{summary['workdir']}: step {summary['step']}, "
        f"eval_loss {summary.get('eval_loss', float('nan')):.5f}")


if __name__ == "__main__":
  cli.run(main)
