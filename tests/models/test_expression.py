"""Ψ: conv sizes, per-frame independence, identity conditioning, and PCA reconstruction vs numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkinghead_jax.models import expression as ex

SMALL = dict(audio_channels=(4, 8), audio_features=8, reference_features=8)


def test_conv_lengths_at_the_papers_50khz():
  # 2000 samples per 0.04 s chunk; Fig. 13's Conv(·, 21, 2) twice.
  assert ex.audio_conv_lengths(2000) == [990, 485]


def _model_and_inputs(make_variables, samples=80, frames=5, batch=2):
  rng = np.random.default_rng(0)
  audio = rng.normal(size=(batch, frames, 7, samples)).astype(np.float32)
  reference = rng.normal(size=(batch, 20)).astype(np.float32)
  model = ex.ExpressionLearner(**SMALL)
  variables = make_variables(model, audio, reference, train=False)
  return model, variables, audio, reference


def test_each_frame_depends_only_on_its_own_window(numpy_variables):
  model, variables, audio, reference = _model_and_inputs(numpy_variables)
  out = np.asarray(model.apply(variables, audio, reference, train=False))
  assert out.shape == (2, 5, 20)
  order = np.array([3, 0, 4, 1, 2])
  shuffled = np.asarray(model.apply(variables, audio[:, order], reference, train=False))
  np.testing.assert_allclose(shuffled, out[:, order], rtol=1e-5, atol=1e-6)
  changed = audio.copy()
  changed[:, 2] += 1.0
  moved = np.asarray(model.apply(variables, changed, reference, train=False))
  assert not np.allclose(moved[:, 2], out[:, 2])
  np.testing.assert_allclose(np.delete(moved, 2, axis=1), np.delete(out, 2, axis=1), rtol=1e-5, atol=1e-6)


def test_reference_landmarks_condition_every_frame(numpy_variables):
  model, variables, audio, reference = _model_and_inputs(numpy_variables)
  out = np.asarray(model.apply(variables, audio, reference, train=False))
  other = np.asarray(model.apply(variables, audio, reference + 1.0, train=False))
  assert np.all(np.abs(other - out).max(axis=-1) > 0)


def test_too_short_audio_is_refused():
  model = ex.ExpressionLearner(**SMALL)
  with pytest.raises(ValueError, match="too few"):
    model.init(jax.random.key(0), jnp.zeros((1, 2, 7, 40)), jnp.zeros((1, 20)), train=False)


def test_expression_to_landmarks_adds_the_identity_back():
  rng = np.random.default_rng(1)
  coeffs = rng.normal(size=(4, 20)).astype(np.float32)
  components = rng.normal(size=(20, 136)).astype(np.float32)
  mean = rng.normal(size=136).astype(np.float32)
  offset = rng.normal(size=(68, 2)).astype(np.float32)
  got = np.asarray(ex.expression_to_landmarks(coeffs, mean, components, offset))
  expected = (coeffs @ components + mean + offset.reshape(-1)).reshape(4, 68, 2)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  three_d = np.asarray(ex.expression_to_landmarks(coeffs, np.zeros(204), rng.normal(size=(20, 204))))
  assert three_d.shape == (4, 68, 3)
