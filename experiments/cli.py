"""What every experiment app shares: clean errors for bad input."""

from __future__ import annotations

import functools
import sys

from absl import flags
from ml_collections import config_flags


def friendly_errors(main):
  """Bad input (``ValueError``, a missing run or file) ends the app with the
  message alone, not a traceback; other errors keep their traceback."""
  @functools.wraps(main)
  def wrapped(argv):
    try:
      return main(argv)
    except (ValueError, FileNotFoundError) as e:
      sys.exit(f"error: {e}")
  return wrapped


def define_study_flags(config_file: str) -> None:
  """``--config``, ``--workdir`` and ``--quick`` of a study app (defined only
  when the app runs as a script, so that tests can import several apps)."""
  config_flags.DEFINE_config_file("config", config_file, "Study config.",
                                  lock_config=False)
  flags.DEFINE_string("workdir", None, "Study directory.", required=True)
  flags.DEFINE_bool("quick", False, f"The CI form ({config_file}:quick).")


def study_config(config_module):
  """The config the flags ask for: ``--quick`` means the module's quick one."""
  if flags.FLAGS.quick:
    return config_module.get_config("quick")
  return flags.FLAGS.config
