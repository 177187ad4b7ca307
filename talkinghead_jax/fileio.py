"""Atomic file writes: a reader never sees half a file, and a failed write leaves none.

Like errors.py, a foundation module that every package may import.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import uuid
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_write_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields a fresh temporary path beside `path`; write to it inside the block.

  On success the temporary file is renamed onto `path` (atomic: same folder, same file
  system); on any failure it is removed and the error propagates. The parent folder is
  created if needed.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
  try:
    yield temporary
    os.replace(temporary, path)
  except BaseException:
    temporary.unlink(missing_ok=True)
    raise


def write_npz(path: str | os.PathLike, arrays: dict[str, Any]) -> pathlib.Path:
  """Writes `arrays` as an uncompressed .npz at exactly `path`, atomically.

  Through an open stream, because `np.savez` appends ".npz" to a file name that lacks it.
  """
  path = pathlib.Path(path)
  with atomic_write_path(path) as temporary, open(temporary, "wb") as stream:
    np.savez(stream, **arrays)
  return path

