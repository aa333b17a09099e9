"""Offline gs:// for tests: a loopback-only network namespace and a GCS emulator.

Nothing here can reach an address outside this machine. Each call of
`run_in_loopback` runs one shell inside `unshare -n` (a new network namespace
whose only interface is `lo`), optionally with `gcp-storage-emulator` serving
an in-memory bucket on 127.0.0.1 inside that namespace, and with the
environment set so that every GCS client in the stack (gcsfs under
`etils.epath`, google-cloud-storage, tensorstore under Orbax) talks to the
emulator and never looks for credentials on a metadata server. Several
commands can share one namespace and one emulator (train, train again to
resume, read), and the bucket can be listed or downloaded at the end.

    import gcs  # tests/ is on sys.path under pytest, like tiny.py

    if not gcs.loopback_namespace_available():
      pytest.skip(gcs.loopback_skip_reason())
    r = gcs.run_in_loopback(
        [[sys.executable, "-m", "experiments.train", "--workdir=gs://bkt/run", ...],
         [sys.executable, "-m", "experiments.train", "--workdir=gs://bkt/run", ...]],
        env={"JAX_PLATFORMS": "cpu"}, bucket="bkt", timeout=600,
        list_bucket=True, download_to=tmp_path / "bucket")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "run/metrics.jsonl" in r.objects

See docs/gcs_testing.md for what each environment variable does and why.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Optional, Union

DEFAULT_BUCKET = "test-bucket"
DEFAULT_PORT = 9023  # any port: each namespace has its own loopback
# Exit status of the wrapper script when the emulator did not come up.
EMULATOR_FAILED = 97
# ... and when the namespace has an interface other than lo (not isolated).
NOT_ISOLATED = 98

Commands = Union[str, Sequence[str], Sequence[Sequence[str]]]

# Brings lo up without iproute2: SIOCGIFFLAGS / SIOCSIFFLAGS with IFF_UP.
_LO_UP_PY = (
    "import fcntl,socket,struct;"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
    "q=lambda f:struct.pack('16sH22s',b'lo',f,bytes(22));"
    "f=struct.unpack('16sH',fcntl.ioctl(s,0x8913,q(0))[:18])[1];"
    "fcntl.ioctl(s,0x8914,q(f|1))")

# Variables that could point a client at real credentials; always removed.
_SCRUB = ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST",
          "TENSORSTORE_GCS_HTTP_URL", "GCE_METADATA_HOST", "GCE_METADATA_ROOT",
          "GCE_METADATA_IP", "GOOGLE_AUTH_TOKEN_FOR_TESTING",
          "http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY",
          "HTTPS_PROXY", "ALL_PROXY")

# Closed port on the namespace's own loopback: any metadata-server lookup
# that is not already switched off fails at once instead of leaving the box.
_NO_METADATA = "127.0.0.1:1"


def offline_env(config_dir: str) -> dict[str, str]:
  """Settings that keep every GCS client away from credential lookups.

  Used with and without the emulator. `config_dir` is an empty directory
  (stands in for ~/.config/gcloud, so no user credentials are found).
  """
  return {
      # gcsfs: the plain GCSFileSystem. The default ExtendedGcsFileSystem
      # asks the gRPC storage-control API for the bucket type before every
      # open/write (60 s of retries each time against the HTTP-only
      # emulator; the failed answer is not cached). Read at gcsfs import.
      "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
      # etils.epath: gs:// through fsspec/gcsfs even if tensorflow gets
      # installed (it would switch to tf.io.gfile, which ignores all this).
      "EPATH_USE_TF": "false",
      # fsspec config -> GCSFileSystem(token="anon"): no credential search.
      "FSSPEC_GCS_TOKEN": "anon",
      # gcsfs: skip the GCE ("cloud") method should a token search happen.
      "NO_GCE_CHECK": "true",
      # tensorstore (Orbax): a fixed bearer token, so it reads no credential
      # file and asks no metadata server. The emulator ignores the token.
      "GOOGLE_AUTH_TOKEN_FOR_TESTING": "offline-test-token",
      # google-auth and tensorstore metadata lookups: a closed local port.
      "GCE_METADATA_HOST": _NO_METADATA,
      "GCE_METADATA_ROOT": _NO_METADATA,
      "GCE_METADATA_IP": _NO_METADATA,
      # gcloud config dir (application_default_credentials.json): empty.
      "CLOUDSDK_CONFIG": config_dir,
      # google-cloud-storage needs a project; none is looked up.
      "GOOGLE_CLOUD_PROJECT": "test-project",
      "NO_PROXY": "*",
      "no_proxy": "*",
  }


def emulator_env(port: int = DEFAULT_PORT) -> dict[str, str]:
  """Endpoint settings that send every client to the emulator."""
  url = f"http://127.0.0.1:{port}"
  return {
      "STORAGE_EMULATOR_HOST": url,     # gcsfs, google-cloud-storage
      "TENSORSTORE_GCS_HTTP_URL": url,  # tensorstore (Orbax checkpoints)
  }


def _unshare_argv() -> list[str]:
  unshare = shutil.which("unshare") or "unshare"
  # As root a bare network namespace; otherwise inside a user namespace.
  return [unshare, "-n"] if os.geteuid() == 0 else [unshare, "-r", "-n"]


def _lo_up_sh() -> str:
  py = shlex.quote(sys.executable)
  return (f"{{ ip link set lo up 2>/dev/null || {py} -c {shlex.quote(_LO_UP_PY)}; }}"
          " || { echo 'gcs.py: cannot bring lo up' >&2; exit 1; }\n")


# Only lo in this namespace (/proc/net/dev is per network namespace).
_ISOLATION_SH = (
    "_ifs=$(awk -F: 'NR>2{gsub(/ /,\"\",$1);print $1}' /proc/net/dev | tr '\\n' ' ')\n"
    f"[ \"$_ifs\" = 'lo ' ] || {{ echo \"gcs.py: not isolated: $_ifs\" >&2; exit {NOT_ISOLATED}; }}\n")


@functools.cache
def loopback_skip_reason() -> Optional[str]:
  """None when a loopback-only namespace works here, else why not."""
  if not sys.platform.startswith("linux"):
    return "network namespaces need Linux"
  if not shutil.which("unshare"):
    return "no unshare (Debian package util-linux)"
  script = _lo_up_sh() + _ISOLATION_SH + (
      f"{shlex.quote(sys.executable)} -c \"import socket;"
      "s=socket.socket();s.bind(('127.0.0.1',0));s.listen();"
      "socket.create_connection(s.getsockname(),2).close()\"\n")
  try:
    p = subprocess.run(_unshare_argv() + ["sh", "-c", script],
                       capture_output=True, text=True, timeout=60)
  except (OSError, subprocess.TimeoutExpired) as e:
    return f"unshare failed: {e}"
  if p.returncode:
    return (f"no loopback-only network namespace here ({' '.join(_unshare_argv())}"
            f" exited {p.returncode}): {p.stderr.strip()[-300:]}")
  return None


def loopback_namespace_available() -> bool:
  """Whether `unshare -n` plus bringing lo up works here (cached)."""
  return loopback_skip_reason() is None


@functools.cache
def emulator_skip_reason() -> Optional[str]:
  """None when the emulator and gcsfs are installed, else why not."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  for mod, pkg in (("gcp_storage_emulator", "gcp-storage-emulator"),
                   ("gcsfs", "gcsfs")):
    if importlib.util.find_spec(mod) is None:
      return f"{pkg} is not installed (pip install -r requirements.txt)"
  return loopback_skip_reason()


# Launches the emulator. With "1" as first argument it first fills three gaps
# of gcp-storage-emulator 2026.7.19 where real GCS behaves otherwise and our
# clients notice (docs/gcs_testing.md):
# - objects.move (POST .../o/SRC/moveTo/o/DST), which gcsfs uses for every
#   rename: served as copy + delete. Stock: 501, which gcsfs retries for
#   ~32 s before it falls back to copy + delete itself.
# - media downloads carry x-goog-generation / x-goog-metageneration, as GCS
#   sends them. Stock: none, so tensorstore takes generation 0 and a later
#   conditional write of an OCDBT manifest (Orbax) fails now and then with
#   "Malformed StorageGeneration".
# - ifGenerationMatch / ifGenerationNotMatch on reads (412 / 304) and
#   ifGenerationMatch on uploads named in the query (412), the conditional
#   requests tensorstore relies on. Stock: ignored.
_EMULATOR_PY = r"""
import sys
from http import HTTPStatus
from gcp_storage_emulator import server
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

def _generation(storage, bucket, name):
  try:
    return storage.get_file_obj(bucket, name)
  except NotFound:
    return None

def _failed_precondition(request, response, obj):
  q, gen = request.query, str(obj["generation"]) if obj else "0"
  if "ifGenerationMatch" in q and q["ifGenerationMatch"][0] != gen:
    response.status = HTTPStatus.PRECONDITION_FAILED
  elif obj and "ifGenerationNotMatch" in q and q["ifGenerationNotMatch"][0] == gen:
    response.status = HTTPStatus.NOT_MODIFIED
  else:
    return False
  return True

def _wrap_read(orig):
  def read(request, response, storage, *args, **kwargs):
    p = request.params
    obj = _generation(storage, p["bucket_name"], p["object_id"])
    if obj is not None and _failed_precondition(request, response, obj):
      return
    orig(request, response, storage, *args, **kwargs)
    if obj is not None and response.status in (HTTPStatus.OK,
                                               HTTPStatus.PARTIAL_CONTENT):
      response["x-goog-generation"] = str(obj["generation"])
      response["x-goog-metageneration"] = str(obj.get("metageneration", "1"))
  return read

def _wrap_insert(orig):
  def insert(request, response, storage, *args, **kwargs):
    q = request.query
    if "ifGenerationMatch" in q and q.get("name"):
      obj = _generation(storage, request.params["bucket_name"], q["name"][0])
      if _failed_precondition(request, response, obj):
        return
    orig(request, response, storage, *args, **kwargs)
  return insert

def _move(request, response, storage, *args, **kwargs):
  p = request.params
  p["dest_bucket_name"] = p["bucket_name"]
  objects.copy(request, response, storage)
  if response.status == HTTPStatus.OK:
    storage.delete_file(p["bucket_name"], p["object_id"])

if sys.argv.pop(1) == "1":
  new = {objects.download: _wrap_read(objects.download),
         objects.get: _wrap_read(objects.get),
         objects.insert: _wrap_insert(objects.insert)}
  objects.download = new[objects.download]  # objects.get calls it by name
  objects.insert = new[objects.insert]      # the router falls back to it
  server.HANDLERS = tuple(
      (rf"^{prefix}/b/(?P<bucket_name>[-.\w]+)/o/(?P<object_id>.*[^/]+)"
       rf"/moveTo/o/(?P<dest_object_id>.*[^/]+)$", {server.POST: _move})
      for prefix in (server.settings.API_ENDPOINT, "")) + tuple(
      (regex, {m: new.get(f, f) for m, f in handlers.items()})
      for regex, handlers in server.HANDLERS)
from gcp_storage_emulator.__main__ import main
main(sys.argv[1:])
"""

# Polls until the emulator serves the default bucket.
_WAIT_PY = r"""
import sys, time, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
while True:
  try:
    opener.open(url, timeout=1).read(); break
  except Exception as e:
    if time.monotonic() > deadline: sys.exit(f"gcs.py: emulator not up: {e!r}")
    time.sleep(0.05)
"""

# Lists (and downloads) the bucket through gcsfs.
_LIST_PY = r"""
import json, os, sys
import gcsfs
bucket, out, dest = sys.argv[1:4]
fs = gcsfs.GCSFileSystem(token="anon")
keys = sorted(k.split("/", 1)[1] for k in fs.find(bucket) if "/" in k)
if dest:
  for k in keys:
    local = os.path.join(dest, *k.split("/"))
    os.makedirs(os.path.dirname(local), exist_ok=True)
    fs.get_file(f"{bucket}/{k}", local)
with open(out, "w") as f: json.dump(keys, f)
"""


class LoopbackResult(subprocess.CompletedProcess):
  """`CompletedProcess` (text stdout/stderr) with what the namespace left.

  objects: keys in the bucket at the end, relative to it ("run/config.json"),
    when `list_bucket` or `download_to` was given, else None.
  emulator_log: the emulator's output ("" without emulator).
  seconds: wall time of the whole namespace, emulator start included.
  """
  objects: Optional[list[str]] = None
  emulator_log: str = ""
  seconds: float = 0.0

  @property
  def output(self) -> str:
    return f"{self.stdout}\n{self.stderr}"


def _script(commands: Commands) -> str:
  if isinstance(commands, str):
    return commands
  commands = list(commands)
  if commands and not any(isinstance(c, (list, tuple)) for c in commands):
    commands = [commands]  # one argv
  # Several argv lists: run in order, stop at the first failure.
  return "\n".join(" ".join(shlex.quote(os.fspath(a)) for a in c) + " || exit $?"
                   for c in commands)


def run_in_loopback(commands: Commands,
                    env: Optional[Mapping[str, Optional[str]]] = None,
                    with_emulator: bool = True,
                    bucket: str = DEFAULT_BUCKET,
                    timeout: float = 300,
                    *,
                    port: int = DEFAULT_PORT,
                    cwd: Optional[Union[str, os.PathLike]] = None,
                    list_bucket: bool = False,
                    download_to: Optional[Union[str, os.PathLike]] = None,
                    faithful: bool = True,
                    emulator_timeout: float = 60) -> LoopbackResult:
  """Runs `commands` in a loopback-only namespace, optionally with a bucket.

  Args:
    commands: a shell script (str, run by `sh`); or one argv (list of str);
      or several argvs (list of lists of str), run in order, stopping at the
      first that fails. All run in the same namespace, against the same
      in-memory emulator.
    env: variables set for the commands on top of os.environ and the offline
      settings (a value of None removes the variable).
    with_emulator: start `gcp_storage_emulator` on 127.0.0.1:`port` with
      `bucket` created, and point every client at it. Without it the GCS
      endpoints are the real ones, which cannot be reached from here.
    bucket: the emulator's default bucket.
    timeout: seconds for the whole run; on expiry everything in it is killed
      and subprocess.TimeoutExpired is raised (its output has what came).
    cwd: working directory of the commands.
    list_bucket: after the commands (whatever their status), list the bucket
      into `result.objects`.
    download_to: also copy every object into this local directory.
    faithful: patch the emulator where it differs from GCS in ways our
      clients notice (see _EMULATOR_PY); False runs it stock.
    emulator_timeout: seconds to wait for the emulator to answer.

  Returns:
    LoopbackResult; returncode is the commands' exit status (97 when the
    emulator did not start, 98 if the namespace was not isolated).
  """
  with tempfile.TemporaryDirectory(prefix="gcs-loopback-") as tmp:
    config_dir = os.path.join(tmp, "gcloud")
    os.mkdir(config_dir)
    emu_log = os.path.join(tmp, "emulator.log")
    objects_json = os.path.join(tmp, "objects.json")
    full_env = dict(os.environ)
    for k in _SCRUB:
      full_env.pop(k, None)
    full_env.update(offline_env(config_dir))
    if with_emulator:
      full_env.update(emulator_env(port))
    for k, v in (env or {}).items():
      if v is None:
        full_env.pop(k, None)
      else:
        full_env[k] = str(v)

    py = shlex.quote(sys.executable)
    q = shlex.quote
    parts = ["set -u\n", _lo_up_sh(), _ISOLATION_SH]
    if with_emulator:
      parts.append(
          f"{py} -c {q(_EMULATOR_PY)} {int(faithful)} start --host=127.0.0.1"
          f" --port={port} --in-memory --default-bucket={q(bucket)}"
          f" >{q(emu_log)} 2>&1 &\n_emu=$!\n"
          f"{py} -c {q(_WAIT_PY)} "
          f"{q(f'http://127.0.0.1:{port}/storage/v1/b/{bucket}')} "
          f"{emulator_timeout} || {{ kill $_emu 2>/dev/null; exit {EMULATOR_FAILED}; }}\n")
    parts.append(f"(\nset +u\n{_script(commands)}\n)\n_rc=$?\n")
    if with_emulator and (list_bucket or download_to):
      dest = os.fspath(download_to) if download_to else ""
      parts.append(f"{py} -c {q(_LIST_PY)} {q(bucket)} {q(objects_json)} {q(dest)}"
                   " >&2 || echo 'gcs.py: listing the bucket failed' >&2\n")
    if with_emulator:
      parts.append("kill $_emu 2>/dev/null; wait $_emu 2>/dev/null\n")
    parts.append("exit $_rc\n")
    script = "".join(parts)

    argv = _unshare_argv() + ["sh", "-c", script]
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=full_env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
      out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
      out, err = proc.communicate()
      raise subprocess.TimeoutExpired(argv, timeout, output=out, stderr=err)
    finally:
      if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    result = LoopbackResult(argv, proc.returncode, out, err)
    result.seconds = time.monotonic() - start
    if os.path.exists(emu_log):
      with open(emu_log) as f:
        result.emulator_log = f.read()
    if os.path.exists(objects_json):
      import json  # pylint: disable=g-import-not-at-top
      with open(objects_json) as f:
        result.objects = json.load(f)
    return result
