"""A process pool for the per-clip work of `talkinghead prepare`.

`ordered_map` keeps only a bounded number of clips in flight (a data set may have a million),
hands results back in input order, and cancels what is queued when the caller stops early.
Processes are spawned, not forked: the parent may have TensorFlow or JAX threads running.
"""

from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
from typing import Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

TASKS_PER_WORKER = 4  # queued per process, so that none waits between clips


def ordered_map(function: Callable[[Item], Result], items: Iterable[Item],
                workers: int) -> Iterator[Result]:
  """function(item) for each item, in order; in this process when workers <= 1."""
  if workers <= 1:
    for item in items:
      yield function(item)
    return
  executor = concurrent.futures.ProcessPoolExecutor(
      max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
  pending: collections.deque[concurrent.futures.Future] = collections.deque()
  try:
    for item in items:
      pending.append(executor.submit(function, item))
      if len(pending) >= workers * TASKS_PER_WORKER:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()
  finally:
    executor.shutdown(wait=True, cancel_futures=True)
