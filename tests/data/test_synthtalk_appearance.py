"""SynthTalk appearance: the texture paints each region where the head model puts it."""

import dataclasses

import numpy as np
import pytest

from talkinghead_jax.data import synthtalk_appearance as appearance
from talkinghead_jax.data import synthtalk_head as head

SIZE = 256


@pytest.fixture(scope="module")
def look_and_texture():
  look = dataclasses.replace(appearance.sample_appearance(np.random.default_rng(0)),
                             beard=0.0, freckles=0.0, bald=0.0, fringe=0.0, hairline=-0.8)
  return look, appearance.paint_texture(look, SIZE)


def _texel(texture, theta, eta, band_side=0):
  u, v = head.material_coordinates(np.asarray(theta, float), np.asarray(eta, float), band_side)
  rows = np.clip((np.asarray(v) * SIZE).astype(int), 0, SIZE - 1)
  cols = np.clip((np.asarray(u) * SIZE).astype(int), 0, SIZE - 1)
  return texture[rows, cols]


def test_texture_is_deterministic_and_in_range(look_and_texture):
  look, texture = look_and_texture
  assert texture.shape == (SIZE, SIZE, 3) and texture.dtype == np.float32
  assert texture.min() >= 0 and texture.max() <= 1
  np.testing.assert_array_equal(appearance.paint_texture(look, SIZE), texture)


def test_regions_carry_their_colours(look_and_texture):
  look, texture = look_and_texture
  cheek = _texel(texture, [-0.7, 0.7], [0.1, 0.1]).mean(0)
  np.testing.assert_allclose(cheek, look.skin, atol=0.08)
  # Lips: halfway between the outer lip line and the contact line.
  theta = np.array([-0.12, 0.0, 0.12])
  upper = _texel(texture, theta, (head.upper_lip_line(theta) + head.ETA_MOUTH) / 2)
  lower = _texel(texture, theta, (head.lower_lip_line(theta) + head.ETA_MOUTH) / 2)
  np.testing.assert_allclose(np.r_[upper, lower].mean(0), look.lip, atol=0.08)
  # Pupils are dark, sclera light, hair above the hairline has the hair colour.
  assert np.all(_texel(texture, [-head.THETA_EYE, head.THETA_EYE], [0.0, 0.0]) < 0.1)
  assert np.all(_texel(texture, [-head.THETA_EYE - 0.11, head.THETA_EYE + 0.11], [0.0, 0.0]) > 0.4)
  hair = _texel(texture, [-0.3, 0.0, 0.3], [-1.1, -1.2, -1.1]).mean(0)
  assert np.linalg.norm(hair - look.hair) < np.linalg.norm(hair - look.skin)


def test_scene_background_and_light():
  rng = np.random.default_rng(0)
  scene = appearance.sample_scene(rng, 64, np.array([0.1, 0.2, 0.9]))
  assert scene.background.shape == (64, 64, 3) and scene.background.dtype == np.float32
  assert 0 <= scene.background.min() and scene.background.max() <= 1
  assert abs(np.linalg.norm(scene.light_direction) - 1) < 1e-6
  assert scene.light_direction[2] < 0  # from the camera's side of the face
  assert np.all(scene.ambient > 0) and np.all(scene.diffuse > 0)
  # The shoulders at the bottom centre wear the clothing colour (up to shading).
  bottom = scene.background[-2, 32]
  assert np.argmax(bottom) == 2


def test_appearance_vector_names():
  look = appearance.sample_appearance(np.random.default_rng(5))
  assert look.vector().shape == (len(appearance.APPEARANCE_NAMES),)
  np.testing.assert_allclose(look.vector()[:3], look.skin, atol=1e-6)
