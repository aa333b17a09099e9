"""Several processes, one run directory: process 0 writes, all agree.

With several JAX processes (a TPU pod slice, SLURM, mpirun) every process
runs the same program on the same run directory. Only process 0 writes run
files (``config.json``, ``run.json``, ``metrics.jsonl``, ``per_step.jsonl``,
events, plots, the lock, renames); Orbax writes checkpoints together. Before
anything is written the processes check that they train the same thing
(:func:`check_same`); a step that only process 0 takes reports its failure
to every process (:func:`on_writer`) instead of leaving the others waiting
in the next collective; a rename or deletion that the others could be
reading happens between barriers (:func:`barrier`).

With one process every function here is a plain call (no collective).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, TypeVar

import jax
import numpy as np

T = TypeVar("T")
_MESSAGE_BYTES = 2048  # of an error broadcast from process 0


def is_writer() -> bool:
  """Whether this process writes the run files (process 0)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches ``barrier(name)``."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def _digest(value: Any) -> int:
  text = json.dumps(value, sort_keys=True, default=repr)
  return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4],
                        "little") & 0x7FFFFFFF


def check_same(what: str, values: dict[str, Any]) -> None:
  """Checks that every process passed equal ``values`` (JSON-able).

  One ``multihost_utils.assert_equal`` of a fingerprint when they agree;
  otherwise every process raises the same ``ValueError`` naming the keys
  that differ and the processes that differ from process 0. Also a barrier.

  Raises:
    ValueError: if any process has other keys or other values.
  """
  if jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils
  names = sorted(values)
  head = np.array([_digest(names), _digest([values[k] for k in names])],
                  np.int32)
  try:
    multihost_utils.assert_equal(head, what)
    return
  except AssertionError:
    pass
  heads = np.asarray(multihost_utils.process_allgather(head))
  me = jax.process_index()
  advice = ("start every process with the same command line, config file "
            "and version of wsd_jax")
  if len(set(heads[:, 0].tolist())) > 1:
    others = [p for p in range(len(heads)) if heads[p, 0] != heads[0, 0]]
    raise ValueError(f"the processes do not agree on {what}: process(es) "
                     f"{others} have other keys than process 0 (here, "
                     f"process {me}: {names}); {advice}")
  each = np.asarray(multihost_utils.process_allgather(
      np.array([_digest(values[k]) for k in names], np.int32)))
  differ = []
  for j, k in enumerate(names):
    others = [p for p in range(len(each)) if each[p, j] != each[0, j]]
    if others:
      differ.append(f"{k} (process(es) {others} differ from process 0; "
                    f"here, process {me}: {values[k]!r})")
  raise ValueError(f"the processes do not agree on {what}: "
                   f"{'; '.join(differ)}; {advice}")


def on_writer(fn: Callable[[], T]) -> T | None:
  """Runs ``fn`` on process 0 only and returns its result there (``None``
  elsewhere). If it raises, every process raises: process 0 its exception,
  the others a ``ValueError`` with its message (broadcast from process 0)."""
  result, error = None, None
  if is_writer():
    try:
      result = fn()
    except Exception as e:  # pylint: disable=broad-except
      error = e
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    text = "" if error is None else f"{type(error).__name__}: {error}"
    buf = np.zeros(_MESSAGE_BYTES, np.uint8)
    raw = text.encode()[:_MESSAGE_BYTES]
    buf[:len(raw)] = np.frombuffer(raw, np.uint8)
    got = np.asarray(multihost_utils.broadcast_one_to_all(buf))
    message = bytes(got.astype(np.uint8)).rstrip(b"\0").decode(
        errors="replace")
    if error is None and message:
      raise ValueError(f"process 0 failed: {message}")
  if error is not None:
    raise error
  return result
