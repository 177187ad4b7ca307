"""Atomic file writes (a reader never sees half a file, and a failed write leaves none), and the
.npz layout of nested variable trees (one array per leaf, named by its "a/b/c" path).

Like errors.py, a foundation module that every package may import.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import uuid
from typing import Any, Iterator, Mapping

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



def flatten_tree(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """A nested dict → {"a/b/c": leaf}, the names `write_npz` stores variable trees under."""
  flat: dict[str, Any] = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      flat.update(flatten_tree(value, name + "/"))
    else:
      flat[name] = value
  return flat


def unflatten_tree(flat: Mapping[str, Any]) -> dict[str, Any]:
  """The inverse of `flatten_tree`: {"a/b/c": leaf} → a nested dict."""
  tree: dict[str, Any] = {}
  for name, value in flat.items():
    *parents, leaf = name.split("/")
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return tree


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
  """The hex digest (hashlib's `algorithm`, e.g. "sha256") of a file's bytes, read in blocks."""
  with open(path, "rb") as stream:
    return hashlib.file_digest(stream, algorithm).hexdigest()
