"""Figures a researcher reads first: distinct colours, visible short lines,
and the library leaves matplotlib's backend alone."""

import subprocess
import sys

import matplotlib.colors as mcolors
import numpy as np
import pytest

from wsd_jax import plots


@pytest.fixture
def drawn(monkeypatch):
  """Captures the figure ``plots.save`` is given instead of writing it."""
  figs = []
  monkeypatch.setattr(plots, "save", lambda fig, path: figs.append(fig) or path)
  return figs


def test_many_series_get_distinct_colours_and_a_legend_beside(drawn):
  series = [(f"m{i:03d}", np.arange(10), np.arange(10) + i) for i in range(12)]
  plots.curves(series, "unused.png")
  lines = drawn[0].axes[0].get_lines()
  colours = {mcolors.to_hex(l.get_color()) for l in lines}
  assert len(colours) == 12
  legend = drawn[0].axes[0].get_legend()
  assert [t.get_text() for t in legend.get_texts()] == [s[0] for s in series]


def test_a_short_series_is_drawn_with_markers(drawn):
  plots.curves([("main", np.arange(50), np.ones(50)),
                ("branch", np.array([40, 50]), np.array([1.0, 0.9]))],
               "unused.png")
  main, branch = drawn[0].axes[0].get_lines()
  assert main.get_marker() in ("None", None, "")
  assert branch.get_marker() not in ("None", None, "")
  assert branch.get_fillstyle() == "none"  # one under another stays visible


@pytest.mark.slow
def test_importing_the_library_leaves_the_backend_alone():
  code = ("import matplotlib; matplotlib.use('svg'); "
          "import wsd_jax, wsd_jax.plots, wsd_jax.train, wsd_jax.reports, "
          "wsd_jax.studies; print(matplotlib.get_backend())")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True)
  assert out.stdout.strip() == "svg"


def test_one_colour_per_method():
  assert len(set(plots.METHOD_COLORS.values())) == len(plots.METHOD_COLORS)
  assert plots.color("wsd") != plots.color("cyclic_cosine")


@pytest.mark.slow
def test_lr_figure_and_metrics_rows_agree_on_the_step_convention(
    tmp_path, drawn):
  """Row ``s`` of metrics.jsonl logs the LR of the s-th update, schedule(s-1);
  the LR figure draws schedule(t) at t, so the two coincide point by point."""
  sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
  from tiny import tiny_config
  from wsd_jax import reports, schedules
  from wsd_jax.runs import rundir
  from wsd_jax.train import train_and_evaluate
  sched = schedules.wsd(0.05, total_steps=30, decay_steps=10, warmup_steps=5)
  train_and_evaluate(tiny_config(sched, steps=30, log_every=1), str(tmp_path))
  reports.run_figures(str(tmp_path))
  lr_line = drawn[1].axes[0].get_lines()[0]
  x, y = lr_line.get_xdata(), lr_line.get_ydata()
  np.testing.assert_array_equal(x, np.arange(30))
  np.testing.assert_allclose(y, sched(np.arange(30)), rtol=1e-6)
  rows = rundir.read_metrics(str(tmp_path))
  np.testing.assert_allclose([r["lr"] for r in rows],
                             [y[r["step"] - 1] for r in rows], rtol=1e-6)


def test_show_png_draws_the_file_and_closes_its_figure(tmp_path, monkeypatch):
  import matplotlib.pyplot as plt
  path = plots.curves([("a", np.arange(5), np.arange(5.0))],
                      str(tmp_path / "c.png"))
  shown = []
  monkeypatch.setattr(plt, "show", lambda: shown.append(
      plt.gca().get_images()[0].get_array().shape))
  plots.show_png(path)
  height, width = plt.imread(path).shape[:2]
  assert shown and shown[0][:2] == (height, width)
  assert not plt.get_fignums()


def test_palette_stays_distinct_beyond_ten():
  for n in (3, 13, 20, 30):
    colours = {mcolors.to_hex(c) for c in plots.palette(n)}
    assert len(colours) == n
