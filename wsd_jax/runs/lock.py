"""One trainer per run directory: ``WORKDIR/.lock``.

On a local disk the lock is an ``fcntl`` lock on that file, so the kernel
releases it when the process dies (a crash or SIGKILL leaves no stale lock);
the file names the holder (host, pid, start time) for the error message. On
an object store (``gs://``) there is no such lock: the file is written and
checked (best effort), and one left by a dead process on this host is taken
over with a warning.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time

from absl import logging
from etils import epath

from wsd_jax.runs import rundir

LOCK = ".lock"


class RunLockedError(ValueError):
  """Another process is training in this run directory."""


def _holder_text() -> str:
  return json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                     "since": time.strftime("%Y-%m-%dT%H:%M:%S")})


def _describe(text: str) -> str:
  try:
    h = json.loads(text)
    return f"pid {h['pid']} on {h['host']}, since {h['since']}"
  except (ValueError, KeyError, TypeError):
    return "an unknown process"


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


class RunLock:
  """Held while a process trains in ``workdir``; a context manager."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = rundir.join(workdir, LOCK)
    self._file = None

  def _error(self, text: str) -> RunLockedError:
    return RunLockedError(
        f"{self.workdir} is in use by another trainer ({_describe(text)}); "
        "wait for it to finish or stop it. If no such process exists, delete "
        f"{self.path}")

  def acquire(self) -> "RunLock":
    workdir = epath.Path(self.workdir)
    if rundir.is_url(self.path):
      try:
        self._acquire_remote()
      except (RunLockedError, rundir.RunDirError):
        raise
      except Exception as e:  # pylint: disable=broad-except
        # The first touch of a bucket: an unreachable or misnamed store.
        raise rundir.RunDirError(
            f"cannot use storage at {self.workdir}: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''} (check the URL, "
            "credentials and network)") from None
      return self
    if workdir.exists() and not workdir.is_dir():
      raise rundir.RunDirError(f"--workdir {self.workdir!r} is a file, not a "
                               "directory; choose another path")
    workdir.mkdir(parents=True, exist_ok=True)
    f = open(self.path, "a+")
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      text = f.read()
      f.close()
      raise self._error(text) from None
    f.seek(0)
    f.truncate()
    f.write(_holder_text())
    f.flush()
    self._file = f
    return self

  def _acquire_remote(self) -> None:
    p = epath.Path(self.path)
    if p.exists():
      text = p.read_text()
      try:
        h = json.loads(text)
        stale = h["host"] == socket.gethostname() and not _alive(int(h["pid"]))
      except (ValueError, KeyError, TypeError):
        stale = False
      if not stale:
        raise self._error(text)
      logging.warning("%s: taking over the lock of a dead process (%s)",
                      self.workdir, _describe(text))
    p.write_text(_holder_text())

  def release(self) -> None:
    if self._file is not None:
      self._file.seek(0)
      self._file.truncate()
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None
    elif rundir.is_url(self.path):
      epath.Path(self.path).unlink(missing_ok=True)

  def __enter__(self) -> "RunLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()
