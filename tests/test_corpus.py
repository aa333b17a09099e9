"""The standard-library docstring corpus: deterministic, real text, reused."""

import os

from wsd_jax.data import corpus


def test_corpus_is_deterministic_text_and_reused(tmp_path):
  path = corpus.stdlib_corpus(str(tmp_path / "a.txt"), max_bytes=300_000)
  data = open(path, "rb").read()
  assert 200_000 < len(data) <= 300_000
  text = data.decode("utf-8")  # valid UTF-8
  assert "\x00" not in text
  assert sum(c.isascii() for c in text) / len(text) > 0.99
  assert sum(c.isalpha() or c.isspace() for c in text) / len(text) > 0.8
  assert "Return" in text and " the " in text  # English prose
  mtime = os.path.getmtime(path)
  assert corpus.stdlib_corpus(path, max_bytes=300_000) == path  # reused
  assert os.path.getmtime(path) == mtime
  other = corpus.stdlib_corpus(str(tmp_path / "b.txt"), max_bytes=300_000)
  assert open(other, "rb").read() == data  # deterministic
  info = corpus.describe(path)
  assert info["bytes"] == len(data) and info["python"]


def test_incomplete_file_is_rebuilt(tmp_path):
  path = str(tmp_path / "c.txt")
  with open(path, "w") as f:
    f.write("partial")
  corpus.stdlib_corpus(path, max_bytes=50_000)
  assert os.path.getsize(path) > 10_000
  assert corpus.stdlib_corpus(path, max_bytes=20_000) == path  # other size
  assert os.path.getsize(path) <= 20_000


def test_docstrings_in_source_order():
  src = '"""Mod."""\nclass A:\n  """Cls."""\n  def f(self):\n    """Fn."""\n'
  assert corpus.docstrings(src) == ["Mod.", "Cls.", "Fn."]


def test_skips_tests_and_tools():
  files = corpus.stdlib_files()
  assert files == sorted(files, key=lambda f: os.path.relpath(
      f, os.path.dirname(os.__file__)))
  assert not any(f"{os.sep}test{os.sep}" in f or "idlelib" in f or
                 "lib2to3" in f for f in files)
  assert any(f.endswith(f"{os.sep}os.py") for f in files)
