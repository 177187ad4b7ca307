"""The device prefetcher: global arrays sharded over `data` on 8 devices, the consumed (not read-
ahead) input state, exact resumption, errors passed on."""

import time

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import pipeline_testdata as testdata
from talkinghead_jax.data import device_prefetch, pipelines


class CountingInput:
  """A BatchIterator whose batch n holds n; it can be told to fail at a batch."""

  steps_per_epoch = 5
  element_spec = {}

  def __init__(self, fail_at=None):
    self.position, self.reads, self.fail_at = 0, 0, fail_at

  def __next__(self):
    if self.position == self.fail_at:
      raise ValueError(f"bad batch {self.position}")
    batch = {"x": np.full((8, 2), self.position, np.float32)}
    self.position += 1
    self.reads += 1
    return batch

  def get_state(self):
    return {"epoch": self.position // 5, "position": self.position % 5}

  def set_state(self, state):
    self.position = state["epoch"] * 5 + state["position"]


def _sharding():
  mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
  return NamedSharding(mesh, PartitionSpec("data"))


def test_batches_are_global_arrays_sharded_over_data():
  data = pipelines.make_input(testdata.expression_config("batch_size=8"), "expression", "train",
                              source=pipelines.ListSource(testdata.clips()), artifacts=testdata.artifacts())
  reference = pipelines.make_input(testdata.expression_config("batch_size=8"), "expression", "train",
                                   source=pipelines.ListSource(testdata.clips()), artifacts=testdata.artifacts())
  sharding = _sharding()
  with device_prefetch.DevicePrefetcher(data, device_prefetch.place_on(sharding, 8), depth=2) as batches:
    batch = next(batches)
    expected = next(reference)
    for name, value in batch.items():
      assert isinstance(value, jax.Array) and value.sharding == sharding
      assert len(value.addressable_shards) == 8 and value.addressable_shards[0].data.shape[0] == 1
      np.testing.assert_array_equal(np.asarray(value), expected[name])


def test_state_is_the_consumed_batch_not_the_read_ahead():
  source = CountingInput()
  with device_prefetch.DevicePrefetcher(source, lambda batch: batch, depth=3) as batches:
    assert batches.get_state() == {"epoch": 0, "position": 0}
    for step in range(7):
      assert next(batches)["x"][0, 0] == step
    deadline = time.monotonic() + 30
    while source.reads < 10 and time.monotonic() < deadline:  # let the thread read ahead
      time.sleep(0.01)
    assert source.reads >= 10
    assert batches.get_state() == {"epoch": 1, "position": 2}
  # Closing rewinds the wrapped input to the consumed batch; iterating on continues exactly.
  assert source.get_state() == {"epoch": 1, "position": 2}
  with device_prefetch.DevicePrefetcher(source, lambda batch: batch, depth=2) as batches:
    assert next(batches)["x"][0, 0] == 7


def test_set_state_resumes_exactly_with_the_pipeline():
  def make():
    return pipelines.make_input(testdata.expression_config(), "expression", "train",
                                source=pipelines.ListSource(testdata.clips()), artifacts=testdata.artifacts())

  with device_prefetch.DevicePrefetcher(make(), lambda batch: batch, depth=2) as batches:
    run = testdata.take(batches, 5)
  with device_prefetch.DevicePrefetcher(make(), lambda batch: batch, depth=2) as batches:
    for step in range(3):
      next(batches)
    saved = batches.get_state()
  assert saved == {"epoch": 1, "position": 1}
  with device_prefetch.DevicePrefetcher(make(), lambda batch: batch, depth=2) as batches:
    batches.set_state(saved)
    testdata.assert_batches_equal(testdata.take(batches, 2), run[3:])


def test_errors_reach_the_consumer_after_the_good_batches():
  with device_prefetch.DevicePrefetcher(CountingInput(fail_at=2), lambda batch: batch, depth=2) as batches:
    assert next(batches)["x"][0, 0] == 0 and next(batches)["x"][0, 0] == 1
    with pytest.raises(ValueError, match="bad batch 2"):
      next(batches)
    assert batches.get_state() == {"epoch": 0, "position": 2}


def test_depth_zero_reads_in_the_caller():
  source = CountingInput()
  batches = device_prefetch.DevicePrefetcher(source, lambda batch: batch, depth=0)
  next(batches)
  assert source.reads == 1 and batches.get_state() == {"epoch": 0, "position": 1}
