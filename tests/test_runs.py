"""Run directories under stress: kills, SIGTERM, corrupt checkpoints, branches,
WSD-S and the run tree. Every comparison of parameters is exact (CPU)."""

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import jax
import ml_collections
import numpy as np
import pytest

from wsd_jax import runs, schedules, train
from wsd_jax.runs import rundir
from wsd_jax.train import load_state, train_and_evaluate
from tiny import config_file, tiny_config

# Kills, signals and branches in subprocesses and module fixtures: slow lane.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, JAX_PLATFORMS="cpu")
PEAK = 0.05
# Kill points: a fixed seed, so a failure reproduces; WSD_KILL_SEED varies it.
KILL_SEED = int(os.environ.get("WSD_KILL_SEED", 20261127))


def tiny(schedule: schedules.Schedule, steps: int,
         **train) -> ml_collections.ConfigDict:
  return tiny_config(schedule, **dict(dict(
      steps=steps, log_every=1, eval_every=10, checkpoint_every=10,
      fingerprints=True), **train))


def without_time(rows):
  return [{k: v for k, v in r.items() if not k.endswith("_time_s")}
          for r in rows]


def assert_same_state(dir_a, dir_b, step_a=None, step_b=None):
  """The whole train state (params, optimizer, counters) is bit-identical."""
  _, a = load_state(str(dir_a), step_a)
  _, b = load_state(str(dir_b), step_b)
  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def assert_same_run(resumed, reference):
  assert without_time(rundir.read_metrics(resumed)) == without_time(
      rundir.read_metrics(reference))
  with open(os.path.join(resumed, "fingerprints.jsonl")) as f:
    resumed_prints = f.read().splitlines()
  with open(os.path.join(reference, "fingerprints.jsonl")) as f:
    assert resumed_prints == f.read().splitlines()
  assert_same_state(resumed, reference)


def hash_files(root, skip=("branches",)):
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if d not in skip)
    for name in filenames:
      path = os.path.join(dirpath, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
  return out


class App:
  """An ``experiments`` app in a subprocess; its output goes to files (a pipe
  that nobody reads would block it)."""

  def __init__(self, module, *args):
    self.out, self.err = (tempfile.TemporaryFile("w+") for _ in range(2))
    self.proc = subprocess.Popen(
        [sys.executable, "-m", f"experiments.{module}", *map(str, args)],
        cwd=ROOT, env=ENV, stdout=self.out, stderr=self.err, text=True)

  def wait(self, timeout=120):
    """Waits for the exit; sets returncode, stdout and stderr."""
    self.returncode = self.proc.wait(timeout)
    for f in (self.out, self.err):
      f.seek(0)
    self.stdout, self.stderr = self.out.read(), self.err.read()
    return self


def cli(module, *args):
  return App(module, *args).wait()


def count_lines(path):
  try:
    with open(path) as f:
      return sum(1 for line in f if line.endswith("\n"))
  except FileNotFoundError:
    return 0


def interrupt(cmd_args, workdir, lines, sig, timeout=60):
  """Starts ``experiments.train``, sends ``sig`` once metrics.jsonl has
  ``lines`` complete lines, and returns the finished process."""
  app = App("train", *cmd_args)
  metrics = os.path.join(workdir, rundir.METRICS)
  deadline = time.time() + timeout
  while app.proc.poll() is None and count_lines(metrics) < lines:
    assert time.time() < deadline, "training never reached the kill point"
    time.sleep(0.002)
  if app.proc.poll() is None:
    app.proc.send_signal(sig)
  return app.wait(timeout)


# --- kill / SIGTERM / corrupt checkpoint: the rerun equals an uninterrupted run


RESUME_SCHEDULE = schedules.wsd(PEAK, total_steps=40, decay_steps=10,
                                warmup_steps=5)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
  """An uninterrupted run; saves every 3 steps, so kills often hit a save."""
  config = tiny(RESUME_SCHEDULE, 40, checkpoint_every=3, eval_every=7)
  workdir = tmp_path_factory.mktemp("reference")
  train_and_evaluate(config, str(workdir))
  return config, workdir


def test_sigkill_at_random_steps_then_rerun_is_exact(reference_run, tmp_path):
  config, reference = reference_run
  rng = random.Random(KILL_SEED)
  args = [f"--config={config_file(tmp_path, config)}"]
  for trial in range(3):
    workdir = tmp_path / f"trial{trial}"
    kill_at = rng.randint(1, 36)
    msg = f"trial {trial}: SIGKILL after {kill_at} lines (seed {KILL_SEED})"
    killed = interrupt(args + [f"--workdir={workdir}"], workdir, kill_at,
                       signal.SIGKILL)
    # A trial whose process finished before the kill tests nothing.
    assert killed.returncode == -signal.SIGKILL, (msg, killed.stderr[-2000:])
    assert count_lines(workdir / rundir.METRICS) < 40, msg
    rerun = cli("train", *args, f"--workdir={workdir}")
    assert rerun.returncode == 0, (msg, rerun.stderr[-3000:])
    assert_same_run(workdir, reference)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_saves_exits_nonzero_and_rerun_is_exact(
    reference_run, tmp_path, sig):
  config, reference = reference_run
  args = [f"--config={config_file(tmp_path, config)}",
          f"--workdir={tmp_path / 'run'}"]
  stop_at = random.Random(KILL_SEED + sig).randint(1, 30)
  stopped = interrupt(args, tmp_path / "run", stop_at, sig)
  assert stopped.returncode == 128 + sig, stopped.stderr[-3000:]
  assert sig.name in stopped.stderr and "resume" in stopped.stdout
  assert "Traceback" not in stopped.stderr
  last = rundir.read_metrics(tmp_path / "run")[-1]["step"]
  assert last < 40, "SIGTERM came too late to test anything"
  steps = runs.checkpoint_steps(str(tmp_path / "run"))
  assert steps[-1] == last, (steps, last)  # saved where it stopped
  rerun = cli("train", *args)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert_same_run(tmp_path / "run", reference)


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(
    reference_run, tmp_path, caplog):
  config, reference = reference_run
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  latest = os.path.join(rundir.checkpoint_dir(workdir), "40")
  for dirpath, _, filenames in os.walk(latest):
    for name in filenames:
      with open(os.path.join(dirpath, name), "wb") as f:
        f.write(b"not a checkpoint")
  train_and_evaluate(config, str(workdir))
  assert "checkpoint 40" in caplog.text and "unreadable" in caplog.text
  assert "falling back to the previous one" in caplog.text
  rows = rundir.read_metrics(workdir)
  assert [r["step"] for r in rows] == list(range(1, 41))
  assert_same_run(workdir, reference)
  # The bad step was moved aside, not deleted, and step 40 saved afresh.
  assert os.listdir(f"{rundir.checkpoint_dir(workdir)}.unreadable")
  assert runs.checkpoint_steps(str(workdir))[-1] == 40


# --- branches ------------------------------------------------------------------


MAIN_SCHEDULE = schedules.wsd(PEAK, total_steps=60, decay_steps=20,
                              warmup_steps=5)
# (name, from_step, decay_steps, shape, final_value)
BRANCHES = [("a", 20, 15, "1-sqrt", 1e-3), ("b", 30, 10, "linear", 0.0)]


@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
  """A main run trained to step 30 (checkpoints 10, 20, 30), no branches."""
  workdir = tmp_path_factory.mktemp("main") / "main"
  train_and_evaluate(tiny(MAIN_SCHEDULE, 30), str(workdir))
  return workdir


@pytest.fixture(scope="module")
def sequential_branches(main_run, tmp_path_factory):
  """The BRANCHES forked one after the other in a copy of the main run."""
  workdir = tmp_path_factory.mktemp("sequential") / "main"
  shutil.copytree(main_run, workdir)
  before = hash_files(workdir)
  for name, at, decay, shape, final in BRANCHES:
    train.branch(str(workdir), at, decay, shape, final, name=name)
  assert hash_files(workdir) == before, "a branch changed the main run"
  return workdir


@pytest.mark.parametrize("name,at,decay,shape,final", BRANCHES)
def test_branch_equals_one_run_with_the_branch_schedule(
    sequential_branches, tmp_path, name, at, decay, shape, final):
  bdir = rundir.branch_dir(str(sequential_branches), name)
  sched = schedules.branch(MAIN_SCHEDULE, at, decay, shape, final)
  train_and_evaluate(tiny(sched, at + decay), str(tmp_path))
  assert_same_state(bdir, tmp_path)
  main_rows = [r for r in rundir.read_metrics(sequential_branches)
               if r["step"] <= at]
  assert without_time(main_rows + rundir.read_metrics(bdir)) == without_time(
      rundir.read_metrics(tmp_path))
  run = rundir.read_run(bdir)
  assert (run["parent"], run["fork_step"]) == (os.path.join("..", ".."), at)
  assert schedules.from_config(run["schedule"]) == sched


def test_two_branches_at_once_do_not_interfere(main_run, sequential_branches,
                                               tmp_path):
  workdir = tmp_path / "main"
  shutil.copytree(main_run, workdir)
  before = hash_files(workdir)
  apps = [App("branch", f"--workdir={workdir}", f"--from_step={at}",
              f"--decay_steps={decay}", f"--decay_shape={shape}",
              f"--final_value={final}", f"--name={name}")
          for name, at, decay, shape, final in BRANCHES]
  for app in apps:
    app.wait()
    assert app.returncode == 0, app.stderr[-3000:]
    assert "eval_loss" in app.stdout
  assert hash_files(workdir) == before, "a branch changed the main run"
  for name, *_ in BRANCHES:
    concurrent = rundir.branch_dir(str(workdir), name)
    sequential = rundir.branch_dir(str(sequential_branches), name)
    assert_same_state(concurrent, sequential)
    assert without_time(rundir.read_metrics(concurrent)) == without_time(
        rundir.read_metrics(sequential))

  # The tree of what the two processes made.
  result = cli("runs", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  assert lines[0].split()[:4] == ["run", "fork", "steps", "eval_loss"]
  assert lines[1].split()[:3] == ["main", "30", f"{rundir.read_metrics(workdir)[-1]['eval_loss']:.5f}"]
  for (name, at, decay, shape, final), line in zip(BRANCHES, lines[2:4]):
    eval_loss = rundir.read_metrics(
        rundir.branch_dir(str(workdir), name))[-1]["eval_loss"]
    assert line.startswith("  └ " + name), line  # indented under its parent
    assert line.split()[2:5] == [str(at), str(at + decay), f"{eval_loss:.5f}"]
    assert f"{shape} decay {decay} steps to {final:g}" in line
  assert os.path.getsize(workdir / "plots" / "runs.png") > 5_000
  assert f"wrote {workdir / 'plots' / 'runs.png'}" in result.stdout


def test_branch_name_collision_missing_step_and_rerun(main_run, tmp_path):
  workdir = tmp_path / "main"
  shutil.copytree(main_run, workdir)
  first = train.branch(str(workdir), 20, 5, name="x")
  assert first["step"] == 25
  again = train.branch(str(workdir), 20, 5, name="x")  # same: resumes
  assert again["start_step"] == 25 and again["step"] == 25
  with pytest.raises(ValueError, match="'x' already exists"):
    train.branch(str(workdir), 20, 6, name="x")
  with pytest.raises(ValueError, match="'x' already exists"):
    train.branch(str(workdir), 10, 5, name="x")
  with pytest.raises(ValueError, match="'x' already exists"):
    train.branch(str(workdir), 20, 5, "cosine", name="x")
  replaced = train.branch(str(workdir), 10, 5, name="x", overwrite=True)
  assert replaced["start_step"] == 10 and replaced["step"] == 15
  assert rundir.read_run(rundir.branch_dir(str(workdir), "x"))[
      "fork_step"] == 10
  with pytest.raises(ValueError, match=r"no checkpoint at step 7 .*"
                     r"available steps: \[10, 20, 30\]"):
    train.branch(str(workdir), 7, 5)


def test_apps_on_a_workdir_with_no_run(tmp_path):
  apps = {module: App(module, f"--workdir={tmp_path}", *extra)
          for module, extra in (
              ("branch", ["--from_step=10", "--decay_steps=5"]), ("runs", []))}
  for module, app in apps.items():
    result = app.wait()
    assert result.returncode != 0
    assert f"'{tmp_path}' holds no run (no run.json)" in result.stderr, (
        module, result.stderr[-2000:])
    assert "python -m experiments.train" in result.stderr
  assert os.listdir(tmp_path) == []


# --- WSD-S ---------------------------------------------------------------------


def test_wsd_s_through_branches_equals_one_wsd_s_run(tmp_path):
  """Main at warmup + constant, decays forked at each budget, WSD-S continues
  the main from the first decay: equal to one ``wsd_s`` run, bit for bit."""
  budgets, fraction, warmup, final = (20, 40), 0.25, 5, 5e-3
  wsds = schedules.wsd_s(PEAK, budgets, fraction, warmup, final_value=final)
  assert wsds.checkpoint_steps == (20, 45)  # decays [15, 20] and [35, 45]
  every = dict(checkpoint_every=5, eval_every=5)  # each piece ends on both
  reference = tmp_path / "reference"
  train_and_evaluate(tiny(wsds, 45, **every, keep_steps=(20, 35)),
                     str(reference))

  constant = schedules.wsd(PEAK, total_steps=10**6, decay_steps=0,
                           warmup_steps=warmup)
  main = tmp_path / "main"
  train_and_evaluate(tiny(constant, 15, **every), str(main))
  train.branch(str(main), 15, 5, final_value=final, name="d1")
  # WSD-S, stopped half way and rerun: it resumes from its own checkpoint.
  train.continue_from_branch(tiny(constant, 30, **every), str(main), "d1")
  summary = train.continue_from_branch(
      tiny(constant, 35, **every), str(main), "d1")
  assert summary["start_step"] == 30
  train.branch(str(main), 35, 10, final_value=final, name="d2")

  d1, d2 = (rundir.branch_dir(str(main), n) for n in ("d1", "d2"))
  assert_same_state(d1, reference, 20, 20)
  assert_same_state(main, reference, 35, 35)
  assert_same_state(d2, reference, 45, 45)
  # The pieces' metrics and batches, put together, are the reference's.
  for name in (rundir.METRICS, "fingerprints.jsonl"):
    main_rows = rundir.read_metrics(main, name)
    pieces = ([r for r in main_rows if r["step"] <= 15] +
              rundir.read_metrics(d1, name) +
              [r for r in main_rows if r["step"] > 15] +
              rundir.read_metrics(d2, name))
    assert without_time(pieces) == without_time(
        rundir.read_metrics(reference, name)), name
  # run.json's effective schedule gives the LRs the main state has seen.
  run = rundir.read_run(main)
  effective = schedules.from_config(run["schedule"])
  steps = np.arange(35)
  np.testing.assert_array_equal(effective(steps), wsds(steps))
  assert run["resumes"] == [{"branch": "d1", "branch_step": 20, "step": 20}]
  effective_d2 = schedules.from_config(rundir.read_run(d2)["schedule"])
  np.testing.assert_array_equal(effective_d2(np.arange(45)),
                                wsds(np.arange(45)))


def test_wsd_s_refuses_a_main_run_past_the_fork_step(main_run, tmp_path):
  workdir = tmp_path / "main"
  shutil.copytree(main_run, workdir)
  train.branch(str(workdir), 20, 5, name="early")
  with pytest.raises(ValueError, match="trained past the fork step 20"):
    train.continue_from_branch(tiny(MAIN_SCHEDULE, 40), str(workdir),
                               "early")
