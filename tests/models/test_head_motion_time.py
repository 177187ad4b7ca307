"""Φ's time features, its "extrapolation" residual base and its generated-offset dropout (ours)
against numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from head_motion_testdata import SMALL, random_audio_and_pose
from talkinghead_jax.models import head_motion as hm

OURS = dict(residual_base="extrapolation", future_time_constants=(2.0, 8.0), extrapolation_frames=3,
            extrapolation_gap=2, decoder_time_features=True)
MAX_OBSERVED, MAX_PREDICTED, SAMPLES = 16, 6, 12


def _inputs(seed=0, batch=2):
  return random_audio_and_pose(MAX_OBSERVED + MAX_PREDICTED, SAMPLES, seed, batch)


def test_time_features_equal_numpy():
  got = np.asarray(hm.time_features(5, (2.0, 8.0, 32.0)))
  k = np.arange(1, 6, dtype=np.float64)[:, None]
  np.testing.assert_allclose(got, np.exp(-k / np.array([2.0, 8.0, 32.0])), rtol=1e-6)


def test_observed_tail_takes_the_frames_before_the_gap_nearest_first():
  x = np.arange(2 * 12 * 2, dtype=np.float32).reshape(2, 12, 2)
  got = np.asarray(hm.observed_tail(jnp.asarray(x), jnp.array([12, 7]), 3, 2))
  np.testing.assert_array_equal(got[0], x[0, [9, 8, 7]])  # τ = 12: frames τ−g−1 … τ−g−3
  np.testing.assert_array_equal(got[1], x[1, [4, 3, 2]])


def test_taylor_features_recover_a_quadratics_level_velocity_and_acceleration():
  unit = 16.0
  t = -np.arange(5) / unit  # newest first
  samples = 0.5 + 2.0 * t - 3.0 * t**2
  features = hm.taylor_features(5, 2, unit)
  np.testing.assert_allclose(features @ samples, [0.5, 2.0, -3.0], rtol=1e-4, atol=1e-5)
  # Degree 1 through 2 frames: the newest sample and the difference per unit.
  np.testing.assert_allclose(hm.taylor_features(2, 1, unit) @ np.array([1.0, 0.75]), [1.0, 0.25 * unit], rtol=1e-5)
  with pytest.raises(ValueError, match="degree"):
    hm.taylor_features(3, 3, unit)


def _zero_generated_layer(variables):
  variables = jax.tree_util.tree_map(lambda x: x, variables)
  variables["params"]["decode"]["l"] = jax.tree_util.tree_map(jnp.zeros_like, variables["params"]["decode"]["l"])
  return variables


def test_extrapolation_base_with_a_zero_generated_layer_equals_numpy(numpy_variables):
  audio, pose = _inputs()
  lengths = (jnp.array([16, 13]), jnp.array([6, 4]))
  model = hm.HeadMotionLearner(**SMALL, **OURS)
  variables = numpy_variables(model, audio, pose, *lengths, max_observed=MAX_OBSERVED, train=False)
  apply = jax.jit(lambda v, p: model.apply(v, audio, p, *lengths, max_observed=MAX_OBSERVED, train=False)[0])
  zero = _zero_generated_layer(variables)
  got = np.asarray(apply(zero, pose))
  coefficients = np.asarray(variables["params"]["extrapolate"]["coefficients"])  # (I, n + 1)
  assert coefficients.shape == (2, 3)
  k = np.arange(1, MAX_PREDICTED + 1)[:, None]
  weights = np.exp(-k / np.array([2.0, 8.0])) @ coefficients  # (P, n + 1)
  for b, observed in enumerate(np.asarray(lengths[0])):
    mean = pose[b, :observed].mean(0)
    tail = pose[b, observed - 2 - np.arange(1, 4)] - mean  # frames τ−g−j, j = 1 … J
    # Level, velocity per 16 frames and half the acceleration: the quadratic through the 3 frames.
    times = -np.arange(3) / 16.0
    derivatives = np.linalg.solve(np.stack([times**0, times, times**2], axis=1), tail)
    np.testing.assert_allclose(got[b], mean + weights @ derivatives, rtol=1e-4, atol=1e-4)
  # Coefficients of zero (their initial value) leave the observed mean.
  zero["params"]["extrapolate"]["coefficients"] = jnp.zeros_like(coefficients)
  got = np.asarray(apply(zero, pose))
  for b, observed in enumerate(np.asarray(lengths[0])):
    np.testing.assert_allclose(got[b], np.broadcast_to(pose[b, :observed].mean(0), got[b].shape), rtol=1e-5,
                               atol=1e-5)
  initial = jax.eval_shape(lambda: model.init(jax.random.key(0), audio, pose, *lengths, max_observed=MAX_OBSERVED,
                                              train=False))
  assert initial["params"]["extrapolate"]["coefficients"].shape == (2, 3)
  # Moving the whole head moves the prediction with it.
  shift = np.array([0.3, -0.2, 0.1, 2.0, -1.0, 0.5], np.float32)
  np.testing.assert_allclose(np.asarray(apply(variables, pose + shift)), np.asarray(apply(variables, pose)) + shift,
                             rtol=1e-4, atol=1e-4)


def test_time_features_enter_the_generated_layer_after_the_audio_features(numpy_variables):
  """With a generated layer that is its bias alone, the output is base + φ(k)·T + b."""
  audio, pose = _inputs(seed=1)
  lengths = (jnp.array([16, 14]), jnp.array([6, 6]))
  model = hm.HeadMotionLearner(**SMALL, **OURS)
  variables = numpy_variables(model, audio, pose, *lengths, max_observed=MAX_OBSERVED, train=False)
  kernel = np.asarray(variables["params"]["decode"]["l"]["kernel"])
  features = SMALL["audio_features"] + 2
  assert kernel.shape[-1] == features * 6 + 6
  flat = np.random.default_rng(2).normal(size=features * 6 + 6).astype(np.float32)
  flat[:SMALL["audio_features"] * 6] = 0.0  # the audio features' rows
  generated = _zero_generated_layer(variables)
  generated["params"]["decode"]["l"]["bias"] = jnp.asarray(flat)
  apply = jax.jit(lambda v: model.apply(v, audio, pose, *lengths, max_observed=MAX_OBSERVED, train=False)[0])
  base = np.asarray(apply(_zero_generated_layer(variables)))
  k = np.arange(1, MAX_PREDICTED + 1)[:, None]
  times = np.exp(-k / np.array([2.0, 8.0]))
  expected = times @ flat[:features * 6].reshape(features, 6)[SMALL["audio_features"]:] + flat[features * 6:]
  np.testing.assert_allclose(np.asarray(apply(generated)) - base, np.broadcast_to(expected, base.shape),
                             rtol=1e-4, atol=1e-5)


def test_upstream_default_has_no_time_features_and_the_static_net_gets_them(numpy_variables):
  audio, pose = _inputs()
  lengths = (jnp.array([16, 16]), jnp.array([6, 6]))
  shapes = lambda model: jax.eval_shape(lambda: model.init(  # noqa: E731
      jax.random.key(0), audio, pose, *lengths, max_observed=MAX_OBSERVED, train=False))["params"]
  upstream = shapes(hm.HeadMotionLearner(**SMALL))
  assert upstream["decode"]["l"]["kernel"].shape[-1] == SMALL["audio_features"] * 6 + 6
  assert "extrapolate" not in upstream
  static = hm.HeadMotionLearner(few_shot=False, future_time_constants=(2.0, 8.0), decoder_time_features=True, **SMALL)
  assert shapes(static)["static_decode"]["kernel"].shape == (SMALL["audio_features"] + 2, 6)
  # Without decoder_time_features the time basis serves the base only.
  base_only = shapes(hm.HeadMotionLearner(**SMALL, **{**OURS, "decoder_time_features": False}))
  assert base_only["decode"]["l"]["kernel"].shape[-1] == SMALL["audio_features"] * 6 + 6
  assert base_only["extrapolate"]["coefficients"].shape == (2, 3)


def test_extrapolation_needs_time_features_and_enough_observed_frames():
  audio, pose = _inputs()
  lengths = (jnp.array([16, 16]), jnp.array([6, 6]))
  for fields in (dict(residual_base="extrapolation"), dict(decoder_time_features=True)):
    with pytest.raises(ValueError, match="future_time_constants"):
      jax.eval_shape(lambda: hm.HeadMotionLearner(**SMALL, **fields).init(  # noqa: B023
          jax.random.key(0), audio, pose, *lengths, max_observed=MAX_OBSERVED, train=False))
  # The encoder needs 13 frames; a base reading 6 frames after a gap of 10 needs 16.
  assert hm.HeadMotionLearner(**SMALL, **OURS).min_observed() == 13
  longer = hm.HeadMotionLearner(**{**SMALL, **OURS, "extrapolation_frames": 6, "extrapolation_gap": 10})
  assert longer.min_observed() == 16


def test_generated_dropout_drops_or_scales_each_examples_whole_offset(numpy_variables):
  audio, pose = _inputs(seed=3, batch=8)
  lengths = (jnp.full((8,), 16), jnp.full((8,), 6))
  dropping = hm.HeadMotionLearner(**SMALL, **OURS, generated_dropout=0.5)
  plain = hm.HeadMotionLearner(**SMALL, **OURS)  # the same parameters, no generated dropout
  variables = numpy_variables(plain, audio, pose, *lengths, max_observed=MAX_OBSERVED, train=False)

  def run(model, v, train, seed=0):
    (out, _), _ = model.apply(v, audio, pose, *lengths, max_observed=MAX_OBSERVED, train=train,
                              mutable=["batch_stats"], rngs={"dropout": jax.random.key(seed)})
    return np.asarray(out)

  # The network's other dropout is off (SMALL): in training each example's output is the base
  # (offset dropped) or the base plus 1/(1 − p) = 2 times the offset.
  base = run(plain, _zero_generated_layer(variables), True)
  offset = run(plain, variables, True) - base
  got = run(dropping, variables, True, seed=1)
  kept = []
  for b in range(8):
    assert np.abs(offset[b]).max() > 1e-3
    if np.allclose(got[b], base[b], rtol=1e-4, atol=1e-5):
      kept.append(False)
    else:
      np.testing.assert_allclose(got[b], base[b] + 2.0 * offset[b], rtol=1e-4, atol=1e-4)
      kept.append(True)
  assert 0 < sum(kept) < 8  # 8 examples at p = 0.5: all or none has probability 1/128
  # In evaluation nothing is dropped: the same as without generated dropout.
  np.testing.assert_allclose(run(dropping, variables, False, seed=2), run(plain, variables, False), rtol=1e-6)
