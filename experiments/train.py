r"""Trains a config into a run directory; rerunning the same command resumes.

  python -m experiments.train --config=configs/bigram.py --workdir=/tmp/r \
      [--config.train.steps=2000] [--from_branch=NAME]

``--from_branch=NAME`` is WSD-S: the main branch in ``--workdir``, stopped at
the fork step of ``branches/NAME``, continues from that branch's decayed state
at the main schedule's LR (no re-warmup).
"""

from absl import app, flags, logging
from ml_collections import config_flags

from wsd_jax.runs import branching
from wsd_jax.train import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", "configs/bigram.py",
                                          "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.",
                               required=True)
_FROM_BRANCH = flags.DEFINE_string(
    "from_branch", None, "WSD-S: continue from this branch's decayed state.")


def main(argv):
  del argv
  if _FROM_BRANCH.value:
    summary = branching.continue_from_branch(_CONFIG.value, _WORKDIR.value,
                                             _FROM_BRANCH.value)
  else:
    summary = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  for run in summary.get("members", [summary]):
    logging.info("done: %s step %d, eval_loss %s", run["workdir"],
                 run["step"], run.get("eval_loss"))
    print(f"{run['workdir']}: step {run['step']}, "
          f"eval_loss {run.get('eval_loss', float('nan')):.5f}")


if __name__ == "__main__":
  app.run(main)
