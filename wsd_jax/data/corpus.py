"""Real English text offline: the docstrings of the Python standard library.

No text corpus can be downloaded in CI or on an air-gapped machine, but every
machine with Python has the standard library's sources, and their docstrings
are real English (technical) prose: about 1.5 MB of module, class and function
documentation for CPython 3.11 (the exact text and byte count vary slightly
between Python versions and builds, so studies record both).

    path = stdlib_corpus("/tmp/stdlib_docstrings.txt")
    config.data.paths = path      # byte-level text, configs/text.py or gpt.py
"""

from __future__ import annotations

import ast
import os
import sys
import sysconfig
import tempfile
import warnings

# Directories of the standard library whose docstrings are skipped: tests,
# vendored or generated code, and tools rather than library prose.
SKIP_DIRS = frozenset({
    "test", "tests", "idle_test", "idlelib", "lib2to3", "site-packages",
    "dist-packages", "__pycache__", "ensurepip", "turtledemo", "pydoc_data",
    "tkinter", "encodings", "config-3", "venv",
})
_SEPARATOR = "\n\n"


def _skipped(rel_dir: str) -> bool:
  return any(part in SKIP_DIRS or part.startswith("config-")
             for part in rel_dir.split(os.sep) if part not in ("", "."))


def stdlib_files(root: str | None = None) -> list[str]:
  """The standard library's ``*.py`` files, in sorted order, minus SKIP_DIRS."""
  root = root or sysconfig.get_paths()["stdlib"]
  files = []
  for dirpath, dirnames, filenames in os.walk(root):
    rel = os.path.relpath(dirpath, root)
    if _skipped(rel):
      dirnames[:] = []
      continue
    dirnames.sort()
    files.extend(os.path.join(dirpath, f) for f in sorted(filenames)
                 if f.endswith(".py") and not f.startswith("test_"))
  return sorted(files, key=lambda f: os.path.relpath(f, root))


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


def build_text(root: str | None = None, max_bytes: int | None = None) -> str:
  """The corpus text: every docstring, separated by a blank line."""
  parts, size = [], 0
  for path in stdlib_files(root):
    try:
      with open(path, encoding="utf-8") as f:
        docs = docstrings(f.read())
    except (SyntaxError, UnicodeDecodeError, ValueError):
      continue  # a file this interpreter cannot parse
    for doc in docs:
      piece = doc + _SEPARATOR
      n = len(piece.encode("utf-8"))
      if max_bytes is not None and size + n > max_bytes:
        return "".join(parts)
      parts.append(piece)
      size += n
  return "".join(parts)


def stdlib_corpus(path: str, max_bytes: int | None = None) -> str:
  """Writes the standard-library docstring corpus to ``path``; returns it.

  The file is UTF-8 text, deterministic for a given Python installation, and
  written once, atomically (a temporary file renamed into place); a later
  call with the same arguments reuses it. A marker file next to it
  (``path + ".done"``) records the Python version, ``max_bytes`` and the byte
  count, so a partial or differently sized file is rebuilt.

  Args:
    path: where to write the text file.
    max_bytes: cut the corpus at a docstring boundary before this many bytes
      (None: everything, about 1.5 MB).

  Returns:
    ``path``.
  """
  path = os.path.abspath(os.path.expanduser(path))
  marker = path + ".done"
  want = f"{sys.version.split()[0]} max_bytes={max_bytes}"
  if os.path.isfile(path) and os.path.isfile(marker):
    with open(marker) as f:
      recorded = f.read().split("\n")
    if recorded[0] == want and recorded[1:2] == [str(os.path.getsize(path))]:
      return path
  data = build_text(max_bytes=max_bytes).encode("utf-8")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  for target, payload in ((path, data),
                          (marker, f"{want}\n{len(data)}\n".encode())):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".corpus-")
    with os.fdopen(fd, "wb") as f:
      f.write(payload)
    os.replace(tmp, target)
  return path


def describe(path: str) -> dict:
  """Python version and byte count of a corpus file, for study reports."""
  return {"corpus": "python-stdlib-docstrings",
          "python": sys.version.split()[0],
          "bytes": os.path.getsize(path), "path": path}


def use_stdlib_corpus(config, workdir: str) -> dict:
  """A study config's trainer reads the corpus, written into ``workdir``.

  Sets ``config.train_config.data.paths`` unless it is already set (then that
  text is used); ``config.corpus_max_bytes`` caps the corpus. Returns
  ``describe`` of the text used.
  """
  data = config.train_config.data
  if not data.get("paths", ""):
    data.paths = stdlib_corpus(os.path.join(workdir, "stdlib_docstrings.txt"),
                               max_bytes=config.get("corpus_max_bytes", None))
    return describe(data.paths)
  return {"corpus": str(data.paths)}
