"""Byte-level language modelling over text files (vocab 256).

The files (`data_config.paths`: a list or a comma-separated string; globs
allowed, each glob's matches sorted; local paths or URLs such as
`gs://bucket/dir/*.txt`, read through `etils.epath`) are concatenated in
order. The last
`eval_fraction` (default 0.05) of the bytes is held out for eval. Each part is
cut into windows of T+1 bytes with stride T, so every byte after the first is a
target exactly once per epoch.
"""

from __future__ import annotations

import dataclasses
import glob
import os

import numpy as np
from etils import epath

VOCAB_SIZE = 256
_SNIFF_BYTES = 64 * 1024    # how much of each file is checked for being text
_MAX_INVALID_SHARE = 0.25   # of the sniffed bytes that are not UTF-8


def check_text(path: str) -> None:
  """Refuses a file that is not text: a NUL byte, or more than a quarter of
  bytes that are not valid UTF-8, in its first 64 KiB. Binary files of more
  than a few KiB (executables, archives, images, arrays) all hold NUL bytes;
  Latin-1 text or a few stray bytes pass.

  Raises:
    ValueError: naming the file and what was found.
  """
  with epath.Path(path).open("rb") as f:
    head = f.read(_SNIFF_BYTES)
  if (nul := head.find(b"\0")) >= 0:
    raise ValueError(f"{path!r} is not a text file: a NUL byte at offset "
                     f"{nul}; text data must be UTF-8 text files")
  invalid = head.decode("utf-8", errors="replace").count("\ufffd")
  invalid -= head.decode("utf-8", errors="ignore").count("\ufffd")  # genuine
  if head and invalid > _MAX_INVALID_SHARE * len(head):
    raise ValueError(
        f"{path!r} is not a text file: {invalid} of its first {len(head)} "
        "bytes are not valid UTF-8; text data must be UTF-8 text files")


def resolve_paths(paths) -> list[str]:
  """Expands a list / comma-separated string of paths and globs; refuses a
  missing file and one that is not text (:func:`check_text`)."""
  given = paths
  if isinstance(paths, str):
    paths = [p for p in paths.split(",")]
  patterns = [str(p).strip() for p in (paths or []) if str(p).strip()]
  if not patterns:
    raise ValueError(f"text data needs files: set config.data.paths (files, "
                     f"globs, comma-separated), got {given!r}")
  files = []
  for pattern in patterns:
    if "://" not in pattern:
      pattern = os.path.expanduser(pattern)
    if glob.has_magic(pattern):
      matches = sorted(_glob(pattern))
      if not matches:
        raise ValueError(f"no file matches the glob {pattern!r}")
      files.extend(matches)
    elif not epath.Path(pattern).is_file():
      raise ValueError(f"text file not found: {pattern!r}")
    else:
      files.append(pattern)
  for f in files:
    check_text(f)
  return files


def _glob(pattern: str) -> list[str]:
  """Matches of a glob whose magic is in its last component (local or URL)."""
  if "://" not in pattern:
    return glob.glob(pattern)
  head, _, tail = pattern.rpartition("/")
  if glob.has_magic(head):
    raise ValueError(f"only the last component of a URL may be a glob: "
                     f"{pattern!r}")
  return [os.fspath(p) for p in epath.Path(head).glob(tail)]


@dataclasses.dataclass(frozen=True, eq=False)
class Windows:
  """Random access to windows of `length` tokens with stride `length - 1`."""

  tokens: np.ndarray  # uint8 bytes, or token ids (a memory map)
  length: int

  def __len__(self) -> int:
    return max((len(self.tokens) - 1) // (self.length - 1), 0)

  def __call__(self, ids: np.ndarray) -> np.ndarray:
    starts = np.asarray(ids, dtype=np.int64).reshape(-1, 1) * (self.length - 1)
    return self.tokens[starts + np.arange(self.length)].astype(np.int32)


def split_windows(tokens: np.ndarray, data_config, split: str, what: str,
                  unit: str = "tokens") -> tuple[Windows, int]:
  """(windows, their number) of ``split`` of ``tokens``: the last
  ``data_config.eval_fraction`` (default 0.05) for eval, the rest for train,
  in windows of ``seq_len + 1``. ``what`` and ``unit`` name the source and
  its tokens in errors."""
  eval_fraction = float(data_config.get("eval_fraction", 0.05))
  if not 0.0 <= eval_fraction < 1.0:
    raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
  cut = len(tokens) - int(len(tokens) * eval_fraction)
  part = tokens[cut:] if split == "eval" else tokens[:cut]
  windows = Windows(part, int(data_config.seq_len) + 1)
  if len(windows) == 0:
    raise ValueError(
        f"the {split} part of {what} has {len(part)} {unit}, fewer than "
        f"seq_len + 1 = {windows.length} (total {len(tokens)} {unit}, "
        f"eval_fraction {eval_fraction})")
  return windows, len(windows)


def reader(data_config, split: str, seed: int) -> tuple[Windows, int]:
  """(read fn, number of windows) of a split of the text files."""
  del seed  # The split is deterministic; the pipeline shuffles.
  files = resolve_paths(data_config.get("paths", None))
  data = b"".join(epath.Path(f).read_bytes() for f in files)
  return split_windows(np.frombuffer(data, dtype=np.uint8), data_config, split,
                       str(files), "bytes")
