"""Helpers of the multi-device and multi-process tests (test_scale, test_pod):
tiny configs, fake CPU devices, free ports, curve comparison."""

import os
import socket
import subprocess
import sys
import tempfile
import textwrap

import ml_collections
import numpy as np

from tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ("loss", "grad_norm", "lr")


def tiny(model="bigram", **train) -> ml_collections.ConfigDict:
  """``tiny_config`` logging every step, with a nano ``model``."""
  c = tiny_config(**dict(dict(log_every=1), **train))
  c.model = ml_collections.ConfigDict(dict(name=model, size="nano"))
  return c


def env_with_devices(devices: int, **extra: str) -> dict:
  """This environment on ``devices`` fake CPU devices, plus ``extra``."""
  return dict(os.environ, JAX_PLATFORMS="cpu",
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
              **extra)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def assert_same_curves(a: list[dict], b: list[dict], rtol: float):
  """Equal steps, and loss, grad_norm, lr and eval_loss to ``rtol``."""
  assert [r["step"] for r in a] == [r["step"] for r in b]
  for key in KEYS:
    np.testing.assert_allclose([r[key] for r in a], [r[key] for r in b],
                               rtol=rtol, err_msg=key)
  evals = lambda rows: [r["eval_loss"] for r in rows if "eval_loss" in r]
  assert len(evals(a)) == len(evals(b)) > 0
  np.testing.assert_allclose(evals(a), evals(b), rtol=rtol)


# --- processes that form one distributed runtime -----------------------------

_PROCESS = textwrap.dedent("""
    import json, sys
    from wsd_jax.train import distributed
    address, n, i = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    distributed.initialize(address, n, i)
    import jax, ml_collections
    from wsd_jax.train import train_and_evaluate
    config = ml_collections.ConfigDict(json.loads(sys.argv[4]))
    summary = train_and_evaluate(config, sys.argv[5])
    print("PROCESS", jax.process_index(), jax.process_count(),
          jax.device_count(), summary["step"], summary.get("eval_loss"))
""")


def run_together(commands: list[tuple[list[str], dict]], timeout: float = 240,
                 during=None) -> list[subprocess.CompletedProcess]:
  """Runs ``(argv, env)`` commands at once (from the repository root) and
  waits for all; none outlives the call. ``during(procs)`` is called while
  they run (their output goes to files, so none blocks on a full pipe)."""
  files = [(tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+"))
           for _ in commands]
  procs = [subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=err,
                            text=True)
           for (argv, env), (out, err) in zip(commands, files)]
  done = []
  try:
    if during is not None:
      during(procs)
    for (argv, _), p, (out, err) in zip(commands, procs, files):
      p.wait(timeout=timeout)
      out.seek(0)
      err.seek(0)
      done.append(subprocess.CompletedProcess(argv, p.returncode, out.read(),
                                              err.read()))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
    for out, err in files:
      out.close()
      err.close()
  return done


def run_processes(config, workdir, processes: int, devices_each: int):
  """Runs ``train_and_evaluate`` in ``processes`` processes that form one
  distributed JAX runtime; returns their stdouts."""
  address = f"127.0.0.1:{free_port()}"
  done = run_together([
      ([sys.executable, "-c", _PROCESS, address, str(processes), str(i),
        config.to_json(), str(workdir)], env_with_devices(devices_each))
      for i in range(processes)])
  for p in done:
    assert p.returncode == 0, p.stderr[-3000:]
  return [p.stdout for p in done]
