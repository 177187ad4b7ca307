"""Fixed-shape batches for jitted per-frame metrics.

Full batches have `batch_size` frames; the last one is zero-padded up to the next power of two
(at most `batch_size`), so a set of videos of any lengths compiles each metric only a few times.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


def padded_size(count: int, batch_size: int) -> int:
  size = 1
  while size < count:
    size *= 2
  return min(size, batch_size)


def batches(*arrays: np.ndarray, batch_size: int) -> Iterator[tuple[int, tuple[np.ndarray, ...]]]:
  """Yields (valid, padded chunks) over the leading axis of equally long arrays."""
  if batch_size < 1:
    raise ValueError("batch_size must be >= 1")
  length = len(arrays[0])
  for start in range(0, length, batch_size):
    chunks = tuple(np.asarray(a[start:start + batch_size]) for a in arrays)
    valid = len(chunks[0])
    size = padded_size(valid, batch_size)
    if size > valid:
      chunks = tuple(
          np.concatenate([c, np.zeros((size - valid, *c.shape[1:]), c.dtype)]) for c in chunks
      )
    yield valid, chunks


def map_batched(fn, *arrays: np.ndarray, batch_size: int) -> np.ndarray:
  """Concatenates fn(*chunks)[:valid] over all batches (fn returns per-frame values)."""
  outputs = [np.asarray(fn(*chunks))[:valid]
             for valid, chunks in batches(*arrays, batch_size=batch_size)]
  if not outputs:
    raise ValueError("no frames")
  return np.concatenate(outputs)
