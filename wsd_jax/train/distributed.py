"""Multi-process start-up: ``jax.distributed.initialize`` when it is needed.

Call ``initialize()`` first thing in a launcher, before anything touches a
device. It starts the distributed runtime when

- the coordinator is given explicitly (arguments, or ``JAX_COORDINATOR_ADDRESS``
  in the environment), e.g. several processes on one multi-GPU node;
- the process was started by a multi-process launcher JAX detects itself:
  SLURM (``srun`` with several tasks), Open MPI (``mpirun``), or a Cloud TPU
  VM (every host of a pod slice runs the same command);

and does nothing for a plain single process. After it, ``jax.devices()`` are
all the devices of all processes; each process feeds its own rows of every
batch (``make_dataset(..., process_index, process_count)``) and Orbax writes
one checkpoint together.
"""

from __future__ import annotations

import importlib.util
import os

import jax
from absl import logging


def detect_launcher() -> str | None:
  """The multi-process launcher that started this process, or ``None``."""
  env = os.environ
  if env.get("JAX_COORDINATOR_ADDRESS"):
    return "env"
  if (all(k in env for k in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_PROCID"))
      and int(env["SLURM_NTASKS"]) > 1):
    return "slurm"
  if "OMPI_MCA_orte_hnp_uri" in env and int(
      env.get("OMPI_COMM_WORLD_SIZE", "2")) > 1:
    return "openmpi"
  platforms = env.get("JAX_PLATFORMS", "")
  if ((not platforms or "tpu" in platforms)
      and importlib.util.find_spec("libtpu") is not None):
    return "tpu"  # JAX reads the slice's hosts from the TPU VM metadata
  return None


def initialize(coordinator_address: str | None = None,
               num_processes: int | None = None,
               process_id: int | None = None) -> bool:
  """Starts JAX's distributed runtime if this is one of several processes.

  Args:
    coordinator_address: ``host:port`` of process 0 (any free port).
    num_processes: the number of processes.
    process_id: this process's index, ``0 .. num_processes - 1``.

  Returns:
    Whether the runtime was started (``False``: a plain single process).

  Raises:
    ValueError: if the explicit arguments are incomplete or inconsistent.
  """
  explicit = (coordinator_address, num_processes, process_id)
  if any(x is not None for x in explicit):
    if num_processes is not None and int(num_processes) == 1 and not (
        coordinator_address):
      return False
    if num_processes is not None and process_id is not None and not (
        0 <= int(process_id) < int(num_processes)):
      raise ValueError(f"process_id={process_id} is not in [0, "
                       f"num_processes={num_processes})")
    launcher = "explicit"
  else:
    launcher = detect_launcher()
    if launcher is None:
      return False
  # Collectives between processes on CPU (tests, CPU clusters) need gloo;
  # JAX 0.10 already defaults to it, older versions to none.
  if jax.config.jax_cpu_collectives_implementation in (None, "none"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      coordinator_address=coordinator_address,
      num_processes=None if num_processes is None else int(num_processes),
      process_id=None if process_id is None else int(process_id))
  logging.info("distributed (%s): process %d of %d, %d local of %d devices",
               launcher, jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
  return True
