"""Scaling out: FSDP shardings on fake CPU devices, and multi-process training
(2 processes x 2 CPU devices, gloo collectives) against one process."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from wsd_jax.runs import rundir
from wsd_jax.train import distributed, sharding, train_and_evaluate
from tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ("loss", "grad_norm", "lr")


def tiny(model="bigram", **train) -> ml_collections.ConfigDict:
  c = tiny_config(**dict(dict(log_every=1), **train))
  c.model = ml_collections.ConfigDict(dict(name=model, size="nano"))
  return c


def env_with_devices(devices: int) -> dict:
  return dict(os.environ, JAX_PLATFORMS="cpu",
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def assert_same_curves(a: list[dict], b: list[dict], rtol: float):
  assert [r["step"] for r in a] == [r["step"] for r in b]
  for key in KEYS:
    np.testing.assert_allclose([r[key] for r in a], [r[key] for r in b],
                               rtol=rtol, err_msg=key)
  evals = lambda rows: [r["eval_loss"] for r in rows if "eval_loss" in r]
  assert len(evals(a)) == len(evals(b)) > 0
  np.testing.assert_allclose(evals(a), evals(b), rtol=rtol)


# --- rules (no devices needed) ----------------------------------------------


def test_fsdp_spec_shards_the_largest_divisible_dimension():
  assert sharding.fsdp_spec((64, 192), 4) == P(None, "fsdp")
  assert sharding.fsdp_spec((50304, 768), 8) == P("fsdp", None)
  assert sharding.fsdp_spec((768, 3), 4) == P("fsdp", None)  # 3 % 4 != 0
  assert sharding.fsdp_spec((64, 64), 4) == P("fsdp", None)  # ties: first
  assert sharding.fsdp_spec((6, 1001), 4) == P()  # nothing divides
  assert sharding.fsdp_spec((64,), 4) == P()  # small: replicated
  assert sharding.fsdp_spec((), 4) == P()
  assert sharding.fsdp_spec((64, 192), 1) == P()


def test_mesh_shape_and_its_errors():
  mesh = lambda **kw: ml_collections.ConfigDict(kw)
  assert sharding.mesh_shape(mesh(data=-1), 8) == (8, 1)
  assert sharding.mesh_shape(mesh(data=-1, fsdp=4), 8) == (2, 4)
  assert sharding.mesh_shape(mesh(data=1, fsdp=4), 8) == (1, 4)
  with pytest.raises(ValueError, match=r"config.mesh.fsdp=3 does not divide "
                     r"the 8 available devices"):
    sharding.mesh_shape(mesh(data=-1, fsdp=3), 8)
  with pytest.raises(ValueError, match=r"config.mesh.data=3 x "
                     r"config.mesh.fsdp=2 = 6 does not divide the 8"):
    sharding.mesh_shape(mesh(data=3, fsdp=2), 8)


def test_single_process_initialize_is_a_no_op(monkeypatch):
  for var in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS",
              "OMPI_MCA_orte_hnp_uri"):
    monkeypatch.delenv(var, raising=False)
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  assert distributed.detect_launcher() is None
  assert distributed.initialize() is False
  assert distributed.initialize(num_processes=1) is False
  with pytest.raises(ValueError, match="process_id=2 is not in"):
    distributed.initialize("localhost:1", 2, 2)
  monkeypatch.setenv("SLURM_JOB_ID", "7")
  monkeypatch.setenv("SLURM_PROCID", "0")
  monkeypatch.setenv("SLURM_NTASKS", "1")
  assert distributed.detect_launcher() is None  # one task: nothing to join
  monkeypatch.setenv("SLURM_NTASKS", "4")
  assert distributed.detect_launcher() == "slurm"


# --- FSDP on 8 fake devices ---------------------------------------------------

_RUNS = textwrap.dedent("""
    import json, sys
    import ml_collections
    from wsd_jax.train import train_and_evaluate
    out = {}
    for name, config in json.loads(sys.argv[2]).items():
      try:
        s = train_and_evaluate(ml_collections.ConfigDict(json.loads(config)),
                               f"{sys.argv[1]}/{name}")
      except ValueError as e:
        out[name] = {"error": str(e)}
        continue
      params, opt = s["state"].params, s["state"].opt_state
      qkv = params["blocks"][0]["qkv"]["kernel"][...]
      out[name] = {
          "mesh": dict(qkv.sharding.mesh.shape),
          "qkv": str(qkv.sharding.spec),
          "qkv_shard": list(qkv.addressable_shards[0].data.shape),
          "qkv_mu": str(opt.inner_state[0].mu["blocks"][0]["qkv"]["kernel"][
              ...].sharding.spec),
          "norm": str(params["final_norm"]["scale"][...].sharding.spec)}
    print("RESULT", json.dumps(out))
""")


def run_configs(configs: dict, workdir, devices: int) -> dict:
  """Trains each named config in one process with ``devices`` CPU devices
  (one process: compiled programs they share are compiled once)."""
  result = subprocess.run(
      [sys.executable, "-c", _RUNS, str(workdir),
       json.dumps({k: c.to_json() for k, c in configs.items()})],
      env=env_with_devices(devices), cwd=ROOT, capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.split("RESULT", 1)[1])


def with_mesh(config, **mesh) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(config.to_dict())
  config.mesh = ml_collections.ConfigDict(mesh)
  return config


@pytest.mark.slow
def test_fsdp_matches_data_parallel_and_one_device(tmp_path):
  c = tiny("gpt", eval_every=10, checkpoint_every=10, steps=10)
  c.schedule.peak_value = 3e-3  # a stable GPT: rounding differences stay small
  bad_batch = with_mesh(c, data=2, fsdp=4)
  bad_batch.data.batch_size = 12
  out = run_configs({"dp8": with_mesh(c, data=8),
                     "fsdp": with_mesh(c, data=2, fsdp=4),
                     "bad_mesh": with_mesh(c, data=3, fsdp=2),
                     "bad_batch": bad_batch}, tmp_path, 8)
  train_and_evaluate(c, str(tmp_path / "one"))  # this process: 1 device
  assert "error" not in out["fsdp"], out["fsdp"]
  assert out["fsdp"]["mesh"] == {"data": 2, "fsdp": 4}
  assert out["dp8"]["mesh"] == {"data": 8, "fsdp": 1}
  # The params and their Adam moments really are split over fsdp ...
  assert out["fsdp"]["qkv"] == out["fsdp"]["qkv_mu"] == str(P(None, "fsdp"))
  assert out["fsdp"]["qkv_shard"] == [64, 192 // 4]
  assert out["fsdp"]["norm"] == str(P())  # ... small leaves are not
  assert out["dp8"]["qkv"] == str(P()) and out["dp8"]["qkv_shard"] == [64, 192]
  rows = {k: rundir.read_metrics(tmp_path / k) for k in ("one", "dp8", "fsdp")}
  assert len(rows["one"]) == 10
  for name in ("dp8", "fsdp"):
    assert_same_curves(rows["one"], rows[name], rtol=1e-5)
  # Bad meshes and batches: a ValueError naming the values, before any step.
  assert "config.mesh.data=3 x config.mesh.fsdp=2 = 6 does not divide the 8" \
      in out["bad_mesh"]["error"]
  error = out["bad_batch"]["error"]
  assert "batch_size=12 is not divisible" in error and "8" in error, error
  assert not (tmp_path / "bad_batch" / "checkpoints").exists()


# --- 2 processes x 2 CPU devices ----------------------------------------------

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


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def run_processes(config, workdir, processes: int, devices_each: int):
  """Runs ``train_and_evaluate`` in ``processes`` processes that form one
  distributed JAX runtime; returns their stdouts."""
  address = f"localhost:{free_port()}"
  procs = [subprocess.Popen(
      [sys.executable, "-c", _PROCESS, address, str(processes), str(i),
       config.to_json(), str(workdir)], env=env_with_devices(devices_each),
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(processes)]
  outs = []
  try:
    for p in procs:
      out, err = p.communicate(timeout=240)
      assert p.returncode == 0, err[-3000:]
      outs.append(out)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  return outs


@pytest.mark.slow
def test_two_processes_match_one_and_resume(tmp_path):
  """2 processes x 2 devices train 20 steps, stop, resume to 40 from their
  joint Orbax checkpoint, and give the losses of 1 process x 4 devices."""
  c = tiny()
  ref = subprocess.run(
      [sys.executable, "-c", "import json, sys, ml_collections\n"
       "from wsd_jax.train import train_and_evaluate\n"
       "train_and_evaluate(ml_collections.ConfigDict(json.loads(sys.argv[1])),"
       " sys.argv[2])", c.to_json(), str(tmp_path / "one")],
      env=env_with_devices(4), cwd=ROOT, capture_output=True, text=True,
      timeout=120)
  assert ref.returncode == 0, ref.stderr[-3000:]
  multi = tmp_path / "multi"
  outs = run_processes(tiny(steps=20), multi, 2, 2)
  assert [o.split("PROCESS")[1].split()[:4] for o in outs] == [
      ["0", "2", "4", "20"], ["1", "2", "4", "20"]]
  data_files = sorted(os.listdir(multi / "checkpoints" / "20" / "data"))
  assert "process_1-of-2.json" in data_files  # each process's data position
  run_processes(c, multi, 2, 2)  # resumes from step 20
  assert_same_curves(rundir.read_metrics(tmp_path / "one"),
                     rundir.read_metrics(multi), rtol=2e-5)
  assert json.loads((multi / "run.json").read_text())["fork_step"] is None
