"""A run whose workdir is a gs:// URL: trains, resumes and is read by
``experiments.runs`` against a GCS emulator on loopback, and fails clearly
without one. Nothing is created on the local disk either way. Everything runs
inside a network namespace with only loopback (tests/gcs.py)."""

import os
import sys
import time

import pytest
from tensorboard.backend.event_processing.event_accumulator import \
    EventAccumulator

import gcs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
TRAIN = [PY, "-m", "experiments.train",
         f"--config={os.path.join(ROOT, 'configs', 'bigram.py')}",
         "--workdir=gs://bkt/run", "--config.schedule.total_steps=80",
         "--config.train.log_every=10", "--config.train.eval_every=20",
         "--config.train.checkpoint_every=20"]

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _needs_namespace():
  reason = gcs.loopback_skip_reason() or gcs.emulator_skip_reason()
  if reason:
    pytest.fail(f"gs:// tests need a loopback namespace and the emulator: "
                f"{reason}")


def test_gs_workdir_trains_resumes_and_is_read(tmp_path):
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  result = gcs.run_in_loopback(
      [TRAIN + ["--config.train.steps=40"],
       TRAIN + ["--config.train.steps=80"],
       [PY, "-m", "experiments.runs", "--workdir=gs://bkt/run"]],
      env={"JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}, bucket="bkt",
      timeout=600, cwd=str(cwd), list_bucket=True,
      download_to=tmp_path / "bucket")
  assert result.returncode == 0, result.output[-4000:]
  assert os.listdir(cwd) == []  # nothing local
  objects = set(result.objects)
  for name in ("run/run.json", "run/config.json", "run/metrics.jsonl",
               "run/plots/runs.png", "run/plots/loss.png"):
    assert name in objects, sorted(objects)[:40]
  assert any(o.startswith("run/checkpoints/80/") for o in objects)
  assert any(o.startswith("run/events/") for o in objects)
  # The resumed run continues the first: every logged step once, in order.
  run_dir = tmp_path / "bucket" / "run"
  sys.path.insert(0, ROOT)
  from wsd_jax.runs import Run
  run = Run(str(run_dir))
  assert [r["step"] for r in run.metrics] == list(range(10, 90, 10))
  assert "gs://bkt/run: step 80" in result.stdout
  assert "gs://bkt/run: step 40" in result.stdout
  # experiments.runs printed the tree from the bucket.
  assert any(l.split()[:2] == ["run", "80"] for l in result.stdout.splitlines())
  # TensorBoard reads every logged step back from the object store's files.
  steps = set()
  for name in os.listdir(run_dir / "events"):
    ea = EventAccumulator(str(run_dir / "events" / name))
    ea.Reload()
    steps |= {e.step for e in ea.Scalars("loss")}
  assert steps == set(range(10, 90, 10))


def test_gs_workdir_without_storage_fails_clearly(tmp_path):
  """No emulator: the real endpoint cannot be resolved from the namespace.
  gcsfs retries a connection error 6 times (1+2+4+8+16 s of backoff, fixed in
  gcsfs), so the error comes after ~31-36 s (~53 s with credential lookups
  left on). One line names the workdir and the endpoint; nothing is created
  locally."""
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  start = time.monotonic()
  result = gcs.run_in_loopback([TRAIN + ["--config.train.steps=40"]],
                               env={"JAX_PLATFORMS": "cpu",
                                    "PYTHONPATH": ROOT},
                               with_emulator=False, timeout=300,
                               cwd=str(cwd))
  elapsed = time.monotonic() - start
  assert result.returncode != 0
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, result.output[-3000:]
  assert "cannot use storage at gs://bkt/run" in errors[0]
  assert "storage.googleapis.com" in errors[0], errors[0]
  assert "Traceback" not in result.stderr
  assert os.listdir(cwd) == []
  # bounded: the retries, not a hang (jax import and startup included)
  assert elapsed < 150, elapsed
