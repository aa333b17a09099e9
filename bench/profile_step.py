r"""Where the time of one train step goes: the top device ops of a trace.

  python -m bench.profile_step --size=124m --seq_len=1024 --batch=32 \
      --dtype=bfloat16 --attention=cudnn [--trace_dir=DIR]

Builds the GPT step exactly as ``bench/step_throughput.py`` does, traces a few
steps with ``jax.profiler`` (a Perfetto JSON trace), and prints the ops with
the most total time, grouped by name, with their share of all device op time.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import tempfile

import jax
from absl import app, flags

from bench import step_throughput as st
from wsd_jax import schedules

_TRACE_DIR = flags.DEFINE_string("trace_dir", None,
                                 "Where the trace goes (default: a tmp dir).")
_TOP = flags.DEFINE_integer("top", 25, "How many ops to print.")


def device_op_times(trace_file: str) -> collections.Counter:
  """Total microseconds per op name over the device tracks of a trace."""
  with gzip.open(trace_file) as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  names = {e["pid"]: e["args"]["name"] for e in events
           if e.get("ph") == "M" and e.get("name") == "process_name"}
  device = {pid for pid, n in names.items() if "/device:" in n}
  totals = collections.Counter()
  for e in events:
    if e.get("ph") != "X":
      continue
    if device and e.get("pid") not in device:
      continue
    if not device and e["name"].startswith("$"):  # CPU: skip Python frames
      continue
    totals[e["name"]] += float(e.get("dur", 0.0))
  return totals


def main(argv):
  del argv
  b = st.build_from_flags()
  sched = schedules.constant(1e-3)
  st.compile_and_warm(b, sched, 3)
  trace_dir = _TRACE_DIR.value or tempfile.mkdtemp(prefix="profile_step")
  with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
    st.run_steps(b, sched, st.STEPS.value)
  files = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"),
                    recursive=True)
  if not files:
    raise SystemExit(f"no perfetto trace under {trace_dir}")
  totals = device_op_times(max(files, key=os.path.getmtime))
  all_us = sum(totals.values())
  print(f"{st.STEPS.value} steps traced in {trace_dir}; device op time "
        f"{all_us / 1e3 / st.STEPS.value:.2f} ms/step")
  for name, us in totals.most_common(_TOP.value):
    print(f"{100 * us / all_us:6.2f}%  {us / 1e3 / st.STEPS.value:8.3f} "
          f"ms/step  {name[:110]}")


if __name__ == "__main__":
  app.run(main)
