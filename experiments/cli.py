"""What every experiment app shares: clean errors for bad input."""

from __future__ import annotations

import functools
import sys


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
