"""Real English text offline: the docstrings of the installed Python code.

No text corpus can be downloaded in CI or on an air-gapped machine, but every
machine with Python has the standard library's sources, and their docstrings
are real English (technical) prose: about 1.5 MB of module, class and function
documentation for CPython 3.11. The installed packages (``site-packages``)
add tens of MB more (about 27 MB on a machine with jax, tensorflow-datasets
and matplotlib), and user files can be appended. The text and its size depend
on the Python installation, so every corpus is written with a manifest that
records what went in, its byte count and its SHA-256.

    path = stdlib_corpus("/tmp/stdlib_docstrings.txt")
    config.data.paths = path      # byte-level text, configs/text.py or gpt.py
    manifest = build_corpus("/data/python_docs.txt",
                            sources=("stdlib", "packages"), files=["my.txt"])
"""

from __future__ import annotations

import ast
import concurrent.futures
import hashlib
import importlib.metadata
import json
import multiprocessing
import os
import site
import sys
import sysconfig
import tempfile
import warnings
from typing import Iterable, Iterator, Sequence

from wsd_jax.data import text

# Directories of the standard library whose docstrings are skipped: tests,
# vendored or generated code, and tools rather than library prose.
SKIP_DIRS = frozenset({
    "test", "tests", "idle_test", "idlelib", "lib2to3", "site-packages",
    "dist-packages", "__pycache__", "ensurepip", "turtledemo", "pydoc_data",
    "tkinter", "encodings", "config-3", "venv",
})
# ... and of installed packages: tests, vendored copies of other packages.
PACKAGE_SKIP_DIRS = frozenset({
    "test", "tests", "testing", "_vendor", "vendor", "vendored", "_vendored",
    "__pycache__", "site-packages", "dist-packages", "node_modules",
})
SOURCES = ("stdlib", "packages")
_SEPARATOR = "\n\n"
_PARALLEL_MIN_FILES = 256  # fewer files are parsed in this process


def _skipped(rel_dir: str, skip: frozenset = SKIP_DIRS) -> bool:
  return any(part in skip or part.startswith("config-") or
             part.endswith((".dist-info", ".egg-info"))
             for part in rel_dir.split(os.sep) if part not in ("", "."))


def python_files(root: str, skip: frozenset = SKIP_DIRS) -> list[str]:
  """The ``*.py`` files under ``root`` (not ``test_*``), sorted by their path
  relative to ``root``, minus directories named in ``skip``."""
  files = []
  for dirpath, dirnames, filenames in os.walk(root):
    if _skipped(os.path.relpath(dirpath, root), skip):
      dirnames[:] = []
      continue
    dirnames.sort()
    files.extend(os.path.join(dirpath, f) for f in sorted(filenames)
                 if f.endswith(".py") and not f.startswith("test_"))
  return sorted(files, key=lambda f: os.path.relpath(f, root))


def stdlib_files(root: str | None = None) -> list[str]:
  """The standard library's ``*.py`` files, in sorted order, minus SKIP_DIRS."""
  return python_files(root or sysconfig.get_paths()["stdlib"])


def package_roots() -> list[str]:
  """The ``site-packages`` directories of this interpreter (system, user and
  any on ``sys.path``), in a fixed order, without duplicates."""
  paths = sysconfig.get_paths()
  candidates = [paths["purelib"], paths["platlib"], *site.getsitepackages(),
                site.getusersitepackages()]
  candidates += [p for p in sys.path
                 if os.path.basename(p) in ("site-packages", "dist-packages")]
  roots = []
  for p in candidates:
    real = os.path.realpath(p)
    if os.path.isdir(real) and real not in roots:
      roots.append(real)
  return roots


def package_files(roots: Sequence[str] | None = None) -> list[str]:
  """The ``*.py`` files of the installed packages (``package_roots``)."""
  return [f for root in (roots or package_roots())
          for f in python_files(root, PACKAGE_SKIP_DIRS)]


def installed_packages() -> list[str]:
  """``name==version`` of every installed distribution, sorted."""
  return sorted({f"{d.metadata['Name']}=={d.version}"
                 for d in importlib.metadata.distributions()
                 if d.metadata["Name"]}, key=str.lower)


def docstrings(source: str) -> list[str]:
  """Module, class and function docstrings of ``source``, in source order."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # invalid escapes in old sources
    tree = ast.parse(source)
  nodes = [tree] + sorted(
      (n for n in ast.walk(tree) if isinstance(
          n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))),
      key=lambda n: (n.lineno, n.col_offset))
  out = []
  for node in nodes:
    doc = ast.get_docstring(node, clean=True)
    if doc and doc.strip():
      out.append(doc.strip())
  return out


def file_docstrings(path: str) -> list[str]:
  """``docstrings`` of a file; none for a file this interpreter cannot read
  or parse."""
  try:
    with open(path, encoding="utf-8") as f:
      return docstrings(f.read())
  except (OSError, SyntaxError, UnicodeDecodeError, ValueError, RecursionError):
    return []


def _docs_of_files(files: Sequence[str], workers: int) -> Iterator[list[str]]:
  """``file_docstrings`` of each file, in order; parsed by ``workers``
  processes (spawned: the caller may hold JAX's threads) for many files."""
  if workers <= 1 or len(files) < _PARALLEL_MIN_FILES:
    yield from map(file_docstrings, files)
    return
  context = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(workers, context) as pool:
    batch = 8 * workers * 16
    for i in range(0, len(files), batch):  # stop early at max_bytes
      yield from pool.map(file_docstrings, files[i:i + batch], chunksize=16)


def build_text(root: str | None = None, max_bytes: int | None = None) -> str:
  """The standard-library corpus text: every docstring, separated by a blank
  line."""
  return "".join(_pieces(stdlib_files(root), max_bytes, dedupe=False,
                         workers=1))


def _pieces(files: Sequence[str], max_bytes: int | None, dedupe: bool,
            workers: int) -> Iterator[str]:
  """Each docstring of ``files`` plus the separator, until ``max_bytes``."""
  size, seen = 0, set()
  for docs in _docs_of_files(files, workers):
    for doc in docs:
      if dedupe:
        key = hashlib.blake2b(doc.encode(), digest_size=16).digest()
        if key in seen:
          continue
        seen.add(key)
      piece = doc + _SEPARATOR
      n = len(piece.encode("utf-8"))
      if max_bytes is not None and size + n > max_bytes:
        return
      size += n
      yield piece


def _write_atomic(path: str, payload: bytes) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".",
                             prefix=".corpus-")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(payload)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def manifest_path(path: str) -> str:
  return path + ".manifest.json"


def read_manifest(path: str) -> dict | None:
  """The manifest of the corpus at ``path`` if it is complete (its byte
  count matches the file), else None."""
  try:
    with open(manifest_path(path)) as f:
      manifest = json.load(f)
  except (OSError, ValueError):
    return None
  if not os.path.isfile(path) or manifest.get("bytes") != os.path.getsize(path):
    return None
  return manifest


def _request(sources: Sequence[str], files: Sequence[str],
             max_bytes: int | None, dedupe: bool,
             roots: Sequence[str] | None) -> dict:
  """What a corpus is built from: equal requests give equal text."""
  request = {"sources": list(sources), "max_bytes": max_bytes,
             "dedupe": dedupe, "python": sys.version.split()[0]}
  if "packages" in sources:
    request["package_roots"] = list(roots or package_roots())
    request["packages"] = installed_packages()
  request["files"] = [[f, os.path.getsize(f), os.stat(f).st_mtime_ns]
                      for f in files]
  return request


def build_corpus(path: str, *, sources: Sequence[str] = SOURCES,
                 files: Iterable[str] = (), max_bytes: int | None = None,
                 dedupe: bool = True, roots: Sequence[str] | None = None,
                 workers: int | None = None) -> dict:
  """Writes a corpus of docstrings and user files to ``path``; returns its
  manifest.

  The text is every docstring of ``sources`` (``"stdlib"``: the standard
  library; ``"packages"``: every installed package, ``package_roots``), in
  sorted file order, each followed by a blank line, then each of ``files``
  as it is (UTF-8 text), after a blank line unless the text before ends
  with one: a corpus of one file is that file. It is written once,
  atomically; a later call with the same request (sources, Python version,
  installed packages, files with their sizes and times, ``max_bytes``)
  reuses it. The manifest (``path + ".manifest.json"``) records the request,
  the byte count, the SHA-256 of the text and the number of documents.

  Args:
    path: where to write the UTF-8 text (a local path).
    sources: docstring sources, a subset of ``SOURCES``.
    files: user text files (paths or globs) appended after the docstrings.
    max_bytes: cut the docstrings at a docstring boundary before this many
      bytes (None: all); user files are always whole.
    dedupe: drop docstrings whose text already occurred (packages repeat
      many); the standard-library corpus keeps them.
    roots: ``site-packages`` directories (default ``package_roots()``).
    workers: processes parsing the sources (default: the CPU count).

  Returns:
    The manifest dict (also written beside ``path``).
  """
  sources = tuple(sources)
  if unknown := sorted(set(sources) - set(SOURCES)):
    raise ValueError(f"unknown corpus source(s) {unknown}; known: "
                     f"{', '.join(SOURCES)}")
  files = text.resolve_paths(list(files)) if files else []
  for f in [path, *files]:
    if "://" in str(f):
      raise ValueError(f"a corpus is built from and written to local files, "
                       f"got {f!r}")
  path = os.path.abspath(os.path.expanduser(path))
  request = _request(sources, files, max_bytes, dedupe, roots)
  if (manifest := read_manifest(path)) and manifest.get("request") == request:
    return manifest
  source_files = []
  if "stdlib" in sources:
    source_files += stdlib_files()
  if "packages" in sources:
    source_files += package_files(request["package_roots"])
  workers = workers or os.cpu_count() or 1
  parts = list(_pieces(source_files, max_bytes, dedupe, workers))
  documents = len(parts)
  for f in files:
    if parts and not parts[-1].endswith(_SEPARATOR):
      parts.append(_SEPARATOR)
    with open(f, encoding="utf-8", errors="replace", newline="") as handle:
      parts.append(handle.read())
    documents += 1
  data = "".join(parts).encode("utf-8")
  manifest = {"request": request, "bytes": len(data),
              "sha256": hashlib.sha256(data).hexdigest(),
              "documents": documents, "source_files": len(source_files)}
  _write_atomic(path, data)
  _write_atomic(manifest_path(path),
                json.dumps(manifest, indent=1).encode("utf-8"))
  return manifest


def stdlib_corpus(path: str, max_bytes: int | None = None) -> str:
  """Writes the standard-library docstring corpus to ``path``; returns it.

  ``build_corpus(path, sources=("stdlib",), dedupe=False)``: UTF-8 text,
  deterministic for a given Python installation, written once, atomically,
  and reused by a later call with the same arguments (its manifest records
  the Python version, ``max_bytes``, the byte count and the SHA-256).

  Args:
    path: where to write the text file.
    max_bytes: cut the corpus at a docstring boundary before this many bytes
      (None: everything, about 1.5 MB).

  Returns:
    ``path``.
  """
  path = os.path.abspath(os.path.expanduser(path))
  build_corpus(path, sources=("stdlib",), max_bytes=max_bytes, dedupe=False,
               workers=1)
  return path


def describe(path: str) -> dict:
  """What a corpus file is, for study reports: its manifest's sources,
  Python version, byte count and SHA-256 (the byte count alone for a file
  without a manifest)."""
  manifest = read_manifest(path) or {}
  request = manifest.get("request", {})
  sources = request.get("sources", ["stdlib"])
  return {"corpus": "python-" + "+".join(sources) + "-docstrings"
                    if manifest else str(path),
          "python": request.get("python", sys.version.split()[0]),
          "bytes": os.path.getsize(path), "sha256": manifest.get("sha256"),
          "path": path}


def use_corpus(config, workdir: str) -> dict:
  """A study config's trainer reads a corpus written into ``workdir``.

  Byte-level text (``data.name="text"``): sets
  ``config.train_config.data.paths`` to the standard-library corpus unless
  it is already set (then that text is used); ``config.corpus_max_bytes``
  caps it. BPE (``data.name="bpe"``): ``data.cache_dir`` defaults to
  ``workdir``, and the corpus, tokenizer and token array are built there
  now (``bpe.prepare``). Returns the description of the text used.
  """
  data = config.train_config.data
  if data.get("name") == "bpe":
    from wsd_jax.data import bpe
    if not data.get("cache_dir", ""):
      data.cache_dir = workdir
    return bpe.prepare(data).describe()
  if not data.get("paths", ""):
    data.paths = stdlib_corpus(os.path.join(workdir, "stdlib_docstrings.txt"),
                               max_bytes=config.get("corpus_max_bytes", None))
    return describe(data.paths)
  return {"corpus": str(data.paths)}


use_stdlib_corpus = use_corpus  # the name the studies were written against


def main(argv: Sequence[str] | None = None) -> None:
  """``python -m wsd_jax.data.corpus OUT [--sources=stdlib,packages]
  [--max_bytes=N] [FILE ...]``: builds a corpus and prints its manifest."""
  import argparse
  p = argparse.ArgumentParser(description=main.__doc__)
  p.add_argument("out")
  p.add_argument("files", nargs="*", help="user text files to append")
  p.add_argument("--sources", default=",".join(SOURCES))
  p.add_argument("--max_bytes", type=int, default=None)
  a = p.parse_args(argv)
  manifest = build_corpus(a.out, sources=[s for s in a.sources.split(",") if s],
                          files=a.files, max_bytes=a.max_bytes)
  print(json.dumps({k: v for k, v in manifest.items() if k != "request"}))


if __name__ == "__main__":
  main()
