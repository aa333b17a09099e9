"""Orbax checkpoints of the train state and the grain iterator, saved together.

A thin wrapper over ``ocp.CheckpointManager`` (``args=`` API): asynchronous
saves, retention of the latest few plus every K-th step (the candidate branch
points) plus listed steps, and a restore that skips a corrupt latest
checkpoint with a warning. Orbax writes each step to a temporary directory and
renames it on commit, so a kill during a save leaves no half-written step.
"""

from __future__ import annotations

import logging as std_logging
import time
from typing import Any, Iterable

import grain
import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from orbax.checkpoint import checkpoint_managers as policies

from wsd_jax.runs import processes, rundir


class _ReadOnlyNotice(std_logging.Filter):
  """Drops Orbax's warning that a directory opened read-only is read-only:
  reading another run's checkpoints (a branch's fork point) is routine."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Given directory is read only")


std_logging.getLogger("absl").addFilter(_ReadOnlyNotice())


class CheckpointMismatchError(ValueError):
  """A readable checkpoint does not fit the state the config builds."""


class Checkpointer:
  """Saves and restores ``(state, data iterator)`` pairs under ``directory``."""

  def __init__(self, directory: str, *, keep_last: int = 3,
               keep_every: int = 0, keep_steps: Iterable[int] = (),
               async_save: bool = True, read_only: bool = False):
    self.directory = rundir.absolute(directory)
    self._read_only = read_only
    keep = [policies.LatestN(max(int(keep_last), 1))]
    if keep_every:
      keep.append(policies.EveryNSteps(int(keep_every)))
    if keep_steps:
      keep.append(policies.CustomSteps(steps=[int(s) for s in keep_steps]))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy(keep),
        enable_async_checkpointing=async_save, read_only=read_only,
        save_interval_steps=0 if read_only else 1,
        create=not read_only, cleanup_tmp_directories=not read_only)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "data"))

  def steps(self) -> list[int]:
    """Committed steps, ascending."""
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.steps()
    return steps[-1] if steps else None

  def save(self, step: int, state: Any, data_iter: Any) -> None:
    """Starts an (async) save; the iterator's position is taken now."""
    self._manager.save(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iter)), force=True)

  def restore(self, step: int, like_state: Any, data_iter: Any | None) -> Any:
    """Restores ``step`` into the structure/shardings of ``like_state``; sets
    ``data_iter`` to the saved position when given."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
    items = dict(state=ocp.args.StandardRestore(abstract))
    if data_iter is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    restored = self._manager.restore(int(step),
                                     args=ocp.args.Composite(**items))
    return restored.state

  def readable_alone(self, step: int) -> bool:
    """Whether ``step`` loads as saved, without a target structure."""
    try:
      self._manager.restore(int(step), args=ocp.args.Composite(
          state=ocp.args.StandardRestore()))
      return True
    except Exception:  # pylint: disable=broad-except
      return False

  def restore_latest(self, like_state: Any, data_iter: Any | None
                     ) -> tuple[int | None, Any]:
    """Restores the newest readable step.

    A checkpoint that does not load even on its own (a damaged file) is
    skipped with a warning and, unless read-only, moved to
    ``<directory>.unreadable/`` so that the step can be saved again. One that
    loads but does not fit ``like_state`` (another model or optimizer) is
    never moved: that is a ``CheckpointMismatchError``.
    ``(None, like_state)`` if there is no checkpoint.
    """
    for step in reversed(self.steps()):
      try:
        return step, self.restore(step, like_state, data_iter)
      except Exception as e:  # pylint: disable=broad-except
        if self.readable_alone(step):
          raise CheckpointMismatchError(
              f"checkpoint {step} in {self.directory} does not fit the state "
              f"this config builds ({type(e).__name__}: "
              f"{str(e).splitlines()[0] if str(e) else ''}); use a new "
              "workdir for another model or optimizer") from None
        logging.warning("checkpoint %d in %s is unreadable (%s: %s); "
                        "falling back to the previous one", step,
                        self.directory, type(e).__name__,
                        str(e).splitlines()[0] if str(e) else "")
        self._quarantine(step)
    return None, like_state

  def _quarantine(self, step: int) -> None:
    """Process 0 moves the step aside once every process has given up on it
    (every process restores, so every process gets here)."""
    if self._read_only:
      return
    processes.barrier(f"quarantine {self.directory} {step}")
    if processes.is_writer():
      dest = epath.Path(f"{self.directory}.unreadable") / (
          f"{step}.{time.strftime('%Y%m%d-%H%M%S')}")
      dest.parent.mkdir(parents=True, exist_ok=True)
      (epath.Path(self.directory) / str(step)).rename(dest)
      logging.warning("moved unreadable checkpoint %d to %s", step, dest)
    processes.barrier(f"quarantined {self.directory} {step}")
    self._manager.reload()

  def wait(self) -> None:
    """Blocks until the last async save is committed."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
