"""Device mesh, shardings and global batches (jit + shardings; no pmap)."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P


def make_mesh(mesh_config) -> jax.sharding.Mesh:
  """A 1-D ``data`` mesh over ``mesh_config.data`` devices (-1: all)."""
  n = int(mesh_config.get("data", -1))
  available = jax.device_count()
  n = available if n == -1 else n
  if n < 1 or available % n:
    raise ValueError(f"config.mesh.data={n} does not divide the "
                     f"{available} available devices")
  return jax.make_mesh((n,), ("data",), devices=jax.devices()[:n],
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def state_sharding(mesh, state, mesh_config):
  """Shardings of the train state: replicated (pure data parallelism)."""
  del mesh_config
  return jax.tree.map(lambda _: replicated(mesh), state)


def global_batch(local_batch: dict, sharding: NamedSharding) -> dict:
  """Assembles each process's rows into global arrays sharded over ``data``."""
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}
