r"""How long an asynchronous checkpoint holds up training.

    python -m bench.checkpoint_block [--size=nano] [--save_every=50] [--saves=3]

(model flags as in ``bench.step_throughput``.) The GPT step runs
``--saves`` windows of ``--save_every`` steps twice: once plain, once with
the library's ``Checkpointer`` (Orbax, async) saving the state and a grain
iterator at the end of every window, as the loop does. Reported: the time of
the ``save`` call itself and the total extra time of the saving run (the
call plus any stall of the following steps while the device-to-host copy or
the previous commit runs), as % of the steps between saves. Goal: <= 5%.
"""

from __future__ import annotations

import tempfile
import time

import grain
import jax
from absl import app, flags

from bench import step_throughput as st
from wsd_jax import schedules
from wsd_jax.runs.checkpoint import Checkpointer

_SAVE_EVERY = flags.DEFINE_integer("save_every", 50, "Steps between saves.")
_SAVES = flags.DEFINE_integer("saves", 3, "Saves (timed windows).")
_DIR = flags.DEFINE_string("dir", None, "Checkpoint directory (default: a "
                           "temporary one).")


def timed_windows(b: st.Bench, schedule, windows: int, every: int,
                  ckpt: Checkpointer | None) -> tuple[float, list[float]]:
  """Seconds for ``windows`` x ``every`` steps, and each save call's seconds.

  Like the loop, the step after a save is dispatched right away; the state
  is synced only at the end of a window (the loop's log/checkpoint step).
  """
  data_iter = iter(grain.MapDataset.range(10**6).to_iter_dataset())
  calls, start = [], time.perf_counter()
  for w in range(windows):
    for _ in range(every):
      b.state, m = b.step_fn(b.state, b.batch, schedule)
    jax.block_until_ready(m)  # the loop fetches metrics before it saves
    if ckpt is not None:
      t = time.perf_counter()
      ckpt.save((w + 1) * every, b.state, data_iter)
      calls.append(time.perf_counter() - t)
  jax.block_until_ready(b.state)
  return time.perf_counter() - start, calls


def main(argv):
  del argv
  b = st.build_from_flags()
  schedule = schedules.constant(3e-4)
  st.compile_and_warm(b, schedule, st.WARMUP.value)
  every, n = _SAVE_EVERY.value, _SAVES.value
  with tempfile.TemporaryDirectory() as tmp:
    ckpt = Checkpointer(_DIR.value or tmp, keep_last=2, async_save=True)
    # One untimed save first: it compiles the device-to-host transfers.
    timed_windows(b, schedule, 1, 1, ckpt)
    ckpt.wait()
    plain, _ = timed_windows(b, schedule, n, every, None)
    saving, calls = timed_windows(b, schedule, n, every, ckpt)
    t = time.perf_counter()
    ckpt.close()
    finish = time.perf_counter() - t
  state_gb = sum(x.nbytes for x in jax.tree.leaves(b.state)) / 1e9
  print(st.describe(b))
  print(f"checkpoint_block size={st.SIZE.value}: state {state_gb:.3f} GB, "
        f"{every} steps between saves take {1e3 * plain / n:.1f} ms; save "
        f"call {1e3 * max(calls):.1f} ms (max of {n}), total block "
        f"{1e3 * (saving - plain) / n:+.1f} ms per save = "
        f"{100 * (saving - plain) / plain:+.2f}% of training time "
        f"(call alone {100 * sum(calls) / plain:.2f}%); last commit "
        f"{1e3 * finish:.0f} ms after training")


if __name__ == "__main__":
  app.run(main)
