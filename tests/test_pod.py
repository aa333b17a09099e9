"""TPU-pod readiness without a TPU.

The start-up decision (``distributed.initialize``) for every launcher, with
the environment and ``jax.distributed.initialize`` mocked (nothing is
contacted); and a fake pod: processes started with one command line and
different environments, as ``gcloud compute tpus tpu-vm ssh --worker=all``
does, train, stop, resume and match one process with all the devices, and
only process 0 writes run files.
"""

import json
import os
import signal
import sys
import textwrap
import time
import urllib.request

import jax
import matplotlib
import pytest

from multiproc import (ROOT, assert_same_curves, env_with_devices, free_port,
                       run_together, tiny)
from tiny import config_file
from wsd_jax import runs
from wsd_jax.runs import processes, rundir
from wsd_jax.train import distributed

# --- the start-up decision, mocked ---------------------------------------------

_LAUNCH_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
                "JAX_PLATFORMS", "TPU_PROCESS_ADDRESSES", "TPU_WORKER_HOSTNAMES",
                "TPU_SKIP_MDS_QUERY", "MEGASCALE_NUM_SLICES")


@pytest.fixture
def launch(monkeypatch):
  """A clean environment; ``jax.distributed.initialize`` records its calls;
  the TPU VM check and its metadata server are fakes (``tpu`` below)."""
  for var in list(os.environ):
    if var in _LAUNCH_VARS or var.startswith(("SLURM_", "OMPI_")):
      monkeypatch.delenv(var)
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize",
                      lambda **kw: calls.append(kw))
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)

  def no_network(*args, **kwargs):
    raise AssertionError("the start-up decision contacted the network")
  monkeypatch.setattr(urllib.request, "urlopen", no_network)
  tpu = dict(vm=False, endpoints=None, asked=[])

  def metadata(key):
    tpu["asked"].append(key)
    if tpu["endpoints"] is None:
      raise OSError("no metadata server")
    return tpu["endpoints"]
  monkeypatch.setattr(distributed, "_on_tpu_vm", lambda: tpu["vm"])
  monkeypatch.setattr(distributed, "_metadata", metadata)
  return calls, tpu, monkeypatch.setenv


def _started(calls) -> bool:
  started = distributed.initialize()
  assert started == bool(calls)
  return started


def test_plain_box_and_explicit_arguments(launch):
  calls, _, _ = launch
  assert distributed.detect_launcher() is None
  assert not _started(calls)
  assert distributed.initialize(num_processes=1) is False and not calls
  with pytest.raises(ValueError, match=r"process_id=2 is not in \[0, "
                     r"num_processes=2\)"):
    distributed.initialize("127.0.0.1:1", 2, 2)
  assert distributed.initialize("127.0.0.1:1", 2, 1) is True
  assert calls == [dict(coordinator_address="127.0.0.1:1", num_processes=2,
                        process_id=1)]


def test_coordinator_in_the_environment(launch):
  calls, _, setenv = launch
  setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1234")
  setenv("JAX_NUM_PROCESSES", "1")
  assert distributed.detect_launcher() is None  # nothing to join
  assert not _started(calls)
  setenv("JAX_NUM_PROCESSES", "2")
  with pytest.raises(ValueError, match="set JAX_NUM_PROCESSES and "
                     "JAX_PROCESS_ID too"):
    distributed.initialize()
  setenv("JAX_PROCESS_ID", "1")
  assert distributed.detect_launcher() == "env"
  assert _started(calls)
  assert calls == [dict(coordinator_address="127.0.0.1:1234",
                        num_processes=2, process_id=1)]


def test_slurm_and_open_mpi(launch):
  calls, _, setenv = launch
  for k, v in dict(SLURM_JOB_ID="7", SLURM_STEP_NODELIST="node[001-004]",
                   SLURM_PROCID="0", SLURM_LOCALID="0",
                   SLURM_NTASKS="1").items():
    setenv(k, v)
  assert distributed.detect_launcher() is None and not _started(calls)
  setenv("SLURM_NTASKS", "4")
  assert distributed.detect_launcher() == "slurm" and _started(calls)
  assert calls == [dict(coordinator_address=None, num_processes=None,
                        process_id=None)]  # JAX reads SLURM's variables
  # ... but only inside a job step (srun), where JAX can read them all.
  os.environ.pop("SLURM_STEP_NODELIST")
  assert distributed.detect_launcher() is None
  for k in [k for k in os.environ if k.startswith("SLURM_")]:
    os.environ.pop(k)
  calls.clear()
  setenv("OMPI_MCA_orte_hnp_uri", "1531576320.0;tcp://10.96.0.1:34911")
  setenv("OMPI_COMM_WORLD_RANK", "0")
  setenv("OMPI_COMM_WORLD_SIZE", "1")
  assert distributed.detect_launcher() is None and not _started(calls)
  setenv("OMPI_COMM_WORLD_SIZE", "2")
  assert distributed.detect_launcher() == "openmpi" and _started(calls)


def test_same_decision_as_jax_cluster_detection(launch):
  """SLURM and Open MPI are recognised from the variables JAX's own cluster
  detection reads (a private module: skipped if it moves)."""
  clusters = pytest.importorskip("jax._src.clusters")
  _, _, setenv = launch
  assert not clusters.SlurmCluster.is_env_present()
  for k in distributed._SLURM:
    setenv(k, "2")
  assert clusters.SlurmCluster.is_env_present()
  assert distributed.detect_launcher() == "slurm"
  assert clusters.SlurmCluster.get_process_count() == 2


def test_tpu_single_host_vs_multi_host(launch):
  calls, tpu, setenv = launch
  tpu["endpoints"] = "10.0.0.1,10.0.0.2"
  assert distributed.detect_launcher() is None  # not a TPU VM: not asked
  assert tpu["asked"] == []
  tpu["vm"] = True
  tpu["endpoints"] = "10.0.0.1"  # v4-8, v5e-8: one host
  assert distributed.detect_launcher() is None and not _started(calls)
  assert tpu["asked"] == ["worker-network-endpoints"] * 2
  tpu["endpoints"] = "10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4"  # v4-32
  assert distributed.tpu_hosts() == 4
  assert distributed.detect_launcher() == "tpu" and _started(calls)
  assert calls == [dict(coordinator_address=None, num_processes=None,
                        process_id=None)]  # JAX finds the slice's hosts
  tpu["endpoints"] = None  # no metadata server: one host, with a warning
  assert distributed.tpu_hosts() == 1
  # From the environment (GKE, multislice), the metadata is not asked.
  tpu["asked"].clear()
  setenv("TPU_WORKER_HOSTNAMES", "host-0")
  assert distributed.tpu_hosts() == 1
  setenv("MEGASCALE_NUM_SLICES", "2")
  assert distributed.tpu_hosts() == 2
  setenv("TPU_WORKER_HOSTNAMES", "host-0,host-1")
  assert distributed.tpu_hosts() == 4
  os.environ.pop("TPU_WORKER_HOSTNAMES")
  os.environ.pop("MEGASCALE_NUM_SLICES")
  setenv("TPU_SKIP_MDS_QUERY", "1")
  assert distributed.tpu_hosts() == 1
  assert tpu["asked"] == []


def test_tpu_vm_check_respects_jax_platforms(monkeypatch):
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  assert distributed._on_tpu_vm() is False
  monkeypatch.setenv("JAX_PLATFORMS", "tpu")
  monkeypatch.setattr(distributed.importlib.util, "find_spec", lambda _: None)
  assert distributed._on_tpu_vm() is False  # no libtpu


def test_one_process_needs_no_collective():
  processes.check_same("anything", {"a": 1})
  processes.barrier("nothing to wait for")
  assert processes.on_writer(lambda: 3) == 3
  with pytest.raises(KeyError):
    processes.on_writer(lambda: {}["missing"])


# --- a fake pod: 2 processes x 2 CPU devices vs 1 process x 4 ---------------

# Records every file this process creates, writes, renames or deletes under
# WSD_TEST_WATCH into WSD_TEST_WRITES (Python's audit hooks: what Python
# code does; Orbax's tensorstore writes are C++ and not seen).
_HOOK = textwrap.dedent("""
    import os, sys
    _watch = os.environ.get("WSD_TEST_WATCH")
    if _watch:
      _log = open(os.environ["WSD_TEST_WRITES"], "a")
      _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
      def _hook(event, args):
        if event == "open":
          path, mode, flags = args
          if not (mode and set(mode) & set("wax+")) and not (
              not mode and isinstance(flags, int) and flags & _WRITE):
            return
        elif event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir",
                       "shutil.rmtree"):
          path = args[0]
        else:
          return
        if isinstance(path, (str, bytes, os.PathLike)):
          path = os.path.abspath(os.fsdecode(path))
          if path.startswith(_watch):
            _log.write(event + " " + path + "\\n")
            _log.flush()
      sys.addaudithook(_hook)
""")


# Every process raises the same error when the processes disagree, and when
# a step only process 0 takes fails (the others do not wait for it).
_AGREE = textwrap.dedent("""
    from wsd_jax.train import distributed
    distributed.initialize()
    import jax
    from wsd_jax.runs import processes
    me = jax.process_index()

    def report(fn):
      try:
        fn()
        print("OK")
      except ValueError as e:
        print("ERROR", e)

    def in_use():
      raise ValueError("dir in use")
    report(lambda: processes.check_same("x", {"same": 1, "seed": me}))
    report(lambda: processes.check_same("x", {f"key{me}": 1}))
    report(lambda: processes.on_writer(in_use))
    processes.barrier("end")
""")


def _pod_commands(tmp_path, config: str, workdir, steps: int, n: int = 2,
                  per_process: dict | None = None):
  """The same command line for every process; only the environment differs
  (coordinator, process id, HOME and TMPDIR of its own, a write log)."""
  hook = tmp_path / "hook"
  hook.mkdir(parents=True, exist_ok=True)
  (hook / "sitecustomize.py").write_text(_HOOK)
  argv = [sys.executable, "-m", "experiments.train", f"--config={config}",
          f"--workdir={workdir}", f"--config.train.steps={steps}"]
  address = f"127.0.0.1:{free_port()}"
  commands = []
  for i in range(n):
    home = tmp_path / f"host{i}"
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    env = env_with_devices(
        2, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES=str(n),
        JAX_PROCESS_ID=str(i), HOME=str(home), TMPDIR=str(home / "tmp"),
        PYTHONPATH=os.pathsep.join([str(hook), ROOT]),
        MPLCONFIGDIR=matplotlib.get_cachedir(),  # its font cache, not rebuilt
        WSD_TEST_WATCH=str(workdir), WSD_TEST_WRITES=str(home / "writes"))
    commands.append((argv + (per_process or {}).get(i, []), env))
  return commands


def _writes(tmp_path, i: int) -> list[str]:
  log = tmp_path / f"host{i}" / "writes"
  return log.read_text().splitlines() if log.exists() else []


@pytest.mark.slow
def test_fake_pod_trains_resumes_and_matches_one_process(tmp_path):
  """2 processes x 2 devices run one command line with JAX_* variables,
  train 20 steps, stop, resume with the same command and more steps until a
  preemption notice to one of them stops both at one saved step, and give
  the losses of 1 process x 4 devices; only process 0 wrote run files.
  Meanwhile two processes given different seeds refuse to train, naming the
  key, and write nothing."""
  config = config_file(tmp_path, tiny())
  pod, bad = tmp_path / "pod", tmp_path / "bad"
  one = [sys.executable, "-m", "experiments.train", f"--config={config}",
         f"--workdir={tmp_path / 'one'}"]
  done = run_together(
      [(one, env_with_devices(4))]
      + _pod_commands(tmp_path, config, pod, 20)
      + _pod_commands(tmp_path / "other", config, bad, 20,
                      per_process={1: ["--config.seed=1"]}))
  for p in done[:3]:
    assert p.returncode == 0, p.stderr[-3000:]
  for p in done[1:3]:
    assert f"{pod}: step 20," in p.stdout, p.stdout
  for p in done[3:]:
    assert p.returncode == 1, p.stderr[-3000:]
    assert "the processes do not agree on what to train: config.seed " \
        "(process(es) [1] differ from process 0" in p.stderr, p.stderr[-2000:]
  assert not bad.exists()
  assert "process_1-of-2.json" in os.listdir(pod / "checkpoints" / "20" /
                                             "data")
  # Resume with more steps. A preemption notice (SIGTERM) to process 1 after
  # step 40: both processes save at one step and stop. Meanwhile 2 more
  # processes try the collectives' failure paths.
  def preempt_after_step_40(procs):
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline and all(p.poll() is None
                                              for p in procs[:2]):
      if any(r["step"] > 40 for r in rundir.read_metrics(pod)[-3:]):
        procs[1].send_signal(signal.SIGTERM)
        return
      time.sleep(0.2)
  address = f"127.0.0.1:{free_port()}"
  done = run_together(_pod_commands(tmp_path, config, pod, 10**6) + [
      ([sys.executable, "-c", _AGREE], env_with_devices(
          1, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2",
          JAX_PROCESS_ID=str(i))) for i in (0, 1)],
                      during=preempt_after_step_40)
  stopped = []
  for p in done[:2]:
    assert p.returncode == 128 + signal.SIGTERM, p.stderr[-3000:]
    assert "stopped by SIGTERM: saved" in p.stdout, p.stdout
    stopped.append(int(p.stdout.split(f"{pod}: step ")[1].split(",")[0]))
  last = stopped[0]
  assert stopped == [last, last] and last > 40, stopped
  assert runs.checkpoint_steps(str(pod))[-1] == last
  for p in done[2:]:
    assert p.returncode == 0, p.stderr[-3000:]
  for i, p in enumerate(done[2:]):
    lines = [l for l in p.stdout.splitlines() if l.startswith("ERROR")]
    assert lines[0].startswith("ERROR the processes do not agree on x: seed "
                               "(process(es) [1] differ from process 0; "
                               f"here, process {i}: {i})"), lines
    assert lines[1].startswith("ERROR the processes do not agree on x: "
                               "process(es) [1] have other keys"), lines
    assert lines[2] == ("ERROR dir in use" if i == 0 else
                        "ERROR process 0 failed: ValueError: dir in use"), lines
  rows = rundir.read_metrics(pod)
  assert_same_curves(rundir.read_metrics(tmp_path / "one"), rows[:40],
                     rtol=2e-5)
  assert [r["step"] for r in rows] == list(range(1, last + 1))  # once each
  per_step = rundir.read_metrics(pod, "per_step.jsonl")
  assert [r["step"] for r in per_step] == list(range(1, last + 1))
  assert json.loads((pod / "run.json").read_text())["fork_step"] is None
  assert len(os.listdir(pod / "events")) == 2  # one per command, process 0's
  assert not [f for f in os.listdir(pod) if ".tmp" in f]
  # Process 0 wrote the run files; process 1 nothing outside checkpoints/.
  wrote0 = " ".join(_writes(tmp_path, 0))
  for name in ("config.json", "run.json", "metrics.jsonl", "per_step.jsonl",
               ".lock", "events"):
    assert f"{pod / name}" in wrote0, name
  wrote1 = _writes(tmp_path, 1)
  assert [w for w in wrote1 if f"{pod / 'checkpoints'}" not in w] == []
  assert any("process_1-of-2.json" in w for w in wrote1)  # the hook works
