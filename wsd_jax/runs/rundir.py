"""The run directory: its layout and the files every other part reads.

    WORKDIR/config.json    resolved config
    WORKDIR/run.json       lineage: name, parent, fork_step, schedule
    WORKDIR/metrics.jsonl  one JSON object per logged step
    WORKDIR/checkpoints/   Orbax steps (train state + data iterator)
    WORKDIR/events/        TensorBoard event files
    WORKDIR/branches/NAME/ the same layout for each branch
    WORKDIR/members/NAME/  the runs of a population (population.json lists them)
    WORKDIR/plots/         figures the apps draw

Every path may be a URL (``gs://bucket/run``): all IO goes through
``etils.epath`` and nothing turns a URL into a local path. JSON files are
written whole (to a temporary name, then renamed; an object store writes an
object atomically), so a kill never leaves a half-written one.
``metrics.jsonl`` is appended to on a local disk and rewritten whole on an
object store (which cannot append); a damaged line is reported with its file
and line number and never causes a good line to be dropped.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Iterable

from absl import logging
from etils import epath

CONFIG, RUN, METRICS = "config.json", "run.json", "metrics.jsonl"
FINGERPRINTS, POPULATION = "fingerprints.jsonl", "population.json"
CHECKPOINTS, EVENTS, BRANCHES, MEMBERS, PLOTS = (
    "checkpoints", "events", "branches", "members", "plots")
# run.json's format: a reader refuses a newer one instead of misreading it.
FORMAT = 2


class RunDirError(ValueError):
  """A run directory file is missing, damaged or of an unknown format."""


def is_url(path: str | os.PathLike) -> bool:
  return "://" in os.fspath(path)


def join(base: str | os.PathLike, *parts: str) -> str:
  """``base/part/...`` for local paths and URLs alike."""
  return os.fspath(epath.Path(base).joinpath(*parts))


def absolute(path: str | os.PathLike) -> str:
  """An absolute local path; a URL unchanged."""
  path = os.fspath(path)
  return path if is_url(path) else os.path.abspath(path)


def name_of(path: str | os.PathLike) -> str:
  return epath.Path(absolute(path)).name


def config_path(workdir: str) -> str:
  return join(workdir, CONFIG)


def run_path(workdir: str) -> str:
  return join(workdir, RUN)


def checkpoint_dir(workdir: str) -> str:
  return join(workdir, CHECKPOINTS)


def events_dir(workdir: str) -> str:
  return join(workdir, EVENTS)


def plots_dir(workdir: str) -> str:
  return join(workdir, PLOTS)


def branch_dir(workdir: str, name: str) -> str:
  return join(workdir, BRANCHES, name)


def member_dir(workdir: str, name: str) -> str:
  return join(workdir, MEMBERS, name)


def write_text(path: str, text: str) -> None:
  """Writes ``text`` whole: a temporary file renamed over ``path`` locally,
  one object write on an object store."""
  p = epath.Path(path)
  p.parent.mkdir(parents=True, exist_ok=True)
  if is_url(path):
    p.write_text(text)
    return
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
  """Atomically writes ``obj`` as JSON."""
  write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str) -> Any:
  """A JSON file; a damaged one is a ``RunDirError`` naming file and line."""
  try:
    text = epath.Path(path).read_text()
  except FileNotFoundError:
    raise RunDirError(f"{path} is missing") from None
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise RunDirError(
        f"{path} is damaged (line {e.lineno}, column {e.colno}: {e.msg}); "
        "restore it from a copy or move the run directory aside — its "
        "checkpoints are untouched") from None


def exists(path: str) -> bool:
  return epath.Path(path).exists()


def is_run(workdir: str) -> bool:
  return exists(run_path(workdir))


def read_run(workdir: str) -> dict:
  """``run.json`` of a run directory; a clear error if there is no run or it
  was written by a newer version of wsd_jax."""
  if not is_run(workdir):
    if exists(workdir) and not epath.Path(workdir).is_dir():
      raise RunDirError(f"{workdir!r} is a file, not a run directory")
    raise FileNotFoundError(
        f"{workdir!r} holds no run (no {RUN}); train one first with "
        f"python -m experiments.train --config=... --workdir={workdir}")
  run = read_json(run_path(workdir))
  if int(run.get("format", 1)) > FORMAT:
    raise RunDirError(
        f"{run_path(workdir)} has format {run['format']}, written by a newer "
        f"wsd_jax (this one reads up to {FORMAT}); upgrade wsd_jax")
  return run


def read_config(workdir: str) -> dict:
  read_run(workdir)
  return read_json(config_path(workdir))


def branches(workdir: str) -> list[str]:
  """Names of the branches of a run that hold a run."""
  root = epath.Path(join(workdir, BRANCHES))
  if not root.is_dir():
    return []
  return sorted(p.name for p in root.iterdir() if is_run(os.fspath(p)))


def _parse_lines(path: str, lines: list[str]) -> tuple[list[dict], list[int]]:
  """Rows of a JSONL file and the 1-based numbers of its damaged lines.

  A last line without its newline is a write torn by a crash: it is dropped
  silently (it is redone on resume). Any other line that is not a JSON object
  with an integer ``step`` is damaged: skipped here, reported by the caller.
  """
  rows, damaged = [], []
  for i, line in enumerate(lines, 1):
    if i == len(lines) and not line.endswith("\n"):
      break
    try:
      row = json.loads(line)
      if not isinstance(row, dict) or not isinstance(row.get("step"), int):
        raise ValueError
    except ValueError:
      if line.strip():
        damaged.append(i)
      continue
    rows.append(row)
  return rows, damaged


def _read_lines(path: str) -> list[str]:
  p = epath.Path(path)
  if not p.exists():
    return []
  return p.read_text().splitlines(keepends=True)


def read_metrics(workdir: str, name: str = METRICS) -> list[dict]:
  """The rows of ``metrics.jsonl``; damaged lines are skipped with a warning
  that names the file and line (the rows around them are kept)."""
  path = join(workdir, name)
  rows, damaged = _parse_lines(path, _read_lines(path))
  if damaged:
    logging.warning("%s: skipped damaged line(s) %s", path, damaged)
  return rows


def _finite(row: dict) -> dict:
  """``row`` with NaN/inf values as ``null`` (JSON has no such numbers)."""
  return {k: None if isinstance(v, float) and not math.isfinite(v) else v
          for k, v in row.items()}


class MetricsLog:
  """Appends rows to ``metrics.jsonl`` (or ``name``).

  Opening it keeps the rows up to ``resume_step`` (a resumed run rewrites
  what it redoes, so the file equals an uninterrupted run's) and moves any
  damaged line, with its line number, to ``NAME.damaged`` instead of dropping
  what follows it. Locally every write is appended and flushed; on an object
  store the file is rewritten whole at most every ``remote_flush_s`` seconds
  and at ``flush()`` (the trainer flushes at every checkpoint, so a crash
  loses only rows that the resumed run redoes).
  """

  def __init__(self, workdir: str, resume_step: int, name: str = METRICS,
               remote_flush_s: float = 30.0):
    self.path = join(workdir, name)
    lines = _read_lines(self.path)
    rows, damaged = _parse_lines(self.path, lines)
    if damaged:
      keep = "".join(f"{self.path}:{i}: {lines[i - 1].rstrip()}\n"
                     for i in damaged)
      old = "".join(_read_lines(self.path + ".damaged"))
      write_text(self.path + ".damaged", old + keep)
      logging.warning("%s: damaged line(s) %s moved to %s.damaged; the other "
                      "rows are kept", self.path, damaged, self.path)
    self._lines = [json.dumps(r) + "\n" for r in rows
                   if r["step"] <= resume_step]
    self._remote = is_url(self.path)
    self._remote_flush_s = remote_flush_s
    self._dirty, self._last_flush = True, 0.0
    self._file = None
    self._rewrite()
    if not self._remote:
      self._file = open(self.path, "a")

  def _rewrite(self) -> None:
    write_text(self.path, "".join(self._lines))
    self._dirty, self._last_flush = False, time.monotonic()

  def write(self, rows: Iterable[dict]) -> None:
    new = [json.dumps(_finite(r), allow_nan=False) + "\n" for r in rows]
    if self._file is not None:
      self._file.writelines(new)
      self._file.flush()
      return
    self._lines += new
    self._dirty = True
    if time.monotonic() - self._last_flush >= self._remote_flush_s:
      self._rewrite()

  def flush(self) -> None:
    if self._file is None and self._dirty:
      self._rewrite()

  def close(self) -> None:
    self.flush()
    if self._file is not None:
      self._file.close()
