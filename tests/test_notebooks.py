"""The Colab notebooks (``notebooks/NAME.py``, jupytext ``py:percent``):
each runs top to bottom in its CI form (``WSD_JAX_QUICK=1``) and prints
what it should; each ``.ipynb`` is in sync with its ``.py``; the first code
cell installs the package on Colab only."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("schedules_tour", "river_valley", "loss_curve_laws", "algoperf")


def run_notebook(name: str, tmp_path: pathlib.Path) -> str:
  """Runs ``notebooks/NAME.py`` as a script in its quick form, in a scratch
  directory (nothing is written into the repository); returns its stdout."""
  env = dict(os.environ, WSD_JAX_QUICK="1", MPLBACKEND="Agg",
             TMPDIR=str(tmp_path),
             PYTHONPATH=os.pathsep.join(
                 [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
  proc = subprocess.run([sys.executable, str(NOTEBOOKS / f"{name}.py")],
                        cwd=tmp_path, env=env, capture_output=True, text=True,
                        timeout=600, check=False)
  assert proc.returncode == 0, (
      f"{name}.py exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
      f"\n--- stderr\n{proc.stderr[-5000:]}")
  return proc.stdout


def number(pattern: str, text: str) -> float:
  match = re.search(pattern, text, re.MULTILINE)
  assert match, f"{pattern!r} not in the output:\n{text[-3000:]}"
  return float(match.group(1))


@pytest.mark.slow
def test_schedules_tour(tmp_path):
  out = run_notebook("schedules_tour", tmp_path)
  assert number(r"^jit cache size after the sweep: (\d+)$", out) == 1
  assert number(r"^vmapped jit cache size: (\d+)$", out) == 1
  # The run tree (main run, branch, WSD-S, branch) has exactly wsd_s's LRs.
  assert number(r"^max \|tree LRs - wsd_s LRs\|: (\S+)$", out) == 0.0
  assert re.search(r"^wsd_main .*WSD-S resumed from linear_from\d+_d\d+",
                   out, re.MULTILINE), out


@pytest.mark.slow
def test_river_valley(tmp_path):
  out = run_notebook("river_valley", tmp_path)
  verdicts = re.findall(r"^(REPRODUCED|REFUTED|INCONCLUSIVE): (.+)$", out,
                        re.MULTILINE)
  assert len(verdicts) == 4, out
  assert any("WSD-S" in claim for _, claim in verdicts)
  assert any("uncertain tokens" in claim for _, claim in verdicts)
  # The equal-compute table: budget 160 costs WSD-S 168 steps; losses finite
  # and below the uniform model's log(128) = 4.85; then the paired
  # differences with their intervals.
  row = re.search(r"^\| 160 \| 168 \| ([\d.]+) ± [\d.]+ \| ([\d.]+) ± [\d.]+ "
                  r"\| ([\d.]+) ± [\d.]+ \| -?[\d.]+ \[.+\] \| -?[\d.]+ "
                  r"\[.+\] \|$", out, re.MULTILINE)
  assert row, out
  assert all(0 < float(v) < 4.85 for v in row.groups())


@pytest.mark.slow
def test_loss_curve_laws(tmp_path):
  out = run_notebook("loss_curve_laws", tmp_path)
  for law, bound in (("multipower", 0.02), ("annealing", 0.03)):
    err = number(rf"^held-out {law}: mean relative error ([\d.]+)%", out)
    assert 0 < err / 100 < bound, (law, err)
  assert re.search(r"^best WSD: WSD\(peak_value=120\.0, total_steps=200, "
                   r"decay_steps=\d+", out, re.MULTILINE), out
  # Each law-chosen schedule is predicted to beat the runs it was fitted on.
  predicted = dict(re.findall(r"^(.+?) +predicted final loss ([\d.]+)$", out,
                              re.MULTILINE))
  assert float(predicted["best WSD (law)"]) < float(predicted["wsd20"])
  assert float(predicted["free (law)"]) <= float(predicted["best WSD (law)"])


@pytest.mark.slow
def test_algoperf(tmp_path):
  out = run_notebook("algoperf", tmp_path)
  score = number(r"^\| cosine \| ([\d.]+) \| [\d.]+ \| 1\.000 \| \d+ \|$",
                 out)
  assert 0 <= score <= 1
  assert re.search(r"^\| wsd_linear \| [\d.]+ \|", out, re.MULTILINE), out
  assert re.search(r"^\| cosine \| bigram_quick \| ", out, re.MULTILINE), out


def cells(path: pathlib.Path) -> list[tuple[str, str]]:
  jupytext = pytest.importorskip("jupytext")
  return [(c.cell_type, c.source) for c in jupytext.read(path).cells]


@pytest.mark.parametrize("name", NAMES)
def test_ipynb_in_sync_with_py(name):
  assert (cells(NOTEBOOKS / f"{name}.ipynb") ==
          cells(NOTEBOOKS / f"{name}.py")), (
              f"notebooks/{name}.ipynb differs from its .py: run "
              f"jupytext --to ipynb notebooks/{name}.py")


def test_every_notebook_is_tested():
  assert sorted(p.stem for p in NOTEBOOKS.glob("*.py")) == sorted(NAMES)
  assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_first_code_cell_installs_on_colab_only(name):
  code = [src for kind, src in cells(NOTEBOOKS / f"{name}.py")
          if kind == "code"]
  first = code[0]
  assert 'REPO_URL = "' in first
  assert re.search(r'^if "google\.colab" in sys\.modules:\n  .*pip.*install',
                   first, re.MULTILINE | re.DOTALL), first
  assert 'f"git+{REPO_URL}"' in first
  assert not any("pip" in src for src in code[1:])


def test_one_repo_url():
  urls = {re.search(r'^REPO_URL = "(.+)"$',
                    (NOTEBOOKS / f"{n}.py").read_text(), re.MULTILINE)[1]
          for n in NAMES}
  assert len(urls) == 1, urls
