r"""Trains a config into a run directory; rerunning the same command resumes.

  python -m experiments.train --config=configs/bigram.py --workdir=/tmp/r \
      [--config.train.steps=2000] [--from_branch=NAME]

``--from_branch=NAME`` is WSD-S: the main branch in ``--workdir``, stopped at
the fork step of ``branches/NAME``, continues from that branch's decayed state
at the main schedule's LR (no re-warmup).

Several processes (a TPU pod slice, SLURM, mpirun: detected; elsewhere pass
``--coordinator_address=HOST0:PORT --num_processes=N --process_id=I`` to each)
form one JAX runtime before anything touches a device; see
``wsd_jax.train.distributed``.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import cli
from wsd_jax.runs import branching
from wsd_jax.train import distributed, train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", "configs/bigram.py",
                                          "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.",
                               required=True)
_FROM_BRANCH = flags.DEFINE_string(
    "from_branch", None, "WSD-S: continue from this branch's decayed state.")

# Multi-process start-up (not needed on TPU pods, SLURM or mpirun).
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (any free port).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "This process's index (0-based).")


@cli.friendly_errors
def main(argv):
  del argv
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                         _PROCESS_ID.value)
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
