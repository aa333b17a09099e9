"""Device mesh, shardings and global batches (jit + shardings; no pmap).

The mesh has two axes: ``data`` (pure data parallelism: the state is
replicated along it) and ``fsdp`` (fully sharded data parallelism: every
large parameter and its optimizer moments are split along it, ZeRO-3 style).
The batch is split over both axes jointly, so ``data * fsdp`` devices each
see ``batch_size / (data * fsdp)`` rows; XLA inserts the all-gathers of the
sharded weights and the reduce-scatters of their gradients.

  config.mesh.data = -1   # all devices not used by fsdp
  config.mesh.fsdp = 1    # 1: pure data parallelism (replicated state)
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

AXES = ("data", "fsdp")
BATCH_AXES = AXES  # the batch's leading dimension is split over both
# Leaves with fewer elements stay replicated under fsdp: norm scales, scalars,
# the step counter and the like cost nothing to replicate, and gathering them
# would cost a collective each.
MIN_SHARDED_SIZE = 2 ** 10


def mesh_shape(mesh_config, num_devices: int) -> tuple[int, int]:
  """``(data, fsdp)`` from ``config.mesh``; ``data=-1`` takes all that is left.

  Raises:
    ValueError: naming the values, if the mesh does not divide the devices.
  """
  data = int(mesh_config.get("data", -1))
  fsdp = int(mesh_config.get("fsdp", 1))
  if fsdp < 1 or num_devices % fsdp:
    raise ValueError(f"config.mesh.fsdp={fsdp} does not divide the "
                     f"{num_devices} available devices")
  data = num_devices // fsdp if data == -1 else data
  if data < 1 or num_devices % (data * fsdp):
    raise ValueError(f"config.mesh.data={data} x config.mesh.fsdp={fsdp} = "
                     f"{data * fsdp} does not divide the {num_devices} "
                     "available devices")
  if jax.process_count() > 1 and data * fsdp != num_devices:
    raise ValueError(f"config.mesh.data={data} x config.mesh.fsdp={fsdp} must "
                     f"use all {num_devices} devices of a multi-process run")
  return data, fsdp


def make_mesh(mesh_config) -> jax.sharding.Mesh:
  """A ``("data", "fsdp")`` mesh of ``config.mesh.data * config.mesh.fsdp``
  devices (``fsdp`` innermost, so it spans the fastest links)."""
  shape = mesh_shape(mesh_config, jax.device_count())
  return jax.make_mesh(shape, AXES, devices=jax.devices()[:math.prod(shape)],
                       axis_types=(jax.sharding.AxisType.Auto,) * len(AXES))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh) -> NamedSharding:
  """Rows of a batch split over ``data`` and ``fsdp`` jointly."""
  return NamedSharding(mesh, P(BATCH_AXES))


def batch_divisor(mesh) -> int:
  """How many shards the batch's rows are split into."""
  return math.prod(mesh.shape[a] for a in BATCH_AXES)


def check_batch_size(mesh, batch_size: int) -> None:
  """Raises ``ValueError`` naming the values unless the batch splits evenly."""
  if batch_size % batch_divisor(mesh):
    raise ValueError(
        f"config.data.batch_size={batch_size} is not divisible by "
        f"data={mesh.shape['data']} x fsdp={mesh.shape['fsdp']} = "
        f"{batch_divisor(mesh)} devices")


def fsdp_spec(shape: tuple[int, ...], fsdp: int) -> P:
  """The spec of one leaf: its largest dimension divisible by ``fsdp`` split
  over ``fsdp``; replicated if it is small or no dimension divides."""
  if fsdp == 1 or math.prod(shape) < MIN_SHARDED_SIZE:
    return P()
  dims = [i for i, n in enumerate(shape) if n % fsdp == 0]
  if not dims:
    return P()
  axis = max(dims, key=lambda i: shape[i])  # first of equal sizes
  return P(*[("fsdp" if i == axis else None) for i in range(len(shape))])


def state_sharding(mesh, state: Any) -> Any:
  """Shardings of the train state (a pytree of the same structure).

  With ``fsdp == 1`` everything is replicated (pure data parallelism).
  Otherwise every leaf goes through ``fsdp_spec``: parameters and the
  optimizer moments of the same shape get the same spec, scalars and small
  vectors stay replicated. The rule reads shapes only, so it serves any
  model and optimizer.
  """
  fsdp = mesh.shape["fsdp"]
  return jax.tree.map(
      lambda x: NamedSharding(mesh, fsdp_spec(tuple(getattr(x, "shape", ())),
                                                fsdp)), state)


def global_batch(local_batch: dict, sharding: NamedSharding) -> dict:
  """Assembles each process's rows into global arrays sharded like
  ``sharding`` (the rows of all processes, in process order)."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}
