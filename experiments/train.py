r"""Trains a config into a run directory; rerunning the same command resumes.

  python -m experiments.train --config=configs/bigram.py --workdir=/tmp/r \
      [--config.train.steps=2000] [--from_branch=NAME]

Every key of the config can be set with ``--config.KEY=VALUE``: the schedule
family and its arguments (``--config.schedule.name=cosine``,
``--config.schedule.decay_shape=1-sqrt``; ``config.schedule.total_steps``
follows ``--config.train.steps`` unless set), the optax optimizer and its
arguments (``--config.optimizer.name=sgd --config.optimizer.momentum=0.9``).
``--print_config`` prints every key with its value and the schedule and
optimizer calls they resolve to, and exits without training.

``--from_branch=NAME`` is WSD-S: the main branch in ``--workdir``, stopped at
the fork step of ``branches/NAME``, continues from that branch's decayed state
at the main schedule's LR (no re-warmup).

Library logs (Orbax, JAX) are hidden; ``--verbosity=0`` shows them.

Several processes form one JAX runtime before anything touches a device
(``wsd_jax.train.distributed``): on a multi-host TPU slice, under SLURM
(``srun``, several tasks) and Open MPI (``mpirun``) this is detected; elsewhere
give each process the same command line and ``JAX_COORDINATOR_ADDRESS=HOST0:PORT
JAX_NUM_PROCESSES=N JAX_PROCESS_ID=I`` in its environment, or the flags
``--coordinator_address --num_processes --process_id``. Only process 0 writes
run files; all processes must be given the same config (checked).
"""

import signal
import sys

from absl import flags, logging

from experiments import cli
from wsd_jax import reports
from wsd_jax.runs import processes
from wsd_jax.train import config as config_lib
from wsd_jax.train import continue_from_branch, distributed, train_and_evaluate

_CONFIG = cli.define_config("configs/bigram.py")
_WORKDIR = cli.define_workdir("Run directory.")
_FROM_BRANCH = flags.DEFINE_string(
    "from_branch", None, "WSD-S: continue from this branch's decayed state.")
_ALLOW = flags.DEFINE_list(
    "allow_changes", [], "Config keys (or sections, e.g. schedule) that may "
    "differ from the run's config when resuming it.")

# Multi-process start-up (not needed on multi-host TPU slices, SLURM or
# mpirun; JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID do the
# same from the environment).
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
  config, workdir = _CONFIG.value, _WORKDIR.value
  config_lib.validate(config)  # bad values end here, before anything is written
  if flags.FLAGS.print_config:
    cli.print_config(config, **config_lib.resolved(config))
    return
  if _FROM_BRANCH.value:
    summary = continue_from_branch(config, workdir, _FROM_BRANCH.value)
  else:
    summary = train_and_evaluate(config, workdir,
                                 allow_changes=tuple(_ALLOW.value))
  members = summary.get("members", [summary])
  if config.train.plots and processes.is_writer():
    for run in members:
      reports.run_figures(run["workdir"])
    if "members" in summary:
      reports.population_report(workdir)
  processes.barrier("exit")  # no process leaves while process 0 writes
  for run in members:
    logging.info("done: %s step %d, eval_loss %s", run["workdir"],
                 run["step"], run.get("eval_loss"))
    print(f"{run['workdir']}: step {run['step']}, "
          f"eval_loss {run.get('eval_loss', float('nan')):.5f}")
  stopped = {run.get("stopped_by") for run in members} - {None}
  if stopped:
    name = stopped.pop()
    print(f"stopped by {name}: saved; rerun the same command to resume")
    sys.exit(128 + int(getattr(signal, name)))


if __name__ == "__main__":
  cli.run(main)
