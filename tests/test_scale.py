"""Scaling out: FSDP shardings on fake CPU devices (multi-process training:
tests/test_pod.py)."""

import json
import subprocess
import sys
import textwrap

import ml_collections
import pytest
from jax.sharding import PartitionSpec as P

from multiproc import (ROOT, assert_same_curves, env_with_devices,  # noqa: F401
                       run_processes, tiny)  # (test_accum imports them from here)
from wsd_jax.runs import rundir
from wsd_jax.train import sharding, train_and_evaluate


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
