"""The run directory: files every other part of wsd_jax reads.

    WORKDIR/config.json    resolved config
    WORKDIR/run.json       lineage: name, parent, fork_step, schedule
    WORKDIR/metrics.jsonl  one JSON object per logged step
    WORKDIR/checkpoints/   Orbax steps (train state + data iterator)
    WORKDIR/events/        TensorBoard event files
    WORKDIR/branches/NAME/ the same layout for each branch
    WORKDIR/plots/

Every JSON file is written to a temporary file and renamed, so a kill never
leaves a half-written one; metrics.jsonl is append-only and is cut back to
the restored step when a run resumes.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

CONFIG, RUN, METRICS = "config.json", "run.json", "metrics.jsonl"


def write_json(path: str, obj: Any) -> None:
  """Atomically writes ``obj`` as JSON."""
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def is_run(workdir: str) -> bool:
  return os.path.exists(os.path.join(workdir, RUN))


def read_run(workdir: str) -> dict:
  """``run.json`` of a run directory; a clear error if there is no run."""
  if not is_run(workdir):
    raise FileNotFoundError(
        f"{workdir!r} holds no run (no {RUN}); train one first with "
        f"python -m experiments.train --config=... --workdir={workdir}")
  return read_json(os.path.join(workdir, RUN))


def read_config(workdir: str) -> dict:
  read_run(workdir)
  return read_json(os.path.join(workdir, CONFIG))


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, "checkpoints")


def branch_dir(workdir: str, name: str) -> str:
  return os.path.join(workdir, "branches", name)


def branches(workdir: str) -> list[str]:
  """Names of the branches of a run that hold a run."""
  root = os.path.join(workdir, "branches")
  if not os.path.isdir(root):
    return []
  return sorted(n for n in os.listdir(root) if is_run(os.path.join(root, n)))


def read_metrics(workdir: str, name: str = METRICS) -> list[dict]:
  """The complete lines of ``metrics.jsonl`` (a torn last line is dropped)."""
  path = os.path.join(workdir, name)
  rows = []
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError:
          break
  return rows


class MetricsLog:
  """Appends rows to ``metrics.jsonl`` (or ``name``); flushed at every write.

  Opening it keeps only the rows up to ``resume_step``, so a resumed run
  rewrites what it redoes and the file equals an uninterrupted run's.
  """

  def __init__(self, workdir: str, resume_step: int, name: str = METRICS):
    self.path = os.path.join(workdir, name)
    rows = [r for r in read_metrics(workdir, name) if r["step"] <= resume_step]
    tmp = f"{self.path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(tmp, self.path)
    self._file = open(self.path, "a")

  def write(self, rows: Iterable[dict]) -> None:
    for row in rows:
      self._file.write(json.dumps(row) + "\n")
    self._file.flush()

  def close(self) -> None:
    self._file.close()
