"""Run directories survive users' mistakes: a changed config, a damaged file,
a second trainer, a branch others depend on, non-finite steps."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from wsd_jax import runs, schedules, train
from wsd_jax.runs import rundir
from wsd_jax.train import train_and_evaluate
from tiny import config_file, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, JAX_PLATFORMS="cpu")
SCHEDULE = schedules.wsd(0.05, total_steps=40, decay_steps=10, warmup_steps=5)


def tiny(steps=40, **train_kw):
  return tiny_config(SCHEDULE, **dict(dict(steps=steps, log_every=5,
                                           eval_every=10,
                                           checkpoint_every=10), **train_kw))


def digest(root) -> dict:
  """sha256 of every file under ``root``."""
  out = {}
  for dirpath, _, names in os.walk(root):
    for n in names:
      path = os.path.join(dirpath, n)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
  return out


def app(module, *args, timeout=180):
  return subprocess.run([sys.executable, "-m", f"experiments.{module}",
                         *map(str, args)], cwd=ROOT, env=ENV,
                        capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished 40-step run (checkpoints 10..40, 8 metrics rows)."""
  workdir = tmp_path_factory.mktemp("finished") / "run"
  train_and_evaluate(tiny(), str(workdir))
  return workdir


def copy(src, dst):
  import shutil
  shutil.copytree(src, dst)
  return dst


# --- a changed config ----------------------------------------------------------


def test_changed_model_config_is_refused_before_anything_is_touched(
    finished, tmp_path):
  workdir = copy(finished, tmp_path / "run")
  before = digest(workdir)
  changed = tiny()
  changed.data.vocab_size = 32
  with pytest.raises(runs.ConfigChangedError,
                     match=r"data\.vocab_size: 16 -> 32.*new --workdir.*"
                           r"experiments\.train takes --allow_changes"):
    train_and_evaluate(changed, str(workdir))
  assert digest(workdir) == before  # nothing moved, nothing rewritten
  assert not os.path.exists(f"{rundir.checkpoint_dir(workdir)}.unreadable")
  # The right config then resumes from the last checkpoint.
  summary = train_and_evaluate(tiny(steps=50), str(workdir))
  assert summary["start_step"] == 40 and summary["step"] == 50
  assert [r["step"] for r in rundir.read_metrics(workdir)] == list(
      range(5, 55, 5))


@pytest.mark.slow
def test_changed_config_from_the_command_line_is_one_line(finished, tmp_path):
  workdir = copy(finished, tmp_path / "run")
  before = digest(workdir)
  result = app("train", f"--config={config_file(tmp_path, tiny())}",
               f"--workdir={workdir}", "--config.data.vocab_size=32")
  assert result.returncode != 0
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "data.vocab_size: 16 -> 32" in errors[0], (
      result.stderr[-2000:])
  assert "Traceback" not in result.stderr
  assert digest(workdir) == before


@pytest.mark.slow
def test_a_schedule_change_on_resume_needs_allow_changes(finished, tmp_path):
  workdir = copy(finished, tmp_path / "run")
  other = tiny(steps=60)
  other.schedule = tiny_config(schedules.cosine(0.05, 60)).schedule
  with pytest.raises(runs.ConfigChangedError, match="allow_changes=schedule"):
    train_and_evaluate(other, str(workdir))
  summary = train_and_evaluate(other, str(workdir),
                               allow_changes=("schedule",))
  assert summary["start_step"] == 40 and summary["step"] == 60
  effective = runs.Run(str(workdir)).schedule
  steps = np.arange(60)
  expect = np.where(steps < 40, SCHEDULE(steps),
                    schedules.cosine(0.05, 60)(steps))
  np.testing.assert_array_equal(effective(steps), expect)


def test_a_checkpoint_of_another_model_is_not_moved_aside(finished):
  ckpt = runs.Checkpointer(rundir.checkpoint_dir(finished), read_only=True)
  _, state = train.load_state(str(finished))
  wrong = jax.tree.map(lambda x: np.zeros((3,) + np.shape(x), np.float32),
                       state)
  with pytest.raises(runs.CheckpointMismatchError, match="does not fit"):
    ckpt.restore_latest(wrong, None)
  assert ckpt.steps()[-1] == 40


# --- damaged files -------------------------------------------------------------


@pytest.mark.slow
def test_a_damaged_metrics_line_drops_nothing_else(finished, tmp_path, caplog):
  workdir = copy(finished, tmp_path / "run")
  path = workdir / rundir.METRICS
  lines = path.read_text().splitlines(keepends=True)
  assert len(lines) == 8
  lines[2] = '{"step": 20, "tok\n'  # line 3 damaged
  path.write_text("".join(lines))
  run = runs.Run(str(workdir))
  assert [r["step"] for r in run.metrics] == [5, 10, 20, 25, 30, 35, 40]
  assert f"{path}: skipped damaged line(s) [3]" in caplog.text
  shown = app("runs", f"--workdir={workdir}")
  assert shown.returncode == 0, shown.stderr[-2000:]
  assert shown.stdout.splitlines()[1].split()[:2] == ["run", "40"]
  # Resuming keeps every good row and sets the damaged one aside.
  train_and_evaluate(tiny(steps=50), str(workdir))
  assert [r["step"] for r in rundir.read_metrics(workdir)] == [
      5, 10, 20, 25, 30, 35, 40, 45, 50]
  aside = (workdir / (rundir.METRICS + ".damaged")).read_text()
  assert f"{path}:3:" in aside and '"tok' in aside


def test_a_torn_last_line_is_repaired_silently(finished, tmp_path, caplog):
  workdir = copy(finished, tmp_path / "run")
  with open(workdir / rundir.METRICS, "a") as f:
    f.write('{"step": 45, "lo')  # a crash in the middle of a write
  assert [r["step"] for r in rundir.read_metrics(workdir)][-1] == 40
  assert "damaged" not in caplog.text


@pytest.mark.slow
def test_damaged_or_newer_run_json_is_a_clear_error(finished, tmp_path):
  workdir = copy(finished, tmp_path / "run")
  run_json = workdir / rundir.RUN
  good = run_json.read_text()
  run_json.write_text(good[:40])
  with pytest.raises(runs.RunDirError, match=r"run.json is damaged \(line"):
    runs.Run(str(workdir))
  run_json.write_text(json.dumps(dict(json.loads(good), format=99)))
  with pytest.raises(runs.RunDirError, match="newer wsd_jax"):
    runs.Run(str(workdir))
  result = app("runs", f"--workdir={workdir}")
  assert result.returncode != 0 and "newer wsd_jax" in result.stderr
  assert "Traceback" not in result.stderr


# --- branches that others depend on --------------------------------------------


@pytest.mark.slow
def test_branch_rerun_after_wsd_s_resumes_and_overwrite_is_refused(tmp_path):
  constant = schedules.wsd(0.05, total_steps=10**6, decay_steps=0,
                           warmup_steps=5)
  every = dict(checkpoint_every=5, eval_every=5)
  main = str(tmp_path / "main")
  train_and_evaluate(tiny_config(constant, steps=15, **every), main)
  train.branch(main, 15, 5, final_value=5e-3, name="d1")
  train.continue_from_branch(tiny_config(constant, steps=30, **every), main,
                             "d1")
  # The same branch command again: resumed (finished), no false collision.
  again = train.branch(main, 15, 5, final_value=5e-3, name="d1")
  assert again["start_step"] == 20 and again["step"] == 20
  with pytest.raises(ValueError, match=r"cannot be overwritten: other runs "
                     r"depend on it \(the main run continued from it at step "
                     r"20 \(WSD-S\)\)"):
    train.branch(main, 15, 8, final_value=5e-3, name="d1", overwrite=True)
  assert rundir.is_run(rundir.branch_dir(main, "d1"))


# --- two trainers, signals ----------------------------------------------------


@pytest.mark.slow
def test_a_second_trainer_is_refused_naming_the_first(finished, tmp_path):
  workdir = copy(finished, tmp_path / "run")
  with runs.RunLock(str(workdir)):
    result = app("train", f"--config={config_file(tmp_path, tiny())}",
                 f"--workdir={workdir}", "--config.train.steps=50")
    assert result.returncode != 0
    assert f"in use by another trainer (pid {os.getpid()}" in result.stderr
    assert "Traceback" not in result.stderr
  # Released: the same command now trains.
  result = app("train", f"--config={config_file(tmp_path, tiny())}",
               f"--workdir={workdir}", "--config.train.steps=50")
  assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_a_lock_left_by_a_killed_trainer_is_not_stale(tmp_path):
  workdir = tmp_path / "run"
  config = tiny(steps=100000, log_every=1, checkpoint_every=50)
  proc = subprocess.Popen(
      [sys.executable, "-m", "experiments.train",
       f"--config={config_file(tmp_path, config)}", f"--workdir={workdir}"],
      cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 120
  while not (workdir / rundir.METRICS).exists() or not (
      workdir / rundir.METRICS).read_text().count("\n") > 3:
    assert time.time() < deadline and proc.poll() is None
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert (workdir / ".lock").exists()
  with runs.RunLock(str(workdir)):  # the kernel released the dead one's lock
    pass


# --- non-finite steps ----------------------------------------------------------


@pytest.mark.slow
def test_skipped_nonfinite_steps_are_counted_and_metrics_stay_json(
    tmp_path, caplog):
  config = tiny_config(schedules.constant(1e38), steps=20, log_every=2,
                       eval_every=10, checkpoint_every=10,
                       skip_nonfinite=True)
  summary = train_and_evaluate(config, str(tmp_path))
  assert summary["nonfinite_steps"] > 0
  strict = lambda c: (_ for _ in ()).throw(ValueError(c))
  rows = [json.loads(l, parse_constant=strict)
          for l in (tmp_path / rundir.METRICS).read_text().splitlines()]
  assert rows[-1]["nonfinite_steps"] == summary["nonfinite_steps"]
  assert f"skipped {summary['nonfinite_steps']} step(s)" in caplog.text


@pytest.mark.slow
def test_runs_app_reads_a_read_only_run_directory(finished, tmp_path):
  """The tree of a run on a read-only mount (an archive, a shared result)."""
  workdir = copy(finished, tmp_path / "ro" / "run")
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  ro = tmp_path / "ro"
  script = (f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} && "
            f"touch {ro}/probe 2>/dev/null && exit 97; "
            f"{sys.executable} -m experiments.runs --workdir={workdir}")
  result = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=cwd,
                          env=dict(ENV, PYTHONPATH=ROOT), capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.splitlines()[1].split()[:2] == ["run", "40"]
  assert "wrote run_runs.png" in result.stdout
  assert (cwd / "run_runs.png").stat().st_size > 5000
  assert not (workdir / "plots").exists()


def test_tabulated_runs_resume_and_train_as_one_population(tmp_path):
  """A run on per-step LRs (a refined or law-optimised schedule) resumes
  after a stop, and two of them share one vmapped program."""
  lrs = np.linspace(0.05, 0.0, 40).astype(np.float32)
  def tab(scale, **train_kw):
    return tiny_config(schedules.tabulated(lrs * scale), **train_kw)
  half = str(tmp_path / "half")
  train_and_evaluate(tab(1.0, steps=20), half)
  train_and_evaluate(tab(1.0), half)  # resumes at 20: the values are the same
  full = str(tmp_path / "full")
  train_and_evaluate(tab(1.0), full)
  out = train_and_evaluate(tab(1.0), full)  # rerun of a finished run
  assert out["step"] == 40
  np.testing.assert_allclose(runs.Run(half).column("loss"),
                             runs.Run(full).column("loss"), rtol=2e-5)
  with pytest.raises(runs.ConfigChangedError, match="allow_changes"):
    train_and_evaluate(tab(0.5), full)  # other values: refused
  assert schedules.equal(runs.Run(full).schedule, schedules.tabulated(lrs))
  assert not schedules.equal(runs.Run(full).schedule,
                             schedules.tabulated(lrs * 0.5))
  out = train.train_specs([runs.RunSpec(tab(s), str(tmp_path / f"p{s}"))
                           for s in (1.0, 0.5)])
  np.testing.assert_allclose(runs.Run(str(tmp_path / "p1.0")).per_step("lr"),
                             runs.Run(full).per_step("lr"), rtol=1e-6)
  np.testing.assert_allclose(runs.Run(str(tmp_path / "p0.5")).per_step("lr"),
                             0.5 * lrs, rtol=1e-6)
