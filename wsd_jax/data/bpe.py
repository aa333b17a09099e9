"""Language modelling over an offline corpus with a byte-level BPE tokenizer.

The corpus (``wsd_jax.data.corpus``: docstrings of the installed Python code
plus user files) is written into a cache directory with its manifest (byte
count, SHA-256). A byte-level BPE tokenizer (Hugging Face ``tokenizers``,
GPT-2 style: the 256 bytes as base alphabet, GPT-2's pre-tokenisation
regex, no normaliser, so every text round-trips exactly) is trained on it
and cached beside it, keyed by the corpus's SHA-256 and the vocabulary
size. The corpus is tokenised once into a ``.npy`` array of token ids
(uint16, or uint32 above 65,536 tokens) keyed by both hashes, which the
data source memory-maps: windows of T+1 tokens with stride T, the last
``eval_fraction`` of the tokens held out, batched by the shared grain
pipeline (``data/__init__.py``) like every source.

``config.data`` fields (``name="bpe"``):

* ``corpus``: ``"python"`` (docstrings of the standard library and of the
  installed packages), ``"stdlib"``, or ``"files"`` (``paths`` alone).
* ``paths``: user text files appended to the corpus (globs, comma-separated).
* ``corpus_max_bytes``: cap on the docstrings (None: all).
* ``vocab_size``: tokens of the trained tokenizer (>= 256).
* ``tokenizer``: a ``tokenizer.json`` to use instead of training one.
* ``cache_dir``: a local directory for the corpus, tokenizer and tokens
  (default ``$WSD_JAX_CACHE`` or ``~/.cache/wsd_jax``).
* ``eval_fraction``: share of the tokens held out for eval (default 0.05).

Each process builds what is missing itself; the files are deterministic and
written atomically, so processes sharing a cache directory agree.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import tempfile
from typing import Iterator

import numpy as np

from wsd_jax.data import corpus as corpus_lib
from wsd_jax.data import text

CORPORA = {"python": ("stdlib", "packages"), "stdlib": ("stdlib",),
           "files": ()}
MIN_VOCAB = 256  # the byte alphabet
CHUNK_CHARS = 1 << 20  # characters per piece the tokenizer sees at a time
# A newline after a printable ASCII character (\S under any definition): the
# GPT-2 pre-tokeniser always ends a pre-token there, so the text splits there
# into pieces that tokenise independently, exactly as the whole text does.
_SAFE_SPLIT = re.compile(r"[!-~](?=\n)")


def _tokenizers():
  try:
    import tokenizers
  except ImportError:
    raise ImportError("data.name='bpe' needs Hugging Face tokenizers: pip "
                      "install tokenizers (or wsd_jax[bpe])") from None
  return tokenizers


def cache_dir(data_config) -> str:
  """The local directory where a BPE dataset's files go."""
  d = (data_config.get("cache_dir", "") or os.environ.get("WSD_JAX_CACHE")
       or os.path.join("~", ".cache", "wsd_jax"))
  if "://" in str(d):
    raise ValueError(f"config.data.cache_dir={d!r} must be a local directory "
                     "(the token array is memory-mapped)")
  return os.path.abspath(os.path.expanduser(d))


def vocab_size(data_config) -> int:
  """The number of token ids: the given tokenizer's, else
  ``data_config.vocab_size``."""
  if path := data_config.get("tokenizer", ""):
    if not os.path.isfile(os.path.expanduser(path)):
      raise ValueError(f"config.data.tokenizer={path!r}: file not found")
    return int(_tokenizers().Tokenizer.from_file(
        os.path.expanduser(path)).get_vocab_size())
  v = data_config.get("vocab_size", None)
  if v is None or int(v) < MIN_VOCAB:
    raise ValueError(f"config.data.vocab_size={v!r}: a byte-level BPE "
                     f"vocabulary needs >= {MIN_VOCAB} tokens")
  return int(v)


def check(data_config) -> None:
  """Refuses, before any compute, an unknown corpus and missing or binary
  user files."""
  name = data_config.get("corpus", "python")
  if name not in CORPORA:
    raise ValueError(f"config.data.corpus={name!r} is not a corpus; known: "
                     f"{', '.join(CORPORA)}")
  paths = data_config.get("paths", "")
  if name == "files" or paths:
    text.resolve_paths(paths)
  vocab_size(data_config)
  cache_dir(data_config)


def chunks(s: str, size: int = CHUNK_CHARS) -> Iterator[str]:
  """``s`` cut into pieces of about ``size`` characters, only where the
  GPT-2 pre-tokeniser ends a pre-token anyway (see ``_SAFE_SPLIT``): the
  pieces' tokens, concatenated, are the tokens of ``s``."""
  start = 0
  while len(s) - start > size:
    m = _SAFE_SPLIT.search(s, start + size)
    if m is None:
      break
    yield s[start:m.end()]
    start = m.end()
  if start < len(s):
    yield s[start:]


def new_tokenizer():
  """An untrained GPT-2-style byte-level BPE tokenizer."""
  tk = _tokenizers()
  tok = tk.Tokenizer(tk.models.BPE())
  tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                   use_regex=True)
  tok.decoder = tk.decoders.ByteLevel()
  return tok


def train_tokenizer(corpus_text: str, vocab: int):
  """A byte-level BPE tokenizer of at most ``vocab`` tokens trained on
  ``corpus_text`` (deterministic)."""
  tk = _tokenizers()
  tok = new_tokenizer()
  trainer = tk.trainers.BpeTrainer(
      vocab_size=vocab, min_frequency=2, show_progress=False,
      initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
      special_tokens=[])
  tok.train_from_iterator(chunks(corpus_text), trainer=trainer)
  return tok


def encode(tok, corpus_text: str, chunk_chars: int = CHUNK_CHARS,
           group: int = 32) -> np.ndarray:
  """The token ids of ``corpus_text`` (uint16, or uint32 for a vocabulary
  over 65,536), encoded in parallel over ``chunks``; equal to
  ``tok.encode(corpus_text).ids``."""
  dtype = np.uint16 if tok.get_vocab_size() <= 1 << 16 else np.uint32
  encode_batch = getattr(tok, "encode_batch_fast", tok.encode_batch)
  pieces, out = list(chunks(corpus_text, chunk_chars)), []
  for i in range(0, len(pieces), group):
    for e in encode_batch(pieces[i:i + group], add_special_tokens=False):
      out.append(np.asarray(e.ids, dtype))
  return np.concatenate(out) if out else np.zeros((0,), dtype)


def _read_text(path: str) -> str:
  """A file's text exactly (no newline translation)."""
  with open(path, "rb") as f:
    return f.read().decode("utf-8")


def _sha256_file(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 24), b""):
      h.update(block)
  return h.hexdigest()


def _atomic(path: str, write) -> None:
  """``write(tmp_path)``, then renames the temporary file to ``path``."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".bpe-",
                             suffix=os.path.splitext(path)[1])
  os.close(fd)
  try:
    write(tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


@dataclasses.dataclass(frozen=True)
class Prepared:
  """A BPE dataset on disk: the corpus, its tokenizer and its token ids."""
  corpus_path: str
  manifest: dict
  tokenizer_path: str
  tokens_path: str
  vocab_size: int   # the model's vocabulary (>= the tokenizer's)
  num_tokens: int

  def tokenizer(self):
    return _tokenizers().Tokenizer.from_file(self.tokenizer_path)

  def tokens(self) -> np.ndarray:
    """The token ids, memory-mapped (read-only)."""
    return np.load(self.tokens_path, mmap_mode="r")

  def describe(self) -> dict:
    """What a run records about its data (study reports)."""
    request = self.manifest.get("request", {})
    return {"corpus": "+".join(request.get("sources", [])) or "files",
            "user_files": [f[0] for f in request.get("files", [])],
            "python": request.get("python"), "bytes": self.manifest["bytes"],
            "sha256": self.manifest["sha256"], "path": self.corpus_path,
            "tokenizer": self.tokenizer_path, "vocab_size": self.vocab_size,
            "tokens": self.num_tokens}


def _key(data_config) -> tuple:
  get = data_config.get
  return (cache_dir(data_config), get("corpus", "python"),
          str(get("paths", "") or ""), get("corpus_max_bytes", None),
          get("vocab_size", None), get("tokenizer", "") or "")


def prepare(data_config) -> Prepared:
  """Builds (or finds in the cache) the corpus, the tokenizer and the token
  array of a BPE data config."""
  check(data_config)
  return _prepare(*_key(data_config))


@functools.lru_cache(maxsize=8)
def _prepare(directory: str, name: str, paths: str, max_bytes: int | None,
             vocab: int | None, tokenizer: str) -> Prepared:
  files = text.resolve_paths(paths) if paths else []
  request_key = hashlib.sha256(json.dumps(
      [name, files, max_bytes]).encode()).hexdigest()[:12]
  corpus_path = os.path.join(directory, f"corpus-{name}-{request_key}.txt")
  manifest = corpus_lib.build_corpus(corpus_path, sources=CORPORA[name],
                                     files=files, max_bytes=max_bytes)
  sha = manifest["sha256"]
  stem = os.path.splitext(corpus_path)[0]
  corpus_text = None
  if tokenizer:
    tokenizer_path = os.path.abspath(os.path.expanduser(tokenizer))
  else:
    tokenizer_path = f"{stem}.bpe{int(vocab)}-{sha[:16]}.json"
    if not os.path.isfile(tokenizer_path):
      corpus_text = _read_text(corpus_path)
      tok = train_tokenizer(corpus_text, int(vocab))
      _atomic(tokenizer_path, tok.save)
  tok = _tokenizers().Tokenizer.from_file(tokenizer_path)
  tok_sha = _sha256_file(tokenizer_path)
  tokens_path = f"{stem}.{sha[:16]}.tok-{tok_sha[:16]}.npy"
  if not os.path.isfile(tokens_path):
    if corpus_text is None:
      corpus_text = _read_text(corpus_path)
    ids = encode(tok, corpus_text)
    _atomic(tokens_path, lambda p: np.save(p, ids))
  num_tokens = len(np.load(tokens_path, mmap_mode="r"))
  model_vocab = int(vocab) if not tokenizer else tok.get_vocab_size()
  return Prepared(corpus_path, manifest, tokenizer_path, tokens_path,
                  max(model_vocab, tok.get_vocab_size()), num_tokens)


def reader(data_config, split: str, seed: int) -> tuple[text.Windows, int]:
  """(read fn, number of windows) of a split of the token array."""
  del seed  # The split is deterministic; the pipeline shuffles.
  p = prepare(data_config)
  return text.split_windows(p.tokens(), data_config, split,
                            f"the BPE corpus {p.corpus_path}")
