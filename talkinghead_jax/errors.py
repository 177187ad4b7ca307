"""Error types that carry a one-line, user-facing message.

The CLI prints `str(error)` on one line and exits with status 1; library callers can
catch the specific subclass. An error about a file always names the file first.
"""

from __future__ import annotations

import os


class TalkingHeadError(Exception):
  """Base class for errors caused by the user's input, not by a bug."""


class InputError(TalkingHeadError):
  """A file (or other input) is missing, empty, corrupt or of the wrong kind."""

  def __init__(self, path: str | os.PathLike | None, problem: str):
    self.path = None if path is None else os.fspath(path)
    self.problem = problem
    super().__init__(problem if path is None else f"{self.path}: {problem}")


class ConfigError(TalkingHeadError):
  """A config file, variant or override is invalid."""
