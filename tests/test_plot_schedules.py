"""The schedule-family figure: every schedule is drawn, the PNG is written."""

import pytest
import subprocess
import sys

import numpy as np

from experiments import plot_schedules
from wsd_jax import schedules


def test_family_covers_every_schedule_on_the_budget():
  fam = plot_schedules.family(10_000, 1e-3)
  names = {s.name for s in fam.values()}
  assert names == set(schedules.SCHEDULES) - {"tabulated", "splice"}
  steps = np.arange(10_001)
  for title, sched in fam.items():
    lrs = np.asarray(sched(steps))
    assert np.all(np.isfinite(lrs)) and lrs.max() <= 1e-3 * (1 + 1e-6), title


@pytest.mark.slow
def test_command_writes_png(tmp_path):
  out = tmp_path / "s.png"
  subprocess.run([sys.executable, "-m", "experiments.plot_schedules",
                  f"--out={out}", "--total_steps=2000"], check=True,
                 capture_output=True)
  data = out.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
