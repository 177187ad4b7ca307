"""Φ's "not few-shot" ablation: a static linear decoder on the future audio features."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from head_motion_testdata import SMALL, random_audio_and_pose
from talkinghead_jax import config as config_lib
from talkinghead_jax.models import head_motion as hm
from talkinghead_jax.train import tasks

REPO = pathlib.Path(__file__).resolve().parents[2]
OBSERVED, PREDICTED, SAMPLES = 14, 5, 12


def _inputs(seed=0, batch=3):
  audio, pose = random_audio_and_pose(OBSERVED + PREDICTED, SAMPLES, seed, batch)
  return jnp.asarray(audio), jnp.asarray(pose), jnp.full((batch,), OBSERVED), jnp.full((batch,), PREDICTED)


def _leaf_names(tree) -> list[str]:
  return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)]


def test_static_variant_has_no_dynamic_weights_and_is_a_linear_map_of_the_audio_features(numpy_variables):
  audio, pose, observed, predicted = _inputs()
  model = hm.HeadMotionLearner(few_shot=False, **SMALL)
  variables = numpy_variables(model, audio, pose, observed, predicted, max_observed=OBSERVED, train=False)
  names = _leaf_names(variables["params"])
  assert not any("rt_encode" in name or "'decode'" in name for name in names), names
  assert np.asarray(variables["params"]["static_decode"]["kernel"]).shape == (SMALL["audio_features"], 6)
  few_shot = hm.HeadMotionLearner(**SMALL)
  few_shot_names = _leaf_names(jax.eval_shape(lambda: few_shot.init(
      jax.random.key(0), audio, pose, observed, predicted, max_observed=OBSERVED, train=False))["params"])
  assert any("rt_encode" in name for name in few_shot_names)
  assert not any("static_decode" in name for name in few_shot_names)

  got, mask = model.apply(variables, audio, pose, observed, predicted, max_observed=OBSERVED, train=False)
  assert got.shape == (3, PREDICTED, 6) and bool(jnp.all(mask))
  # Reference: the audio encoder alone, then x·W + b on the future frames, in numpy.
  encoder = hm.SingleEmb(hidden=SMALL["audio_hidden"], features=SMALL["audio_features"], dropout=0.0)
  features = np.asarray(encoder.apply(
      {"params": variables["params"]["audio_encode"], "batch_stats": variables["batch_stats"]["audio_encode"]},
      audio, jnp.ones(audio.shape[:2], bool), False))
  kernel = np.asarray(variables["params"]["static_decode"]["kernel"])
  bias = np.asarray(variables["params"]["static_decode"]["bias"])
  expected = features[:, OBSERVED:] @ kernel + bias
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-5)

  # No reference clip: the observed poses do not matter.
  moved, _ = model.apply(variables, audio, pose + 5.0, observed, predicted, max_observed=OBSERVED, train=False)
  np.testing.assert_array_equal(np.asarray(moved), np.asarray(got))


def test_static_variant_trains_a_step(numpy_variables):
  audio, pose, observed, predicted = _inputs(seed=1, batch=4)
  model = hm.HeadMotionLearner(few_shot=False, **SMALL)
  variables = numpy_variables(model, audio, pose, observed, predicted, max_observed=OBSERVED, train=False)
  target = pose[:, OBSERVED:]

  def loss(params):
    (out, _), updates = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, audio, pose,
                                    observed, predicted, max_observed=OBSERVED, train=True, mutable=["batch_stats"])
    return jnp.mean(jnp.square(out - target)), updates

  (before, updates), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
  assert set(updates["batch_stats"]) == {"audio_encode"}
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert float(jnp.abs(grads["static_decode"]["kernel"]).max()) > 0
  optimizer = optax.sgd(0.05)
  step, _ = optimizer.update(grads, optimizer.init(variables["params"]))
  after, _ = jax.jit(loss)(optax.apply_updates(variables["params"], step))
  assert float(after) < float(before)


def test_config_variant_builds_the_static_model():
  static = config_lib.load(str(REPO / "configs/head_motion.py:synthtalk_tiny_static"))
  default = config_lib.load(str(REPO / "configs/head_motion.py:synthtalk_tiny"))
  assert static.model.few_shot is False and default.model.few_shot is True
  assert tasks.get_task(static).model.few_shot is False
  assert tasks.get_task(default).model.few_shot is True
  # The only difference between the two variants is the switch.
  static.model.few_shot = True
  assert static.to_json() == default.to_json()
