r"""AutoLRS's host-side overhead: the forecasts and the Bayesian optimisation
as a share of the whole run's wall time, on the bigram.

  python -m bench.autolrs_overhead [--steps=800] [--k=10] [--variant=autolrs]

Trains ``configs/bigram.py`` with ``wsd_jax.adaptive.autolrs.train`` (its
default stages: tau = steps / 8, tau' = tau / 10, tau_max = steps / 2) in a
temporary directory and times every call of ``autolrs_search.forecast`` and
``GPLCB.ask``/``tell`` (the GP fit and the acquisition) by wrapping them.
Goal: overhead < 5% of the wall time. Prints the device, the wall time, the
host seconds and their share, and the mean cost per forecast and per
proposal.
"""

from __future__ import annotations

import collections
import functools
import shutil
import tempfile
import time

import jax
from absl import app, flags

from configs import bigram
from wsd_jax.adaptive import autolrs
from wsd_jax.adaptive import autolrs_search as search

_STEPS = flags.DEFINE_integer("steps", 800, "Exploit steps of the run.")
_K = flags.DEFINE_integer("k", 10, "LRs tried per stage.")
_VARIANT = flags.DEFINE_enum("variant", "autolrs", list(autolrs.VARIANTS),
                             "AutoLRS variant.")

_SECONDS: dict[str, list[float]] = collections.defaultdict(list)


def _timed(name: str, fn):
  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    begin = time.perf_counter()
    try:
      return fn(*args, **kwargs)
    finally:
      _SECONDS[name].append(time.perf_counter() - begin)
  return wrapped


def main(argv):
  del argv
  search.forecast = _timed("forecast", search.forecast)
  search.GPLCB.ask = _timed("bo_ask", search.GPLCB.ask)
  search.GPLCB.tell = _timed("bo_tell", search.GPLCB.tell)
  config = bigram.get_config()
  config.train.update(steps=_STEPS.value, progress=False, plots=False)
  workdir = tempfile.mkdtemp(prefix="autolrs_overhead_")
  try:
    begin = time.perf_counter()
    summary = autolrs.train(config, workdir, variant=_VARIANT.value,
                            k=_K.value)
    wall = time.perf_counter() - begin
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  host = sum(sum(v) for v in _SECONDS.values())
  device = jax.devices()[0].device_kind
  print(f"device: {device} ({jax.device_count()} device(s))")
  print(f"variant={_VARIANT.value} k={_K.value} steps={_STEPS.value} "
        f"compute_steps={summary['compute_steps']} "
        f"eval_loss={summary['eval_loss']:.4f}")
  for name, values in sorted(_SECONDS.items()):
    print(f"  {name:9s} {len(values):4d} calls  {sum(values):7.3f} s  "
          f"{1e3 * sum(values) / max(len(values), 1):7.2f} ms/call")
  print(f"wall {wall:.1f} s, host-side overhead (forecast + BO) "
        f"{host:.2f} s = {100 * host / wall:.2f}% (goal < 5%)")


if __name__ == "__main__":
  app.run(main)
