"""The array-file input: window contents, host sharding, determinism, resumption, errors."""

import numpy as np
import pytest

from talkinghead_jax import config as config_lib
from talkinghead_jax.errors import InputError, TalkingHeadError
from talkinghead_jax.train import arrays


@pytest.fixture
def small_file(tmp_path):
  lengths = [10, 7, 12]
  total = sum(lengths)
  frames = np.arange(total, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
  ids = np.array([100.0, 200.0, 300.0], np.float32)[:, None]
  return arrays.write_sequence_arrays(tmp_path / "small.npz", lengths, {"x": frames}, {"id": ids},
                                      noise=np.arange(50, dtype=np.float32)), lengths


def _input(path, **kwargs):
  defaults = dict(frame_keys=("x",), sequence_keys=("id",), window=4, global_batch_size=4, seed=1, stride=2)
  return arrays.ArraySequenceInput(path, **{**defaults, **kwargs})


def test_windows_are_consecutive_frames_of_one_sequence(small_file):
  path, lengths = small_file
  data = _input(path)
  # Starts every 2nd frame: 4 + 2 + 5 windows.
  assert data.num_examples == 11 and data.steps_per_epoch == 2
  offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
  for _ in range(6):
    batch = next(data)
    assert batch["x"].shape == (4, 4, 2) and batch["id"].shape == (4, 1)
    for window, sequence_id in zip(batch["x"][:, :, 0], batch["id"][:, 0]):
      sequence = int(sequence_id) // 100 - 1
      np.testing.assert_array_equal(np.diff(window), 1.0)  # consecutive frames
      start = int(window[0]) - offsets[sequence]
      assert start % 2 == 0 and start + 4 <= lengths[sequence]  # inside its own sequence


def test_an_epoch_visits_distinct_windows_and_the_order_depends_on_the_seed(small_file):
  path, _ = small_file
  first = [tuple(next(_input(path, seed=1))["x"][:, 0, 0])]
  data = _input(path, seed=1)
  starts = np.concatenate([next(data)["x"][:, 0, 0] for _ in range(data.steps_per_epoch)])
  assert len(set(starts)) == len(starts) == 8
  assert first == [tuple(next(_input(path, seed=1))["x"][:, 0, 0])]
  assert first != [tuple(next(_input(path, seed=2))["x"][:, 0, 0])]


def test_hosts_split_each_global_batch(small_file):
  path, _ = small_file
  whole = _input(path)
  hosts = [_input(path, process_index=i, process_count=2) for i in range(2)]
  for _ in range(5):
    expected = next(whole)
    parts = [next(host) for host in hosts]
    for name in expected:
      np.testing.assert_array_equal(np.concatenate([p[name] for p in parts]), expected[name])


def test_restored_state_continues_the_same_batches(small_file):
  path, _ = small_file
  data = _input(path, noise_length=30)
  for _ in range(3):
    next(data)
  state = data.get_state()
  assert state == {"epoch": 1, "position": 1}
  expected = [next(data) for _ in range(4)]
  resumed = _input(path, noise_length=30)
  resumed.set_state(state)
  for batch in expected:
    got = next(resumed)
    for name in batch:
      np.testing.assert_array_equal(got[name], batch[name])
  with pytest.raises(TalkingHeadError, match="does not fit"):
    resumed.set_state({"epoch": 0, "position": 99})


def test_noise_segments_are_contiguous_and_wrap_around(small_file):
  path, _ = small_file
  noise = next(_input(path, noise_length=70))["noise"]  # longer than the 50-sample recording
  assert noise.shape == (4, 70)
  for segment in noise:
    np.testing.assert_array_equal(segment, (segment[0] + np.arange(70)) % 50)


def test_bad_files_are_named(tmp_path, small_file):
  path, _ = small_file
  with pytest.raises(InputError, match="missing.npz: array file not found"):
    _input(tmp_path / "missing.npz")
  with pytest.raises(InputError, match=r"small.npz: missing array\(s\) \['y'\]"):
    _input(path, frame_keys=("y",))
  with pytest.raises(InputError, match="the config expects"):
    _input(path, frame_shapes={"x": (3,)})
  with pytest.raises(InputError, match="fewer than one batch"):
    _input(path, global_batch_size=16)
  (tmp_path / "junk.npz").write_text("not a zip")
  with pytest.raises(InputError, match="junk.npz: not a readable"):
    _input(tmp_path / "junk.npz")
  with pytest.raises(InputError, match="per-frame array 'x' has"):
    arrays.write_sequence_arrays(tmp_path / "w.npz", [3, 3], {"x": np.zeros((5, 2))})
  with pytest.raises(InputError, match="per-sequence array 'id'"):
    arrays.write_sequence_arrays(tmp_path / "w.npz", [3, 3], {"x": np.zeros((6, 2))}, {"id": np.zeros(3)})


def test_the_tfds_source_goes_to_the_data_pipelines_and_others_are_refused():
  config = config_lib.load("configs/head_motion.py:synthtalk_tiny")  # source "tfds", no data_dir
  with pytest.raises(TalkingHeadError, match=r"set data.data_dir"):
    arrays.stage_input(config, "head_motion", split="train", process_index=0, process_count=1,
                       frame_keys=("audio",), window=4)
  config.data.source = "hdf5"
  with pytest.raises(TalkingHeadError, match=r"data.source must be 'tfds', 'arrays' or 'synthetic'"):
    arrays.stage_input(config, "head_motion", split="train", process_index=0, process_count=1,
                       frame_keys=("audio",), window=4)
