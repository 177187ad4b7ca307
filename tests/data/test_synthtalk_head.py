"""SynthTalk head: parametrisation round trips, the rig, landmark semantics, mesh and maps."""

import numpy as np
import pytest

from talkinghead_jax.data import synthtalk_head as head
from talkinghead_jax.geometry import landmarks as landmark_lib

LANDMARKS = head.material_points(head.LANDMARK_U, head.LANDMARK_V)
ZERO_SHAPE = np.zeros(len(head.SHAPE_NAMES))


def _landmarks(shape=ZERO_SHAPE, expression=(0, 0, 0, 0)):
  return head.surface(LANDMARKS, shape, np.asarray(expression, float)[None])[0]


def test_stable_points_match_the_geometry_package():
  assert sorted(head.STABLE_POINTS.tolist()) == sorted(landmark_lib.STABLE_27.tolist())


def test_u_and_v_maps_invert():
  theta = np.linspace(-np.pi, np.pi, 101)
  np.testing.assert_allclose(head.theta_of_u(head.u_of_theta(theta)), theta, atol=1e-12)
  eta = np.linspace(-1.5, 2.3, 101)
  np.testing.assert_allclose(head.eta_of_v_linear(head.v_of_eta_linear(eta)), eta, atol=1e-9)
  # The cap is sampled by angle and joins the linear part with the same slope (finite
  # differences on either side of the join).
  v, h = head.v_of_eta_linear(head.ETA_CAP), 1e-6
  left = (head.eta_of_v_linear(v) - head.eta_of_v_linear(v - h)) / h
  right = (head.eta_of_v_linear(v + h) - head.eta_of_v_linear(v)) / h
  assert left == pytest.approx(right, rel=1e-4)


def test_material_and_rest_coordinates_round_trip_outside_the_mouth_band():
  rng = np.random.default_rng(0)
  theta, eta = rng.uniform(-1.4, 1.4, 500), rng.uniform(-1.2, 2.0, 500)
  u, v = head.material_coordinates(theta, eta)
  back_theta, back_eta, _ = head.rest_coordinates(u, v)
  np.testing.assert_allclose(back_theta, theta, atol=1e-9)
  np.testing.assert_allclose(back_eta, eta, atol=1e-9)
  # Rest η is monotone in v (the band collapses but never folds).
  v_line = np.linspace(0, 1, 4001)
  _, eta_line, _ = head.rest_coordinates(np.full_like(v_line, 0.5), v_line)
  assert np.all(np.diff(eta_line) >= 0)


def test_mouth_band_collapses_to_the_lips_contact_line():
  theta = np.linspace(-0.25, 0.25, 11)
  band = head.mouth_band_half(theta)
  for frac in (0.0, 0.3, 1.0):
    _, eta, fraction = head.rest_coordinates(head.u_of_theta(theta), head.V_MOUTH - band + 2 * frac * band)
    np.testing.assert_allclose(eta, head.ETA_MOUTH, atol=1e-12)
    np.testing.assert_allclose(fraction, frac, atol=1e-9)


def test_landmark_rest_positions_are_where_the_table_says():
  theta, eta, _ = head.rest_coordinates(head.LANDMARK_U, head.LANDMARK_V)
  np.testing.assert_allclose(theta, head.LANDMARK_REST[:, 0], atol=1e-9)
  np.testing.assert_allclose(eta, head.LANDMARK_REST[:, 1], atol=1e-9)


def test_landmark_semantics_of_the_neutral_face():
  lmk = _landmarks()
  x, y, z = lmk.T
  assert np.all(np.diff(x[0:9]) > 0) and np.all(np.diff(x[8:17]) > 0)  # jaw left → right
  assert np.argmax(y[:17]) == 8                                       # the chin is lowest
  assert x[36] < x[39] < x[42] < x[45]                                # eye corners in order
  assert y[37] < y[41] and y[44] < y[46]                              # upper lids above lower
  assert np.argmin(z) == 30                                           # the nose tip is nearest
  assert y[19] < y[37] < y[30] < y[51] < y[57] < y[8]                 # brow, eye, nose, lips, chin
  assert x[48] < x[51] < x[54] and y[51] < y[62] <= y[66] < y[57]
  # Mirror symmetry of the template: point i mirrors to its iBUG partner.
  mirror = np.r_[16:-1:-1, 26:16:-1, 27:31, 35:30:-1, 45:41:-1, 47, 46, 39:35:-1, 41, 40,
                 54:47:-1, 59:54:-1, 64:59:-1, 67:64:-1]
  np.testing.assert_allclose(x, -x[mirror], atol=1e-9)
  np.testing.assert_allclose(y, y[mirror], atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expressions_never_move_the_stable_points(seed):
  rng = np.random.default_rng(seed)
  shape = head.sample_shape(rng)
  expression = np.vstack([np.zeros(4), rng.uniform(0, 1, (40, 4)), np.eye(4)])
  lmk = head.surface(LANDMARKS, shape, expression)
  stable = lmk[:, head.STABLE_POINTS]
  np.testing.assert_array_equal(stable, np.broadcast_to(stable[:1], stable.shape))


def test_each_expression_does_what_its_name_says():
  rest = _landmarks()
  jaw = _landmarks(expression=(1, 0, 0, 0))
  assert jaw[8, 1] - rest[8, 1] > 0.15            # chin drops
  assert jaw[66, 1] - jaw[62, 1] > 0.15           # inner lips part
  np.testing.assert_allclose(jaw[:48], np.where(np.isin(np.arange(48), range(4, 13))[:, None], jaw[:48], rest[:48]))
  spread = _landmarks(expression=(0, 1, 0, 0))
  rounding = _landmarks(expression=(0, 0, 1, 0))
  width = lambda lmk: lmk[54, 0] - lmk[48, 0]
  assert width(spread) > 1.1 * width(rest) > 1.1 * width(rounding)
  assert rounding[51, 2] < rest[51, 2]            # rounded lips push forward
  blink = _landmarks(expression=(0, 0, 0, 1))
  # Closed eyes: the upper lid comes down onto the lower lid.
  np.testing.assert_allclose(blink[[37, 38, 43, 44], 1], blink[[41, 40, 47, 46], 1], atol=1e-9)
  assert np.all(rest[[37, 38], 1] < rest[[41, 40], 1] - 0.05)


def test_shape_parameters_change_what_they_name():
  rest = _landmarks()

  def with_param(name, value):
    shape = ZERO_SHAPE.copy()
    shape[head.SHAPE_NAMES.index(name)] = value
    return _landmarks(shape)

  assert with_param("nose_length", 2)[30, 2] < rest[30, 2] - 0.05
  assert with_param("face_length", 2)[8, 1] > rest[8, 1] + 0.1
  assert with_param("mouth_width", 2)[54, 0] > rest[54, 0] + 0.03
  eye_gap = lambda lmk: lmk[42, 0] - lmk[39, 0]
  assert eye_gap(with_param("eye_spacing", 2)) > eye_gap(rest) + 0.02
  np.testing.assert_allclose(with_param("head_scale", 1), 1.05 * rest, atol=1e-12)
  draws = head.sample_shape(np.random.default_rng(0))
  assert draws.shape == (len(head.SHAPE_NAMES),) and np.all(np.abs(draws) <= head.SHAPE_CLIP)


@pytest.mark.parametrize("detail", [0.5, 1.0])
def test_render_mesh_is_a_front_facing_grid(detail):
  u, v, (rows, cols), faces = head.render_mesh_material(detail)
  assert u.shape == v.shape == (rows * cols,)
  assert faces.min() == 0 and faces.max() == rows * cols - 1
  assert 1000 < faces.shape[0] < 6000
  assert np.all(np.diff(v.reshape(rows, cols), axis=0) >= -1e-12)  # rows never cross
  # Frontal faces wind counter-clockwise on screen (negative signed area with y down).
  points = head.surface(head.material_points(u, v), ZERO_SHAPE, np.zeros((1, 4)))[0]
  corners = points[faces][..., :2]
  area2 = ((corners[:, 1, 0] - corners[:, 0, 0]) * (corners[:, 2, 1] - corners[:, 0, 1])
           - (corners[:, 2, 0] - corners[:, 0, 0]) * (corners[:, 1, 1] - corners[:, 0, 1]))
  theta, _, _ = head.rest_coordinates(u, v)
  front = np.all(np.abs(theta[faces]) < 0.6, axis=1) & (np.abs(area2) > 1e-6)
  assert front.sum() > 100 and np.all(area2[front] < 0)


def test_position_map_window_and_mask():
  u, v = head.position_map_material(32)
  uv = head.position_map_uv(u, v)
  centres = (np.arange(32) + 0.5) / 32
  np.testing.assert_allclose(uv[..., 0], np.broadcast_to(centres, (32, 32)), atol=1e-12)
  np.testing.assert_allclose(uv[..., 1], np.broadcast_to(centres[:, None], (32, 32)), atol=1e-12)
  mask = head.face_mask_material(u, v)
  assert 0.4 < mask.mean() < 0.9
  inside = head.position_map_uv(head.LANDMARK_U, head.LANDMARK_V)
  assert np.all((inside > 0) & (inside < 1))
