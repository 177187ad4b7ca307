"""Batches put on the devices ahead of the step that needs them, as global arrays.

`DevicePrefetcher(iterator, place, depth)` wraps a `BatchIterator` (train/task.py): a
background thread takes this host's batches from it and `place`s them (e.g. with
`jax.make_array_from_process_local_data`: `place_on(sharding, global_batch_size)`), keeping
`depth` of them ready, so reading, decoding and the host-to-device copy overlap the step.

The thread reads ahead, so the wrapped iterator's own state is ahead of training. The
prefetcher records the iterator's state right after each batch it reads and answers
`get_state()` with the state after the last batch it *handed out*: a checkpoint saved after
a step holds exactly the input position that resumes with the next unseen batch.
`set_state` stops the thread, drops what it read ahead and restarts from the given state.

No TensorFlow here (the accelerator machines have none); only jax and the standard library.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Mapping

import jax
import numpy as np

_STOP_POLL_S = 0.1


def place_on(sharding: jax.sharding.Sharding, global_batch_size: int) -> Callable[[Mapping[str, np.ndarray]], dict]:
  """`place` for a batch split over `sharding`'s leading axis: each host gives its own rows."""

  def place(local_batch):
    return {name: jax.make_array_from_process_local_data(sharding, value, (global_batch_size, *value.shape[1:]))
            for name, value in local_batch.items()}

  return place


class _Failure:
  def __init__(self, error: BaseException):
    self.error = error


class DevicePrefetcher:
  """A `BatchIterator` of placed (global) batches, `depth` ahead (see the module docstring)."""

  def __init__(self, iterator, place: Callable[[Mapping[str, np.ndarray]], Any], depth: int = 2):
    self.iterator = iterator
    self.place = place
    self.depth = max(int(depth), 0)
    self._state = dict(iterator.get_state())
    self._queue: queue.Queue | None = None
    self._stop: threading.Event | None = None
    self._thread: threading.Thread | None = None

  @property
  def steps_per_epoch(self) -> int:
    return self.iterator.steps_per_epoch

  @property
  def element_spec(self):
    return self.iterator.element_spec

  def __iter__(self):
    return self

  def _read_one(self):
    batch = next(self.iterator)
    return self.place(batch), dict(self.iterator.get_state())

  def _run(self, out: queue.Queue, stop: threading.Event) -> None:
    while not stop.is_set():
      try:
        item = self._read_one()
      except BaseException as error:  # noqa: BLE001 (handed to the consumer, which re-raises)
        item = _Failure(error)
      while not stop.is_set():
        try:
          out.put(item, timeout=_STOP_POLL_S)
          break
        except queue.Full:
          continue
      if isinstance(item, _Failure):
        return

  def _start(self) -> None:
    self._queue = queue.Queue(maxsize=self.depth)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, args=(self._queue, self._stop), name="device-prefetch",
                                    daemon=True)
    self._thread.start()

  def __next__(self):
    if self.depth == 0:
      batch, self._state = self._read_one()
      return batch
    if self._thread is None:
      self._start()
    item = self._queue.get()
    if isinstance(item, _Failure):
      self.close()
      raise item.error
    batch, self._state = item
    return batch

  def get_state(self) -> dict[str, Any]:
    """The wrapped iterator's state after the last batch this prefetcher handed out."""
    return dict(self._state)

  def set_state(self, state: Mapping[str, Any]) -> None:
    self.close()
    self.iterator.set_state(state)
    self._state = dict(self.iterator.get_state())

  def close(self) -> None:
    """Stops the reading thread, drops the batches it read ahead and rewinds the wrapped
    iterator to the last batch handed out (so iterating on continues exactly)."""
    if self._thread is None:
      return
    self._stop.set()
    while self._thread.is_alive():
      try:
        self._queue.get(timeout=_STOP_POLL_S)
      except queue.Empty:
        pass
      self._thread.join(timeout=_STOP_POLL_S)
    self._thread = self._queue = self._stop = None
    if dict(self.iterator.get_state()) != self._state:
      self.iterator.set_state(self._state)

  def __enter__(self):
    return self

  def __exit__(self, *exc) -> bool:
    self.close()
    return False
