"""gs:// plumbing, offline: etils.epath, Orbax and the GCS clients against an
in-memory emulator inside a loopback-only network namespace (tests/gcs.py).

These tests check the stack the library relies on, not the library: what
works on gs://, and the behaviours that differ from a local disk (append,
empty directories, path-string functions). docs/gcs_testing.md has the
details and timings.
"""

import os
import sys
import textwrap

import pytest

import gcs

BUCKET = "wsd-test"

needs_loopback = pytest.mark.skipif(not gcs.loopback_namespace_available(),
                                    reason=str(gcs.loopback_skip_reason()))
needs_emulator = pytest.mark.skipif(gcs.emulator_skip_reason() is not None,
                                    reason=str(gcs.emulator_skip_reason()))


def _py(code: str) -> list[str]:
  return [sys.executable, "-c", textwrap.dedent(code)]


def _check(result: gcs.LoopbackResult) -> None:
  assert result.returncode == 0, (
      f"exit {result.returncode}\n{result.output}\n"
      f"--- emulator log (tail) ---\n{result.emulator_log[-3000:]}")


def test_path_string_functions_break_urls():
  """Why the library must keep URLs away from os.path and pathlib (no IO)."""
  from etils import epath
  url = "gs://b/r"
  assert os.path.abspath(url) == os.path.join(os.getcwd(), "gs:/b/r")
  assert os.path.realpath(url) != url
  assert os.path.normpath(url) == "gs:/b/r"  # '//' collapsed
  assert not os.path.isabs(url)
  assert str(epath.Path(url).resolve()) != url  # made local
  assert str(epath.Path(url).absolute()) != url
  # These are safe:
  assert os.path.join(url, "x") == "gs://b/r/x"
  assert os.fspath(epath.Path(url) / "x" / "y.json") == "gs://b/r/x/y.json"
  assert os.fspath(epath.Path(url + "/x").parent) == url
  assert epath.Path(url).name == "r"
  assert os.fspath(epath.Path(url).expanduser()) == url


@needs_loopback
def test_namespace_has_only_loopback(tmp_path):
  r = gcs.run_in_loopback(_py("""
      import socket, time
      t = time.monotonic()
      for addr in [("169.254.169.254", 80), ("metadata.google.internal", 80),
                   ("storage.googleapis.com", 443), ("8.8.8.8", 53)]:
        try:
          socket.create_connection(addr, timeout=5).close()
          raise SystemExit(f"reached {addr}")
        except OSError as e:
          print(addr[0], "unreachable:", e)
      srv = socket.create_server(("127.0.0.1", 0))
      socket.create_connection(srv.getsockname(), timeout=2).close()
      assert time.monotonic() - t < 10
      print("LOOPBACK_OK")
      """), with_emulator=False, timeout=60, cwd=tmp_path)
  _check(r)
  assert "LOOPBACK_OK" in r.stdout


@pytest.mark.slow
@needs_emulator
def test_epath_on_emulator(tmp_path):
  r = gcs.run_in_loopback(_py(f"""
      import warnings
      from etils import epath
      root = epath.Path("gs://{BUCKET}/x")
      p = root / "y.json"
      assert not p.exists()
      p.write_text('{{"a": 1}}')
      assert p.exists() and p.is_file() and root.is_dir()
      assert p.read_text() == '{{"a": 1}}'
      (root / "sub" / "z.json").write_text("z")
      assert sorted(map(str, root.glob("*.json"))) == ["gs://{BUCKET}/x/y.json"]
      try:  # epath refuses recursive globs (local paths too)
        list(root.glob("**/*.json"))
        raise AssertionError("** glob worked")
      except NotImplementedError:
        pass
      # walk() finds everything but its roots lose "gs://" (fsspec backend):
      # they are local relative paths. Recurse with iterdir() instead.
      found = sorted(f"{{d}}/{{f}}" for d, _, fs in root.walk() for f in fs)
      assert found == ["{BUCKET}/x/sub/z.json", "{BUCKET}/x/y.json"], (
          "etils walk() changed; update docs/gcs_testing.md", found)
      assert sorted(q.name for q in root.iterdir()) == ["sub", "y.json"]
      # replace over an existing object, then rename to a new name
      (root / "new.json").write_text("new")
      (root / "new.json").replace(p)
      assert p.read_text() == "new" and not (root / "new.json").exists()
      p.rename(root / "moved.json")
      assert (root / "moved.json").read_text() == "new" and not p.exists()
      # object stores have no empty directories
      (root / "empty").mkdir(parents=True, exist_ok=True)
      assert not (root / "empty").exists()
      # append: gcsfs warns and OVERWRITES (metrics.jsonl must be rewritten)
      m = root / "metrics.jsonl"
      m.write_text('{{"step": 0}}\\n')
      with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with m.open("a") as f:
          f.write('{{"step": 1}}\\n')
      assert m.read_text() == '{{"step": 1}}\\n', m.read_text()
      assert any("Append mode" in str(w.message) for w in caught), caught
      (root / "sub").rmtree()
      assert not (root / "sub").exists()
      print("EPATH_OK")
      """), bucket=BUCKET, timeout=120, cwd=tmp_path, list_bucket=True)
  _check(r)
  assert "EPATH_OK" in r.stdout
  assert r.objects == ["x/metrics.jsonl", "x/moved.json"]
  assert not (tmp_path / "gs:").exists()


@needs_emulator
def test_tensorboard_event_writer_keeps_only_the_last_flush(tmp_path):
  """Without tensorflow, TensorBoard's writer reaches gs:// through fsspec and
  appends at every flush; gcsfs turns each append into an overwrite. Pins the
  hazard for events/ on object stores (docs/gcs_testing.md)."""
  r = gcs.run_in_loopback(_py(f"""
      import warnings
      from tensorboard.summary.writer.event_file_writer import EventFileWriter
      from tensorboard.compat.proto import event_pb2, summary_pb2
      from tensorboard.backend.event_processing.event_file_loader import (
          EventFileLoader)
      from etils import epath
      warnings.simplefilter("ignore")
      w = EventFileWriter("gs://{BUCKET}/run/events")
      for step in range(3):
        v = summary_pb2.Summary.Value(tag="loss", simple_value=float(step))
        w.add_event(event_pb2.Event(step=step, wall_time=1.0,
                                    summary=summary_pb2.Summary(value=[v])))
        w.flush()
      w.close()
      [f] = epath.Path("gs://{BUCKET}/run/events").iterdir()
      print("STEPS", [e.step for e in EventFileLoader(str(f)).Load()])
      """), bucket=BUCKET, timeout=120, cwd=tmp_path)
  _check(r)
  assert "STEPS [2]" in r.stdout, (
      "TensorBoard now keeps every flush on gs://; update docs/gcs_testing.md",
      r.stdout)


@pytest.mark.slow
@needs_emulator
def test_gcsfs_storage_client_and_tensorstore_share_the_bucket(tmp_path):
  """STORAGE_EMULATOR_HOST (gcsfs, google-cloud-storage) and
  TENSORSTORE_GCS_HTTP_URL (tensorstore) reach the same emulator."""
  r = gcs.run_in_loopback(_py(f"""
      import gcsfs, tensorstore as ts
      from google.cloud import storage
      gcsfs.GCSFileSystem().pipe("{BUCKET}/a/from_gcsfs", b"1")
      client = storage.Client()  # project and no credentials from the env
      bucket = client.bucket("{BUCKET}")
      assert bucket.blob("a/from_gcsfs").download_as_bytes() == b"1"
      bucket.blob("a/from_client").upload_from_string(b"2")
      kv = ts.KvStore.open({{"driver": "gcs", "bucket": "{BUCKET}",
                             "path": "a/"}}).result()
      assert kv.read("from_client").result().value == b"2"
      kv.write("from_tensorstore", b"3").result()
      print("SHARED_OK")
      """), bucket=BUCKET, timeout=120, cwd=tmp_path, list_bucket=True)
  _check(r)
  assert r.objects == ["a/from_client", "a/from_gcsfs", "a/from_tensorstore"]


@needs_emulator
@pytest.mark.slow
def test_orbax_checkpoint_manager_on_emulator(tmp_path):
  """Save in one process, restore in another, one in-memory bucket."""
  tree = """
      import numpy as np
      tree = {"w": np.arange(12, dtype=np.float32).reshape(3, 4),
              "b": np.ones(5, np.int32), "step": 3}
      """
  save = tree + f"""
      import orbax.checkpoint as ocp
      options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
      with ocp.CheckpointManager("gs://{BUCKET}/ckpt", options=options) as m:
        for step in (1, 2, 3):
          m.save(step, args=ocp.args.StandardSave(tree))
        m.wait_until_finished()
        assert m.all_steps() == [2, 3], m.all_steps()
      """
  restore = tree + f"""
      import jax, orbax.checkpoint as ocp
      with ocp.CheckpointManager("gs://{BUCKET}/ckpt") as m:
        assert m.latest_step() == 3
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
        got = m.restore(3, args=ocp.args.StandardRestore(abstract))
      for k in tree:
        np.testing.assert_array_equal(np.asarray(got[k]), tree[k])
      print("RESTORE_OK")
      """
  r = gcs.run_in_loopback([_py(save), _py(restore)],
                          env={"JAX_PLATFORMS": "cpu"}, bucket=BUCKET,
                          timeout=300, cwd=tmp_path, list_bucket=True)
  _check(r)
  assert "RESTORE_OK" in r.stdout
  steps = {k.split("/")[1] for k in r.objects}
  assert steps == {"2", "3"}, r.objects
  assert "ckpt/3/commit_success.txt" in r.objects
  assert not (tmp_path / "gs:").exists()


# Without an emulator a write fails in bounded time naming the endpoint:
# tests/test_gcs_run.py::test_gs_workdir_without_storage_fails_clearly
# checks that through the trainer (one 31-36 s wait instead of two).
