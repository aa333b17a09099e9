"""The apps' command line: every choice settable, one-line errors that leave
nothing behind, a readable console, --help and --print_config."""

import json
import logging
import os
import re
import subprocess
import sys
import textwrap

import pytest
import yaml

from experiments import cli

# Every case starts an app in a subprocess: slow lane.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, JAX_PLATFORMS="cpu")


def app(module, *args, timeout=300):
  return subprocess.run([sys.executable, "-m", f"experiments.{module}",
                         *map(str, args)], cwd=ROOT, env=ENV,
                        capture_output=True, text=True, timeout=timeout)


def python(code, *args, timeout=300):
  return subprocess.run([sys.executable, "-c", textwrap.dedent(code),
                         *map(str, args)], cwd=ROOT, env=ENV,
                        capture_output=True, text=True, timeout=timeout)


def printed_config(*args) -> tuple[dict, str]:
  """``experiments.train --print_config``: the YAML it prints, its stderr."""
  r = app("train", "--print_config", *args)
  assert r.returncode == 0, r.stderr
  return yaml.safe_load(r.stdout), r.stderr


@pytest.fixture
def text_file(tmp_path):
  path = tmp_path / "data.txt"
  path.write_text("The quick brown fox jumps over the lazy dog.\n" * 200)
  return path


def test_readme_gpt_command_sets_the_decay_shape(tmp_path, text_file):
  workdir = tmp_path / "gpt"
  out, err = printed_config(
      "--config=configs/gpt.py:size=nano", f"--workdir={workdir}",
      f"--config.data.paths={text_file}",
      "--config.schedule.decay_shape=1-sqrt", "--config.train.steps=100")
  assert out["schedule"]["decay_shape"] == "1-sqrt"
  assert out["resolved"]["schedule"] == {
      "name": "wsd", "kwargs": {"decay_shape": "1-sqrt", "decay_steps": 20,
                               "peak_value": 3e-3, "total_steps": 100,
                               "warmup_steps": 2},
      "ignored": {}, "end_step": 100}
  assert err == "" and not workdir.exists()  # --print_config writes nothing


def test_schedule_family_and_optimizer_switch_on_the_command_line():
  out, err = printed_config("--config.schedule.name=cosine",
                            "--config.optimizer.name=sgd",
                            "--config.optimizer.momentum=0.9")
  assert out["resolved"]["schedule"]["kwargs"] == {
      "peak_value": 0.05, "total_steps": 800, "warmup_steps": 40}
  assert out["resolved"]["optimizer"]["kwargs"] == {"momentum": 0.9}
  lines = err.splitlines()
  assert len(lines) == 2
  assert "'cosine' takes no decay_fraction=0.2" in lines[0]
  assert "'sgd' takes no b1=0.9, b2=0.95, weight_decay=0.0" in lines[1]


def test_schedule_length_against_train_steps():
  out, err = printed_config("--config.train.steps=900",
                            "--config.schedule.total_steps=800")
  [line] = err.splitlines()
  assert "train.steps=900 trains past the end of the schedule at step 800" \
      in line
  # A main run stopped before the decay: information, shown with INFO logs.
  out, err = printed_config("--config.train.steps=400",
                            "--config.schedule.total_steps=800")
  assert err == ""
  assert out["resolved"]["schedule"]["kwargs"]["total_steps"] == 800
  _, err = printed_config("--config.train.steps=400",
                          "--config.schedule.total_steps=800",
                          "--verbosity=0")
  assert re.search(r"train.steps=400 stops before the schedule ends at step "
                   r"800", err)


def _bad_inputs(tmp_path):
  a_file = tmp_path / "a_file"
  a_file.write_text("not a directory")
  binary = tmp_path / "data.bin"
  binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4)
  return {
      "unknown_key": (["--config.train.stepz=3"], "--config.train.stepz=3"),
      "unknown_key_after_config": (["--config=configs/bigram.py",
                                    "--config.train.stepz=3"], "'stepz'"),
      "unknown_schedule_key": (["--config.schedule.decay_shap=1-sqrt"],
                               "did you mean 'decay_shape'"),
      "missing_config_file": (["--config=configs/nope.py"],
                              "--config=configs/nope.py: no such config file"),
      "bad_config_variant": (["--config=configs/gpt.py:size=huge"],
                             "unknown size 'huge'"),
      "malformed_value": (["--config.train.steps=abc"],
                          "--config.train.steps=abc"),
      "total_steps_zero": (["--config.schedule.total_steps=0"],
                           "total_steps=0 must be >= 1"),
      "binary_text_data": (["--config=configs/text.py",
                            f"--config.data.paths={binary}"],
                           f"'{binary}' is not a text file"),
      "workdir_is_a_file": ([f"--workdir={a_file}"],
                            f"--workdir={a_file}: is a regular file"),
      "file_in_the_way": ([f"--workdir={a_file}/run"],
                          f"{a_file} is a regular file"),
  }


@pytest.mark.parametrize("case", [
    "unknown_key", "unknown_key_after_config", "unknown_schedule_key",
    "missing_config_file", "bad_config_variant", "malformed_value",
    "total_steps_zero", "binary_text_data", "workdir_is_a_file",
    "file_in_the_way"])
def test_bad_input_ends_with_one_line_and_writes_nothing(tmp_path, case):
  args, expected = _bad_inputs(tmp_path)[case]
  before = sorted(os.listdir(tmp_path))
  workdir = [] if any(a.startswith("--workdir") for a in args) else [
      f"--workdir={tmp_path / 'run'}"]
  r = app("train", *args, *workdir, "--config.train.steps=10")
  assert r.returncode == 1
  assert r.stdout == ""
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1, r.stderr
  assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
  assert sorted(os.listdir(tmp_path)) == before  # nothing created


def test_workdir_without_permission(monkeypatch, tmp_path):
  # Root may write anywhere, so permission is mocked here; below, a real
  # refusal by the kernel (sysfs refuses mkdir even to root).
  monkeypatch.setattr(os, "access", lambda *a, **k: False)
  with pytest.raises(ValueError, match=f"no permission to write in {tmp_path}"):
    cli.check_workdir(str(tmp_path / "run"))
  monkeypatch.undo()
  if not os.path.isdir("/sys/kernel"):
    pytest.skip("no sysfs")
  r = app("train", "--workdir=/sys/wsd_jax_test/run", "--config.train.steps=5")
  assert r.returncode == 1
  [line] = r.stderr.strip().splitlines()
  assert line.startswith("error: ") and "/sys" in line, line
  assert not os.path.exists("/sys/wsd_jax_test")


def test_default_run_console_is_readable(tmp_path):
  r = app("train", f"--workdir={tmp_path / 'run'}", "--config.train.steps=40")
  assert r.returncode == 0, r.stderr
  assert r.stdout.startswith(f"{tmp_path / 'run'}: step 40, eval_loss")
  assert not re.search(r"^I\d{4} ", r.stderr, re.M), r.stderr[:2000]
  assert "40/40" in r.stderr  # the progress bar
  assert len(r.stderr.encode()) < 20_000


def test_library_logs_hidden_unless_verbosity_asks():
  code = """
      import logging, sys
      import jax, orbax.checkpoint
      from absl import logging as absl_logging
      from experiments import cli
      def main(argv):
        print(absl_logging.get_verbosity(), *(
            logging.getLogger(n).getEffectiveLevel()
            for n in ("orbax", "jax", "absl", "jax._src.xla_bridge")))
      cli.run(main)
  """
  assert python(code).stdout.split() == ["-1"] + [str(logging.WARNING)] * 4
  assert python(code, "--verbosity=0").stdout.split() == (
      ["0"] + [str(logging.INFO)] * 4)


def test_help_lists_flags_and_how_to_list_config_keys():
  out = app("train", "--help").stdout
  for flag in ("--config:", "--workdir:", "--[no]print_config:",
               "--from_branch:"):
    assert flag in out
  assert "--config.KEY=VALUE" in out and "--print_config prints every key" \
      in out
  out = app("branch", "--help").stdout
  for flag in ("--workdir:", "--eval_every:", "--log_every:"):
    assert flag in out


def test_study_print_config_needs_no_workdir():
  r = app("law_study", "--quick", "--print_config")
  assert r.returncode == 0, r.stderr
  assert yaml.safe_load(r.stdout)["study"]["total_steps"] == 40


def test_branch_passes_eval_and_log_every(tmp_path):
  code = """
      import json, runpy, sys
      from wsd_jax import train
      def branch(*args, **kwargs):
        print(json.dumps(kwargs.get("train_overrides")))
        return {"workdir": "w", "step": 1, "eval_loss": 0.0}
      train.branch = branch
      sys.argv = ["branch", *sys.argv[1:]]
      runpy.run_module("experiments.branch", run_name="__main__")
  """
  args = [f"--workdir={tmp_path}", "--from_step=400", "--decay_steps=80"]
  r = python(code, *args, "--eval_every=5", "--log_every=2")
  assert json.loads(r.stdout.splitlines()[0]) == {"eval_every": 5,
                                                   "log_every": 2}, r.stderr
  r = python(code, *args)
  assert json.loads(r.stdout.splitlines()[0]) == {}
  r = python(code, *args, "--eval_every=0")
  assert r.returncode == 1 and r.stdout == ""
  [line] = r.stderr.strip().splitlines()
  assert line.startswith("error: --eval_every=0:"), line
