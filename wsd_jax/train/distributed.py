"""Multi-process start-up: ``jax.distributed.initialize`` exactly when needed.

Call ``initialize()`` first thing in a launcher, before anything touches a
device. It starts the distributed runtime when this process is one of
several (:func:`detect_launcher`):

- ``explicit``: arguments (``--coordinator_address``, ``--num_processes``,
  ``--process_id``);
- ``env``: ``JAX_COORDINATOR_ADDRESS`` with ``JAX_NUM_PROCESSES`` > 1 and
  ``JAX_PROCESS_ID`` in the environment, so that every process runs the same
  command line (JAX itself reads only the address; the other two are read
  here and passed on);
- ``slurm``: ``srun`` with several tasks; ``openmpi``: ``mpirun`` with
  several ranks (the variables JAX's own cluster detection reads,
  ``jax/_src/clusters/{slurm,ompi}_cluster.py``);
- ``tpu``: a Cloud TPU VM that is one host of a multi-host slice (or of a
  multislice); JAX then finds the coordinator itself.

and does nothing for one process: a plain CPU/GPU box, a single-host TPU VM
(v4-8, v5e-8, ...), SLURM with one task, ``mpirun -n 1``. After it,
``jax.devices()`` are all the devices of all processes; each process feeds
its own rows of every batch and Orbax writes one checkpoint together.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import urllib.request

import jax
from absl import logging

_SLURM = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS",
          "SLURM_PROCID", "SLURM_LOCALID")  # as jax's SlurmCluster
_GOOGLE_PCI_VENDOR = "0x1ae0"  # TPU chips (jax/_src/hardware_utils.py)
_METADATA = "http://{}/computeMetadata/v1/instance/attributes/{}"


def _count(value: str | None, default: int = 1) -> int:
  return int(value) if value not in (None, "") else default


def _on_tpu_vm() -> bool:
  """Whether JAX would use TPUs here: libtpu installed and TPU chips on the
  PCI bus (what ``jax._src.cloud_tpu_init`` checks), TPUs not excluded by
  ``JAX_PLATFORMS``."""
  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms and "tpu" not in platforms:
    return False
  if importlib.util.find_spec("libtpu") is None:
    return False
  for vendor in glob.glob("/sys/bus/pci/devices/*/vendor"):
    try:
      with open(vendor) as f:
        if f.read().strip() == _GOOGLE_PCI_VENDOR:
          return True
    except OSError:
      continue
  return False


def _metadata(key: str) -> str:
  """An attribute of this Cloud TPU VM from its metadata server (the
  link-local server JAX's ``GceTpuCluster`` asks too)."""
  host = os.environ.get("GCE_METADATA_IP", "metadata.google.internal")
  request = urllib.request.Request(_METADATA.format(host, key),
                                   headers={"Metadata-Flavor": "Google"})
  with urllib.request.urlopen(request, timeout=10) as response:
    return response.read().decode()


def tpu_hosts() -> int:
  """The number of TPU hosts (processes) of the slice(s) this VM belongs to;
  1 off a TPU VM.

  From ``TPU_PROCESS_ADDRESSES`` / ``TPU_WORKER_HOSTNAMES`` (GKE, or set by
  hand) times ``MEGASCALE_NUM_SLICES``; otherwise from the VM's metadata
  (``worker-network-endpoints``: one entry per host), as JAX does. With
  ``TPU_SKIP_MDS_QUERY`` set the metadata is not asked (one host).
  """
  if not _on_tpu_vm():
    return 1
  env = os.environ
  slices = _count(env.get("MEGASCALE_NUM_SLICES"))
  hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES")
  if hosts:
    return len([h for h in hosts.split(",") if h.strip()]) * slices
  if env.get("TPU_SKIP_MDS_QUERY") is not None:
    return slices
  try:
    endpoints = _metadata("worker-network-endpoints")
  except OSError as e:
    logging.warning("TPU VM without an answer from its metadata server (%s); "
                    "training as one host", e)
    return slices
  return len([w for w in endpoints.split(",") if w.strip()]) * slices


def detect_launcher() -> str | None:
  """How this process was started as one of several: ``"env"``,
  ``"slurm"``, ``"openmpi"`` or ``"tpu"``; ``None`` for a single process."""
  env = os.environ
  if env.get("JAX_COORDINATOR_ADDRESS") and _count(
      env.get("JAX_NUM_PROCESSES"), 2) > 1:
    return "env"
  if all(k in env for k in _SLURM) and _count(env["SLURM_NTASKS"]) > 1:
    return "slurm"
  if "OMPI_MCA_orte_hnp_uri" in env and _count(
      env.get("OMPI_COMM_WORLD_SIZE")) > 1:
    return "openmpi"
  if tpu_hosts() > 1:
    return "tpu"
  return None


def _from_env() -> tuple[int | None, int | None]:
  """``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (``None`` if unset, e.g.
  when JAX's cluster detection gives them)."""
  env = os.environ
  n, i = env.get("JAX_NUM_PROCESSES"), env.get("JAX_PROCESS_ID")
  try:
    return (None if n in (None, "") else int(n),
            None if i in (None, "") else int(i))
  except ValueError:
    raise ValueError(f"JAX_NUM_PROCESSES={n!r} and JAX_PROCESS_ID={i!r} must "
                     "be integers") from None


def initialize(coordinator_address: str | None = None,
               num_processes: int | None = None,
               process_id: int | None = None) -> bool:
  """Starts JAX's distributed runtime if this is one of several processes.

  Args:
    coordinator_address: ``host:port`` of process 0 (any free port).
    num_processes: the number of processes.
    process_id: this process's index, ``0 .. num_processes - 1``.

  Returns:
    Whether the runtime was started (``False``: a single process, or a
    runtime started before).

  Raises:
    ValueError: if the arguments or ``JAX_*`` variables are incomplete or
      inconsistent.
  """
  is_initialized = getattr(jax.distributed, "is_initialized", None)
  if is_initialized is not None and is_initialized():
    return False
  explicit = (coordinator_address, num_processes, process_id)
  if any(x is not None for x in explicit):
    launcher = "explicit"
    if num_processes is not None and int(num_processes) == 1 and not (
        coordinator_address):
      return False
  else:
    launcher = detect_launcher()
    if launcher is None:
      return False
    if launcher == "env":
      coordinator_address = os.environ["JAX_COORDINATOR_ADDRESS"]
      num_processes, process_id = _from_env()
      if (num_processes is None or process_id is None) and not any(
          k in os.environ for k in ("SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri")):
        raise ValueError(
            "JAX_COORDINATOR_ADDRESS is set; set JAX_NUM_PROCESSES and "
            "JAX_PROCESS_ID too (or unset it for a single process)")
  if num_processes is not None and process_id is not None and not (
      0 <= int(process_id) < int(num_processes)):
    raise ValueError(f"process_id={process_id} is not in [0, "
                     f"num_processes={num_processes})")
  # Collectives between processes on CPU (tests, CPU clusters) need gloo;
  # JAX 0.10 already defaults to it, older versions to none.
  try:
    if jax.config.jax_cpu_collectives_implementation in (None, "none"):
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
  except AttributeError:  # a JAX without the option: gloo is built in
    pass
  jax.distributed.initialize(
      coordinator_address=coordinator_address,
      num_processes=None if num_processes is None else int(num_processes),
      process_id=None if process_id is None else int(process_id))
  logging.info("distributed (%s): process %d of %d, %d local of %d devices",
               launcher, jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
  return True
