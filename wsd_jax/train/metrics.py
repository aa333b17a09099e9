"""Where metrics go besides metrics.jsonl: TensorBoard and a progress bar."""

from __future__ import annotations

import io
import os
import socket
import sys
import time

import jax
from etils import epath
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer import record_writer
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from wsd_jax.runs import rundir


class EventWriter:
  """Scalars to TensorBoard event files (no TensorFlow needed).

  Locally through TensorBoard's ``EventFileWriter`` (appends). An object
  store cannot append, so for a URL the records are kept in memory and the
  whole event file is rewritten at ``flush`` (the trainer flushes at every
  checkpoint) and at ``close``.
  """

  def __init__(self, logdir: str):
    self._remote = rundir.is_url(logdir)
    if not self._remote:
      self._writer = EventFileWriter(logdir)
      return
    self._path = rundir.join(logdir, "events.out.tfevents.%010d.%s.%s" % (
        time.time(), socket.gethostname(), os.getpid()))
    self._buffer = io.BytesIO()
    self._records = record_writer.RecordWriter(self._buffer)
    self._add(event_pb2.Event(wall_time=time.time(),
                              file_version="brain.Event:2"))
    self.flush()

  def _add(self, event) -> None:
    if self._remote:
      self._records.write(event.SerializeToString())
    else:
      self._writer.add_event(event)

  def scalars(self, step: int, values: dict) -> None:
    summary = summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag=k, simple_value=float(v))
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)])
    self._add(event_pb2.Event(wall_time=time.time(), step=step,
                              summary=summary))

  def flush(self) -> None:
    if self._remote:
      epath.Path(self._path).write_bytes(self._buffer.getvalue())
    else:
      self._writer.flush()

  def close(self) -> None:
    if self._remote:
      self.flush()
    else:
      self._writer.close()


class Progress:
  """A tqdm bar with loss, LR and tokens/s; silent when disabled."""

  def __init__(self, total: int, enabled: bool, desc: str):
    self._bar = None
    if enabled:
      from tqdm import tqdm
      self._bar = tqdm(total=total, desc=desc, unit="step",
                       file=sys.stderr, dynamic_ncols=True, mininterval=1.0)

  def update(self, step: int, row: dict) -> None:
    if self._bar is None:
      return
    self._bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}",
                          tok_s=f"{row.get('tokens_per_s', 0):.3g}",
                          refresh=False)
    self._bar.update(step - self._bar.n)  # redraws at most once a second

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


class RunWriters:
  """metrics.jsonl, fingerprints.jsonl and TensorBoard of one run directory.

  Only process 0 writes; on other processes every method does nothing.
  """

  def __init__(self, workdir: str, resume_step: int, fingerprints: bool):
    self.enabled = jax.process_index() == 0
    self.metrics = self.prints = self.events = None
    if self.enabled:
      self.metrics = rundir.MetricsLog(workdir, resume_step)
      if fingerprints:
        self.prints = rundir.MetricsLog(workdir, resume_step,
                                        name=rundir.FINGERPRINTS)
      self.events = EventWriter(rundir.events_dir(workdir))

  def row(self, row: dict) -> None:
    if self.enabled:
      self.metrics.write([row])
      self.events.scalars(row["step"], row)

  def fingerprint(self, step: int, digest: str) -> None:
    if self.prints is not None:
      self.prints.write([{"step": step, "batch": digest}])

  def flush(self) -> None:
    """Makes the rows written so far durable (an object store rewrites the
    file; a local one is flushed at every row already)."""
    for w in (self.metrics, self.prints, self.events):
      if w is not None:
        w.flush()

  def close(self) -> None:
    for w in (self.metrics, self.prints, self.events):
      if w is not None:
        w.close()
