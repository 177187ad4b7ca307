"""Φ's pipeline: batch schema, smoothed windows and normalised smoothed poses against the
whole-clip numpy computation, pose statistics from the train split."""

import numpy as np
import pytest

import pipeline_testdata as testdata
from talkinghead_jax.audio import frame_windows, smooth_windows
from talkinghead_jax.data import input_common as common
from talkinghead_jax.data import input_head_motion, pipelines, schema
from talkinghead_jax.errors import ConfigError, TalkingHeadError


def _input(*overrides, **options):
  return pipelines.make_input(testdata.head_motion_config(*overrides), "head_motion", "train",
                              source=pipelines.ListSource(testdata.clips()), artifacts=testdata.artifacts(),
                              **options)


def test_batches_follow_the_schema():
  data = _input()
  batch = next(data)
  expected = schema.batch_shapes("head_motion", 4, W=16 + 8, C=7, S_audio=100)
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == expected
  assert {k: (s.shape, s.dtype) for k, s in data.element_spec.items()} == expected


@pytest.mark.parametrize("align", ["centered", "upstream"])
def test_windows_and_poses_against_the_whole_clip(align):
  mean, std = (0.0, 0.1, 0.0, 20.0, 20.0, 0.0), (0.1, 0.2, 0.3, 4.0, 5.0, 6.0)
  config = testdata.head_motion_config(f"data.pose_mean={mean}", f"data.pose_std={std}")
  config.data.smoothing_align = align
  sampler = pipelines.make_sampler(config, "head_motion", "train", testdata.artifacts())
  for index in (0, 5):
    clip = testdata.clips()[index]
    sample = sampler.sample(clip, common.sample_rng(0, 0, index, sampler.salt))
    start = int(common.sample_rng(0, 0, index, sampler.salt).integers(0, testdata.FRAMES - 24 + 1))
    audio = clip["audio_2500"].astype(np.float32) / 32767.0
    windows = smooth_windows(frame_windows(audio, 2500, num_frames=testdata.FRAMES), taps=21, align=align)
    np.testing.assert_allclose(sample["audio"], windows[start:start + 24], rtol=1e-5, atol=1e-7)
    poses = smooth_windows((clip["pose"] - np.float32(mean)) / np.float32(std), taps=11, align=align)
    np.testing.assert_allclose(sample["pose"], poses[start:start + 24], rtol=1e-5, atol=1e-6)


def test_empty_statistics_are_computed_from_the_train_split():
  data = _input()
  poses = np.concatenate([clip["pose"] for clip in testdata.clips()])
  np.testing.assert_allclose(data.sampler.pose_mean, poses.mean(axis=0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(data.sampler.pose_std, poses.std(axis=0), rtol=1e-5)
  vox = testdata.head_motion_config()
  vox.data.pose_mean, vox.data.pose_std = input_head_motion.VOX_POSE_MEAN, input_head_motion.VOX_POSE_STD
  mean, std = pipelines.head_motion_pose_stats(vox, None)
  np.testing.assert_allclose(mean, input_head_motion.VOX_POSE_MEAN, rtol=1e-6)
  np.testing.assert_allclose(std, input_head_motion.VOX_POSE_STD, rtol=1e-6)
  with pytest.raises(ConfigError, match="6 values"):
    vox.data.pose_mean = (1.0, 2.0)
    pipelines.head_motion_pose_stats(vox, None)


def test_a_split_without_long_enough_clips_is_a_clear_error():
  data = _input("data.observed_frames=(13, 40)")
  with pytest.raises(TalkingHeadError, match="48 frames"):
    next(data)
