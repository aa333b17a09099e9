"""What every experiment app shares: its flags' parsing and its console.

``run(main)`` replaces ``absl.app.run(main)``. Bad input ends an app with one
line on stderr, ``error: <the bad value>: <what to do>``, exit status 1 and
nothing written: an unknown config key, a missing config file, a bad config
variant, a malformed value, an unknown flag, a workdir that cannot be one
(all found while the flags are parsed, before ``main``), and a
``ValueError`` or file error that ``main`` raises (``friendly_errors``).
Library INFO logs (Orbax, absl, jax) are hidden unless ``--verbosity=0``
asks for them, so the console shows the progress bar, results and warnings.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import logging as std_logging
import os
import re
import sys
from typing import Any, NoReturn

import yaml
from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS

# Flags defined by the helpers below belong to the app that calls them (they
# are listed by its --help).
flags.disclaim_key_flags()

# What ``main`` raises for bad input: ended with the message alone.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError,
               NotADirectoryError, IsADirectoryError, PermissionError)

_CONFIG_HELP = ("Config file, FILE.py or FILE.py:VARIANT. Set any key with "
                "--config.KEY=VALUE; --print_config prints every key and its "
                "value.")

_config_default: str | None = None  # of this app's --config, if it has one


def fail(message: str) -> NoReturn:
  """Ends the app: ``error: message`` as one line on stderr, status 1."""
  sys.exit("error: " + " ".join(str(message).split()))


def friendly_errors(main):
  """Bad input (``ValueError``, a missing, misplaced or forbidden file) ends
  the app with the message alone, not a traceback; other errors keep their
  traceback."""
  @functools.wraps(main)
  def wrapped(argv):
    try:
      return main(argv)
    except USER_ERRORS as e:
      fail(f"{e}; check the permissions of that path"
           if isinstance(e, PermissionError) else str(e))
  return wrapped


def run(main) -> None:
  """``absl.app.run(main)`` with :func:`parse_flags` as its flag parser."""
  app.run(main, flags_parser=parse_flags)


def parse_flags(argv: list[str]) -> list[str]:
  """Parses the flags; any error ends the app with one line (:func:`fail`).

  Also hides library INFO logs: absl raises the verbosity to INFO after
  parsing unless ``--verbosity`` was given; here the default is WARNING
  (``--verbosity=0`` shows INFO again).
  """
  try:
    rest = FLAGS(argv)
    if _config_default is not None:
      FLAGS.config.keys()  # a config file that failed to load raises here
  except Exception as e:  # pylint: disable=broad-except
    try:
      message = _explain(e, argv)
    except Exception:  # pylint: disable=broad-except
      message = str(e)  # the error itself rather than the explainer's
    fail(message)
  if FLAGS["verbosity"].using_default_value:
    FLAGS.verbosity = logging.WARNING
    # gcsfs logs each failed retry with a traceback; the app reports the
    # final storage error in one line instead.
    std_logging.getLogger("gcsfs").setLevel(std_logging.CRITICAL)
  return rest


def define_config(default: str, help_string: str = "", *,
                  lock_config: bool = True):
  """``--config`` (a config file whose keys are set with
  ``--config.KEY=VALUE``) and ``--print_config``; returns the holder of
  ``--config``.

  An app that defines it prints its config and exits when ``--print_config``
  is given (see :func:`print_config`).
  """
  global _config_default
  _config_default = default
  flags.DEFINE_bool("print_config", False,
                    "Print the resolved config and exit; trains nothing.")
  try:  # without --config on the command line, the default is parsed here
    return config_flags.DEFINE_config_file(
        "config", default, f"{help_string} {_CONFIG_HELP}".strip(),
        lock_config=lock_config)
  except Exception as e:  # pylint: disable=broad-except
    fail(_explain(e, sys.argv))


def define_workdir(help_string: str):
  """``--workdir``, required unless ``--print_config`` is given; a path that
  cannot be a directory is refused while parsing (:func:`check_workdir`)."""
  holder = flags.DEFINE_string("workdir", None, help_string)

  def check(values: dict) -> bool:
    path = values["workdir"]
    if path is None:
      if values.get("print_config"):
        return True
      raise flags.ValidationError(
          "--workdir is required: give the run directory (--workdir=DIR)")
    try:
      check_workdir(path)
    except ValueError as e:
      raise flags.ValidationError(f"--workdir={path}: {e}") from None
    return True
  names = ["workdir"] + (["print_config"] if "print_config" in FLAGS else [])
  flags.register_multi_flags_validator(names, check)
  return holder


def check_workdir(path: str) -> None:
  """Refuses a directory path that cannot be used: a regular file, a file in
  the way of a parent, no permission to write where it would be created.
  Creates nothing. URLs (``gs://``) are left to their file system.

  Raises:
    ValueError: saying what is wrong and what to do.
  """
  if "://" in path:
    return
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError("is a regular file, not a directory; choose another "
                     "--workdir")
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ValueError(f"{existing} is a regular file, so no directory can be "
                     "created under it; choose another --workdir")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise ValueError(f"no permission to write in {existing}; choose a "
                     "--workdir you can write to")


def print_config(config, **resolved: Any) -> None:
  """Prints ``config`` as YAML (every key; null: not set) and, under
  ``resolved:``, what it resolves to."""
  out = _plain(config.to_dict() if hasattr(config, "to_dict") else config)
  if resolved:
    out["resolved"] = _plain(resolved)
  print(yaml.safe_dump(out, sort_keys=False), end="")


def _plain(x: Any) -> Any:
  """``x`` with tuples as lists and NumPy scalars as numbers (for YAML)."""
  if isinstance(x, dict):
    return {k: _plain(v) for k, v in x.items()}
  if isinstance(x, (tuple, list)):
    return [_plain(v) for v in x]
  return x.item() if hasattr(x, "item") else x


def define_study_flags(config_file: str) -> None:
  """``--config``, ``--print_config``, ``--workdir`` and ``--quick`` of a
  study app (defined only when the app runs as a script, so that tests can
  import several apps)."""
  define_config(config_file, "Study config.", lock_config=False)
  define_workdir("Study directory.")
  flags.DEFINE_bool("quick", False, f"The CI form ({config_file}:quick).")


def study_config(config_module):
  """The config the flags ask for: ``--quick`` means the module's quick one.
  With ``--print_config`` it is printed and the app ends."""
  config = (config_module.get_config("quick") if FLAGS.quick
            else FLAGS.config)
  if FLAGS.print_config:
    print_config(config)
    sys.exit(0)
  return config


# ----------------------------------------------------------------------------
# One line for an error of flag parsing.


def _root(error: BaseException) -> BaseException:
  """The exception at the bottom of ``error``'s chain (config_flags and absl
  re-raise a config file's error with a traceback in the message)."""
  while (cause := error.__cause__ or error.__context__) is not None:
    error = cause
  return error


def _flag_value(argv: list[str], name: str) -> str | None:
  """The last ``--name=VALUE`` / ``--name VALUE`` in ``argv``."""
  value = None
  for i, arg in enumerate(argv[1:], 1):
    if m := re.fullmatch(rf"--?{name}(?:=(.*))?", arg):
      value = m.group(1) if m.group(1) is not None else (
          argv[i + 1] if i + 1 < len(argv) else "")
  return value


def _load_config(arg: str):
  """The config ``--config=arg`` names, as config_flags loads it."""
  path, *variant = arg.split(":", 1)
  spec = importlib.util.spec_from_file_location("_cli_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(*variant)


def _unknown_override(config, argv: list[str]) -> str | None:
  """The first ``--config.PATH=VALUE`` whose PATH is not in ``config``."""
  for arg in argv[1:]:
    m = re.fullmatch(r"--?(?:no)?config\.([^=]+)(?:=.*)?", arg)
    if not m:
      continue
    node, where = config, "config"
    for key in m.group(1).split("."):
      if not hasattr(node, "keys"):
        return f"{arg}: {where} is a value, not a section of the config"
      if key not in node:
        keys = sorted(node.keys())
        close = difflib.get_close_matches(key, keys, n=1)
        return (f"{arg}: {where} has no key {key!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; its keys: {', '.join(keys)}. --print_config lists "
                "every key")
      node, where = node[key], f"{where}.{key}"
  return None


def _expected_type(config, message: str) -> str:
  """``"; config.X expects a T"`` for a malformed ``--config.X=V``."""
  m = re.match(r"--config\.([\w.]+)=", message)
  if not m:
    return ""
  *parents, key = m.group(1).split(".")
  node = config
  try:
    for p in parents:
      node = node[p]
    kind = node.get_type(key)
  except (KeyError, AttributeError, TypeError):
    return ""
  return (f"; config.{m.group(1)} expects a value of type "
          f"{getattr(kind, '__name__', kind)}")


def _describe(error: BaseException) -> str:
  """``error``'s message, led by its type unless it is a ``ValueError``."""
  return str(error) if isinstance(error, ValueError) else (
      f"{type(error).__name__}: {error}")


def _explain(error: BaseException, argv: list[str]) -> str:
  """One line saying which value is bad and what to do."""
  config = None
  if _config_default is not None:  # this app has a --config
    arg = _flag_value(argv, "config") or _config_default
    path = arg.split(":", 1)[0]
    if not os.path.isfile(path):
      folder = os.path.dirname(path) or "."
      known = sorted(f for f in os.listdir(folder) if f.endswith(".py")
                     and not f.startswith("_")) if os.path.isdir(folder) else []
      return (f"--config={arg}: no such config file"
              + (f"; config files in {folder}: {', '.join(known)}"
                 if known else ""))
    try:
      config = _load_config(arg)
    except Exception as e:  # pylint: disable=broad-except
      return f"--config={arg}: {_describe(_root(e))}"
    if unknown := _unknown_override(config, argv):
      return unknown
  message = str(error).strip()
  if "\n" in message:  # a re-raised error with a traceback in its message
    message = _describe(_root(error))
  # absl's prefixes: "flag --x=v: ..." -> "--x=v: ...", and "flags x=v, y=w:
  # " before a message that names the value itself.
  message = re.sub(r"^flag (--\S+?): ", r"\1: ", message)
  message = re.sub(r"^flags [^:]*: (?=--)", "", message)
  if isinstance(error, flags.UnrecognizedFlagError):
    message += "; --help lists the flags"
  return message + (_expected_type(config, message) if config else "")
