"""Φ's pieces against numpy references, and its length masks against exact-length runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkinghead_jax.models import head_motion as hm

SMALL = dict(audio_hidden=16, audio_features=8, pose_hidden=8, pose_features=8, encoder_channels=16)


def test_generated_linear_map_equals_per_sample_numpy_loop():
  rng = np.random.default_rng(0)
  batch, frames, features, outputs = 3, 5, 7, 6
  flat = rng.normal(size=(batch, features * outputs + outputs)).astype(np.float32)
  x = rng.normal(size=(batch, frames, features)).astype(np.float32)
  weight, bias = hm.generated_linear(jnp.asarray(flat), features, outputs)
  got = np.asarray(hm.apply_generated_linear(jnp.asarray(x), weight, bias))
  for b in range(batch):
    w = flat[b, :features * outputs].reshape(features, outputs)  # upstream: view(b, 256, 6)
    expected = x[b] @ w + flat[b, features * outputs:]
    np.testing.assert_allclose(got[b], expected, rtol=1e-5, atol=1e-5)


def test_l2l_decode_applies_its_generated_layer(numpy_variables):
  rng = np.random.default_rng(1)
  code = rng.normal(size=(2, 10)).astype(np.float32)
  audio = rng.normal(size=(2, 4, 8)).astype(np.float32)
  decode = hm.L2LDecode(features=8, pose_dim=6)
  params = numpy_variables(decode, code, audio)["params"]
  got = np.asarray(decode.apply({"params": params}, code, audio))
  flat = code @ np.asarray(params["l"]["kernel"]) + np.asarray(params["l"]["bias"])
  for b in range(2):
    expected = audio[b] @ flat[b, :48].reshape(8, 6) + flat[b, 48:]
    np.testing.assert_allclose(got[b], expected, rtol=1e-5, atol=1e-5)


def test_discriminator_features_equal_numpy_on_valid_frames(numpy_variables):
  rng = np.random.default_rng(2)
  sequence = rng.normal(size=(3, 9, 6)).astype(np.float32)
  lengths = np.array([9, 5, 3])
  mask = np.arange(9)[None] < lengths[:, None]
  got = np.asarray(hm.motion_statistics(jnp.asarray(sequence), jnp.asarray(mask)))
  assert got.shape == (3, 24)
  for b, n in enumerate(lengths):
    s = sequence[b, :n]
    v = np.diff(s, axis=0)
    expected = np.concatenate([s.mean(0), s.std(0, ddof=1), v.mean(0), v.std(0, ddof=1)])
    np.testing.assert_allclose(got[b], expected, rtol=1e-5, atol=1e-5)
  # The discriminator is one linear layer on those 24 features.
  discriminator = hm.DT_Discriminator()
  params = numpy_variables(discriminator, jnp.asarray(sequence), jnp.asarray(mask))["params"]
  logits = np.asarray(discriminator.apply({"params": params}, jnp.asarray(sequence), jnp.asarray(mask)))
  expected = got @ np.asarray(params["l_0"]["kernel"])[:, 0] + np.asarray(params["l_0"]["bias"])[0]
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_take_future_slices_each_example_after_its_observed_frames():
  x = np.arange(2 * 10 * 3, dtype=np.float32).reshape(2, 10, 3)
  got = np.asarray(hm.take_future(jnp.asarray(x), jnp.array([3, 6]), 4))
  np.testing.assert_array_equal(got[0], x[0, 3:7])
  np.testing.assert_array_equal(got[1], x[1, 6:10])


def test_encoder_needs_13_observed_frames():
  # Two valid convolutions of kernel 5, stride 2: 13 → 5 → 1.
  assert hm.HeadMotionLearner().min_observed() == 13
  assert int(hm.conv_output_length(13, 5, 2)) == 5 and int(hm.conv_output_length(12, 5, 2)) == 4


# Ours: the time features and the extrapolation base (test_head_motion_time.py).
OURS = dict(residual_base="extrapolation", future_time_constants=(2.0, 8.0), extrapolation_frames=3,
            extrapolation_gap=2)


@pytest.mark.parametrize("train,variant", [(False, {}), (True, {}), (False, OURS), (True, OURS)],
                         ids=["upstream-eval", "upstream-train", "ours-eval", "ours-train"])
def test_masked_window_equals_running_on_exactly_the_valid_frames(train, variant, numpy_variables):
  """A padded window with lengths (τ, P) gives what upstream's network gives on τ + P frames."""
  rng = np.random.default_rng(3)
  batch, max_observed, max_predicted, samples = 3, 18, 8, 12
  observed, predicted = 14, 6
  audio = rng.normal(size=(batch, max_observed + max_predicted, 7, samples)).astype(np.float32)
  pose = rng.normal(size=(batch, max_observed + max_predicted, 6)).astype(np.float32)
  model = hm.HeadMotionLearner(dropout=0.0, **SMALL, **variant)
  lengths = (jnp.full((batch,), observed), jnp.full((batch,), predicted))
  # (numpy_variables also gives non-trivial running statistics, so that eval mode tests them.)
  variables = numpy_variables(model, audio, pose, *lengths, max_observed=max_observed, train=False)

  def run(a, p, max_obs):
    if train:
      apply = jax.jit(lambda v, a, p: model.apply(v, a, p, *lengths, max_observed=max_obs, train=True,
                                                  mutable=["batch_stats"]))
      (out, mask), updates = apply(variables, a, p)
      return np.asarray(out), np.asarray(mask), updates
    apply = jax.jit(lambda v, a, p: model.apply(v, a, p, *lengths, max_observed=max_obs, train=False))
    out, mask = apply(variables, a, p)
    return np.asarray(out), np.asarray(mask), None

  padded, mask, padded_stats = run(audio, pose, max_observed)
  exact, exact_mask, exact_stats = run(audio[:, :observed + predicted], pose[:, :observed + predicted], observed)
  assert mask.shape == (batch, max_predicted) and mask[:, :predicted].all() and not mask[:, predicted:].any()
  assert exact.shape == (batch, predicted) + (6,) and exact_mask.all()
  np.testing.assert_allclose(padded[:, :predicted], exact, rtol=2e-4, atol=2e-5)
  if train:
    for a, b in zip(jax.tree.leaves(padded_stats), jax.tree.leaves(exact_stats)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-6)
  # And the padding's content does not matter.
  noisy_audio = audio.copy()
  noisy_audio[:, observed + predicted:] = 100.0
  noisy_pose = pose.copy()
  noisy_pose[:, observed:] = -50.0
  again, _, _ = run(noisy_audio, noisy_pose, max_observed)
  np.testing.assert_allclose(again[:, :predicted], padded[:, :predicted], rtol=2e-4, atol=2e-5)


def test_audio_encoder_flattens_in_torch_channel_order(numpy_variables):
  """SingleEmb's temporal conv sees (channel, height, width)-ordered features, like upstream's view()."""
  rng = np.random.default_rng(4)
  audio = rng.normal(size=(1, 3, 7, 10)).astype(np.float32)
  encoder = hm.SingleEmb(hidden=4, features=4, dropout=0.0)
  mask = jnp.ones((1, 3), bool)
  variables = numpy_variables(encoder, audio, mask, False)
  _, state = encoder.apply(variables, audio, mask, False, capture_intermediates=True,
                           mutable=["intermediates"])
  conv_out = np.asarray(state["intermediates"]["conv_2"]["__call__"][0])  # (3, 3, 6, 16) NHWC
  flat = conv_out.transpose(0, 3, 1, 2).reshape(1, 3, -1)  # torch's view(b, t, -1)
  kernel = np.asarray(variables["params"]["audio_l_0"]["kernel"])  # (3, 288, 4)
  # The centre frame's first temporal-conv output, by hand.
  expected = sum(flat[0, t] @ kernel[t] for t in range(3)) + np.asarray(variables["params"]["audio_l_0"]["bias"])
  _, state = encoder.apply(variables, audio, mask, False, capture_intermediates=True, mutable=["intermediates"])
  got = np.asarray(state["intermediates"]["audio_l_0"]["__call__"][0])[0, 1]
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_observed_mean_residual_predicts_around_the_observed_mean(numpy_variables):
  rng = np.random.default_rng(5)
  batch, max_observed, max_predicted, samples = 2, 16, 5, 12
  lengths = (jnp.array([16, 13]), jnp.array([5, 5]))
  audio = rng.normal(size=(batch, max_observed + max_predicted, 7, samples)).astype(np.float32)
  pose = rng.normal(size=(batch, max_observed + max_predicted, 6)).astype(np.float32)
  model = hm.HeadMotionLearner(dropout=0.0, residual_base="observed_mean", **SMALL)
  variables = numpy_variables(model, audio, pose, *lengths, max_observed=max_observed, train=False)
  apply = jax.jit(lambda v, p: model.apply(v, audio, p, *lengths, max_observed=max_observed, train=False)[0])
  # A generated layer of zeros leaves the mean of each example's own observed frames.
  zero = jax.tree_util.tree_map(lambda x: x, variables)
  zero["params"]["decode"]["l"] = jax.tree_util.tree_map(jnp.zeros_like, zero["params"]["decode"]["l"])
  got = np.asarray(apply(zero, pose))
  for b, observed in enumerate(np.asarray(lengths[0])):
    np.testing.assert_allclose(got[b], np.broadcast_to(pose[b, :observed].mean(0), (max_predicted, 6)),
                               rtol=1e-5, atol=1e-5)
  # The encoder sees motion around the mean: moving the whole head moves the prediction with it.
  shift = np.array([0.3, -0.2, 0.1, 2.0, -1.0, 0.5], np.float32)
  np.testing.assert_allclose(np.asarray(apply(variables, pose + shift)), np.asarray(apply(variables, pose)) + shift,
                             rtol=1e-4, atol=1e-4)
  # Upstream's form has no such base.
  with pytest.raises(ValueError, match="residual_base"):
    hm.HeadMotionLearner(residual_base="last", **SMALL).init(
        jax.random.key(0), audio, pose, *lengths, max_observed=max_observed, train=False)
