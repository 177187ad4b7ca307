"""Ψ's pipeline: batch schema, audio windows and PCA targets against numpy, babble and file noise,
resampling from a stored rate."""

import numpy as np
import pytest
import soundfile
import tensorflow as tf

import pipeline_testdata as testdata
from talkinghead_jax.audio import frame_windows, resample
from talkinghead_jax.data import input_common as common
from talkinghead_jax.data import input_expression, pipelines, schema
from talkinghead_jax.models.expression import expression_to_landmarks


def _samples(sampler, clip_indices, noise_indices=None):
  """stage_samples on a tf.data.Dataset of decoded clips (from_generator), seeds (0, 0, i, salt)."""
  clips = testdata.clips()
  keys = sampler.input_features

  def generate():
    for i, index in enumerate(clip_indices):
      element = {"clip": {k: clips[index][k] for k in keys}, "seed": np.array([0, 0, i, sampler.salt], np.int64)}
      if sampler.noise_features:
        element["noise"] = {k: clips[noise_indices[i]][k] for k in sampler.noise_features}
      yield element

  source = pipelines.ListSource(clips)
  signature = {"clip": {k: source.spec(k) for k in keys}, "seed": tf.TensorSpec((4,), tf.int64)}
  if sampler.noise_features:
    signature["noise"] = {k: source.spec(k) for k in sampler.noise_features}
  dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
  return list(pipelines.stage_samples(dataset, sampler).as_numpy_iterator())


def test_batches_follow_the_schema():
  data = pipelines.make_input(testdata.expression_config(), "expression", "train",
                              source=pipelines.ListSource(testdata.clips()), artifacts=testdata.artifacts())
  batch = next(data)
  expected = schema.batch_shapes("expression", 4, optional={"noise": True}, L=6, C=7, S_audio=100, P=20,
                                 N=(6 + 6) * 100)
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == expected
  assert {k: (s.shape, s.dtype) for k, s in data.element_spec.items()} == expected
  quiet = pipelines.make_input(testdata.expression_config("augment.noise_probability=0"), "expression", "train",
                               source=pipelines.ListSource(testdata.clips()), artifacts=testdata.artifacts())
  assert "noise" not in next(quiet)


def test_windows_and_targets_against_numpy():
  config = testdata.expression_config()
  sampler = input_expression.ExpressionSampler(config, testdata.artifacts())
  artifacts = testdata.artifacts()
  samples = _samples(sampler, [0, 3, 5], noise_indices=[1, 1, 2])
  for i, (index, sample) in enumerate(zip([0, 3, 5], samples)):
    clip = testdata.clips()[index]
    rng = common.sample_rng(0, 0, i, sampler.salt)
    start = int(rng.integers(0, testdata.FRAMES - 6 + 1))
    audio = clip["audio_2500"].astype(np.float32) / 32767.0
    np.testing.assert_array_equal(sample["audio"],
                                  frame_windows(audio, 2500, num_frames=testdata.FRAMES)[start:start + 6])
    front = clip["front"][:, :, :2]
    rate = np.array([np.mean([np.linalg.norm(f[a] - f[b]) for a, b in ((61, 67), (62, 66), (63, 65))])
                     / np.linalg.norm(f[54] - f[48]) for f in front])
    closed = int(np.argmin(rate))
    offset = front[closed] - artifacts.pca.mean_.reshape(68, 2)
    np.testing.assert_allclose(sample["reference_pca"], artifacts.pca.transform(front[closed]), atol=1e-5)
    np.testing.assert_allclose(sample["expression_pca"], artifacts.pca.transform(front[start:start + 6] - offset),
                               atol=1e-4)
    # With the identity offset back, the coefficients give the frontal landmarks (the PCA spans them).
    rebuilt = expression_to_landmarks(sample["expression_pca"], artifacts.pca.mean_, artifacts.pca.components_,
                                      offset)
    np.testing.assert_allclose(rebuilt, front[start:start + 6], atol=2e-3)


def test_babble_noise_is_a_piece_of_the_other_clips_audio():
  sampler = input_expression.ExpressionSampler(testdata.expression_config(), testdata.artifacts())
  (sample,) = _samples(sampler, [0], noise_indices=[4])
  other = testdata.clips()[4]["audio_2500"].astype(np.float32) / 32767.0
  start = int(np.flatnonzero(np.isclose(other, sample["noise"][0]))[0])
  np.testing.assert_array_equal(sample["noise"], np.take(other, np.arange(start, start + 1200), mode="wrap"))
  # In the pipeline, every noise segment comes from a clip other than the window's own.
  data = pipelines.make_input(testdata.expression_config(), "expression", "train",
                              source=pipelines.ListSource(testdata.clips()), artifacts=testdata.artifacts(),
                              with_clip_index=True)
  batch = next(data)
  audio = {i: c["audio_2500"].astype(np.float32) / 32767.0 for i, c in enumerate(testdata.clips())}
  for own, noise in zip(batch[pipelines.CLIP_INDEX], batch["noise"]):
    sources = [i for i, a in audio.items() if np.isin(noise[:50], a).all()]
    assert sources and own not in sources


def test_noise_from_a_folder_of_recordings(tmp_path):
  tone = (0.3 * np.sin(np.arange(3000) * 0.05)).astype(np.float32)
  soundfile.write(tmp_path / "hum.wav", tone, 2500)
  config = testdata.expression_config(f"data.noise_dir={tmp_path}")
  sampler = input_expression.ExpressionSampler(config, testdata.artifacts())
  assert sampler.noise_features == ()
  (sample,) = _samples(sampler, [2])
  start = int(np.argmin(np.abs(tone - sample["noise"][0]) + np.abs(np.roll(tone, -1) - sample["noise"][1])))
  np.testing.assert_allclose(sample["noise"], np.take(tone, np.arange(start, start + 1200), mode="wrap"), atol=1e-4)


def test_an_unstored_rate_is_resampled_from_the_highest_stored_rate():
  config = testdata.expression_config("data.sample_rate=2000")
  sampler = input_expression.ExpressionSampler(config, testdata.artifacts())
  assert (sampler.audio_feature, sampler.stored_rate) == ("audio_4000", 4000)
  (sample,) = _samples(sampler, [1], noise_indices=[0])
  rng = common.sample_rng(0, 0, 0, sampler.salt)
  start = int(rng.integers(0, testdata.FRAMES - 6 + 1))
  audio = resample(testdata.clips()[1]["audio_4000"].astype(np.float32) / 32767.0, 4000, 2000)
  expected = frame_windows(audio, 2000, num_frames=testdata.FRAMES)[start:start + 6]
  np.testing.assert_array_equal(sample["audio"], expected)


def test_closed_mouth_frame_is_the_least_open():
  clip = testdata.clips()[0]
  front = clip["front"]
  assert input_expression.mouth_open_rate(front).shape == (testdata.FRAMES,)
  closed = input_expression.closed_mouth_frame(front)
  assert input_expression.mouth_open_rate(front)[closed] == pytest.approx(input_expression.mouth_open_rate(front).min())
