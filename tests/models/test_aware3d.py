"""The 3D-aware module: known answers on a flat face, Eq. 1 moves, gradients, landmark images,
and upstream's crop_ref boxes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkinghead_jax.geometry import landmarks as landmarks_lib
from talkinghead_jax.geometry import rigid
from talkinghead_jax.models import aware3d

SIZE, GRID = 32, 16  # image side; a coarse 16×16 position map (450 triangles)
ROWS, COLS = np.mgrid[0:SIZE, 0:SIZE] + 0.5  # pixel centres


def _flat_position_map() -> np.ndarray:
  """Texel (i, j) at the pixel under its UV centre, z = 0: the 'identity' unprojection."""
  i, j = np.mgrid[0:GRID, 0:GRID]
  scale = SIZE / GRID
  return np.stack([(j + 0.5) * scale, (i + 0.5) * scale, np.zeros(i.shape)], -1).astype(np.float32)


def _face_mask() -> np.ndarray:
  mask = np.zeros((GRID, GRID), bool)
  mask[2:14, 3:13] = True  # vertices at x ∈ [7, 25], y ∈ [5, 27] px
  return mask


def _affine_colors(x, y):
  """An image that is affine in the pixel position: bilinear sampling and barycentric
  interpolation reproduce it exactly, so the rendered face must equal it."""
  return np.stack([x / SIZE * 2 - 1, y / SIZE * 1.5 - 0.8, 0.3 * (x - y) / SIZE], -1).astype(np.float32)


def _inner(x, y, margin=0.0):
  return (x > 7 + margin) & (x < 25 - margin) & (y > 5 + margin) & (y < 27 - margin)


@functools.lru_cache(maxsize=None)
def _renderer(mode: str):
  module = aware3d.Aware3D(SIZE, mode=mode)
  return module, jax.jit(module.__call__)


FRONT = np.random.default_rng(0).uniform(4, 28, (1, 68, 3)).astype(np.float32)


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_same_pose_reproduces_the_key_frame_inside_the_mask(mode):
  _, render = _renderer(mode)
  key = _affine_colors(COLS, ROWS)[None]
  pose = np.array([[0.1, -0.2, 0.05, 1.0, 2.0, 3.0]], np.float32)  # key pose = target pose, not identity
  out = render(_flat_position_map()[None], _face_mask(), key, pose, pose, FRONT)
  image, coverage = np.asarray(out.image[0]), np.asarray(out.mask[0])
  inner = _inner(COLS, ROWS)
  np.testing.assert_allclose(image[inner], key[0][inner], atol=1e-4)
  outside = ~_inner(COLS, ROWS, margin=-2)  # beyond the mesh and the soft blur
  assert np.all(image[outside] == -1.0) and np.all(coverage[outside] == 0.0)
  if mode == "hard":
    assert np.all(coverage[inner] == 1.0) and np.all(image[~_inner(COLS, ROWS, margin=-0.5)] == -1.0)
  else:
    # SoftRas' alpha dips to 0.75 where a pixel centre sits on an edge shared by two faces.
    assert coverage[inner].min() >= 0.75 - 1e-6


def test_repose_moves_the_face_as_equation_1_says():
  """Key pose → target pose by a rotation about the view axis plus a shift: pixel p of the
  render shows the key frame at q = R_keyᵀ(R_t·p + t_t − t_key)."""
  _, render = _renderer("hard")
  key = _affine_colors(COLS, ROWS)[None]
  key_pose = np.array([[0.0, 0.0, 0.1, 2.0, -1.0, 0.0]], np.float32)
  target_pose = np.array([[0.0, 0.0, -0.25, -1.5, 3.0, 0.0]], np.float32)
  out = render(_flat_position_map()[None], _face_mask(), key, key_pose, target_pose, FRONT)
  pixels = np.stack([COLS, ROWS, np.zeros_like(COLS)], -1).reshape(-1, 3)
  source = rigid.repose(pixels, target_pose[0], key_pose[0]).reshape(SIZE, SIZE, 3)
  inside = _inner(source[..., 0], source[..., 1], margin=0.05)
  assert inside.sum() > 200
  expected = _affine_colors(source[..., 0], source[..., 1])
  np.testing.assert_allclose(np.asarray(out.image[0])[inside], expected[inside], atol=1e-4)
  # And nothing is drawn where the key frame's face does not land.
  drawn = np.asarray(out.mask[0]) > 0
  assert not np.any(drawn & ~_inner(source[..., 0], source[..., 1], margin=-0.05))


def test_several_targets_per_key_frame_and_landmark_images():
  _, render = _renderer("hard")
  rng = np.random.default_rng(3)
  key = rng.uniform(-1, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
  key_pose = rng.normal(0, 0.05, (2, 6)).astype(np.float32)
  targets = rng.normal(0, 0.1, (2, 3, 6)).astype(np.float32)
  front = rng.uniform(4, 28, (2, 68, 3)).astype(np.float32)
  maps = np.broadcast_to(_flat_position_map(), (2, GRID, GRID, 3))
  float_masks = np.broadcast_to(_face_mask()[None, ..., None], (2, GRID, GRID, 1)).astype(np.float32)
  out = render(maps, float_masks, key, key_pose, targets, front)  # the input pipeline's mask layout
  assert out.image.shape == (2, 3, SIZE, SIZE, 3) and out.mask.shape == (2, 3, SIZE, SIZE)
  assert out.landmark_image.shape == (2, 3, SIZE, SIZE, 1)
  # The landmarks are the key frame's frontal ones seen at each target pose (upstream's reverse_rt) …
  expected_points = rigid.unfrontalize(front[:, None], targets)
  np.testing.assert_allclose(np.asarray(out.landmarks), expected_points, atol=1e-3)
  # … and the image is exactly geometry.landmarks' drawing of them.
  drawn = landmarks_lib.draw_landmark_images(np.asarray(out.landmarks).reshape(6, 68, 3), SIZE)
  np.testing.assert_array_equal(np.asarray(out.landmark_image)[..., 0], drawn.reshape(2, 3, SIZE, SIZE))
  assert drawn.sum() > 0
  # Each (key, target) render equals rendering that pair alone.
  single = render(maps[1:], _face_mask(), key[1:], key_pose[1:], targets[1:, 2], front[1:])
  np.testing.assert_allclose(np.asarray(single.image[0]), np.asarray(out.image[1, 2]), atol=1e-6)


def test_soft_render_gradient_matches_finite_differences():
  module, _ = _renderer("soft")
  rng = np.random.default_rng(1)
  i, j = np.mgrid[0:GRID, 0:GRID]
  # A bumpy, slightly jittered face, turned between key and target pose.
  position_map = (_flat_position_map() + rng.normal(0, 0.2, (GRID, GRID, 3)) +
                  np.stack([0 * i, 0 * i, 3 * np.sin(j / 3.0)], -1)).astype(np.float32)[None]
  key = np.stack([np.sin(COLS / 4), np.cos(ROWS / 5), np.sin((COLS + ROWS) / 6)], -1).astype(np.float32)[None]
  key_pose = np.array([[0.05, -0.1, 0.02, 0.5, -0.3, 0.0]], np.float32)
  target_pose = np.array([[0.0, 0.1, -0.05, -0.5, 0.4, 1.0]], np.float32)
  # Weights on a window around texel (7, 6) only: the scalar stays small, so float32
  # rounding does not swamp the central differences.
  weights = rng.normal(size=(1, SIZE, SIZE, 3)).astype(np.float32)
  weights *= ((np.abs(COLS - 13) < 7) & (np.abs(ROWS - 15) < 7))[..., None]

  def scalar(position_map):
    out = module(position_map, _face_mask(), key, key_pose, target_pose, FRONT)
    return jnp.sum(out.image * weights)

  value_and_grad = jax.jit(jax.value_and_grad(scalar))  # one program for the gradient and the values
  grad = np.asarray(value_and_grad(jnp.asarray(position_map))[1])
  assert np.all(np.isfinite(grad))
  assert np.all(grad[0, ~_face_mask()] == 0)  # texels outside the mask are not in the mesh
  value = lambda p: value_and_grad(p)[0]
  eps = 1e-2
  for texel in [(7, 6, 0), (7, 6, 1), (7, 6, 2), (8, 5, 0)]:
    step = np.zeros_like(position_map)
    step[(0,) + texel] = eps
    numeric = (float(value(position_map + step)) - float(value(position_map - step))) / (2 * eps)
    assert abs(grad[(0,) + texel]) > 1e-3, texel  # gradients do reach the position map
    np.testing.assert_allclose(grad[(0,) + texel], numeric, rtol=0.03, atol=5e-4, err_msg=str(texel))


def test_region_mask_matches_upstream_get_roi():
  rng = np.random.default_rng(4)
  size = 40
  points = rng.uniform(-3, size + 3, (3, 68, 2)).astype(np.float32)

  def get_roi(lmark, eyes):
    """A transcription of upstream's util.get_roi at size S (python ints, slices)."""
    template = np.zeros((size, size), bool)
    boxes = ([(list(range(36, 42)), 2), (list(range(42, 48)), 2)] if eyes else []) + [([48, 50, 51, 54, 57], 5)]
    for indices, margin in boxes:
      xs, ys = lmark[indices, 0], lmark[indices, 1]
      x0, x1 = max(0, int(xs.min() - margin)), min(size - 1, int(xs.max() + margin))
      y0, y1 = max(0, int(ys.min() - margin)), min(size - 1, int(ys.max() + margin))
      template[y0:y1, x0:x1] = True
    return template

  for eyes in (False, True):
    got = np.asarray(jax.jit(aware3d.region_mask, static_argnums=(1, 2, 3, 4))(points, size, eyes, True, 1.0))
    for b in range(3):
      np.testing.assert_array_equal(got[b], get_roi(points[b].astype(np.float64), eyes))
  # At 256 px the default margins are upstream's; at 128 px they halve.
  half = np.asarray(jax.jit(aware3d.region_mask, static_argnums=(1,))(points * 3.2, 128))
  full = np.asarray(jax.jit(aware3d.region_mask, static_argnums=(1, 2, 3, 4))(points * 3.2, 128, False, True, 0.5))
  np.testing.assert_array_equal(half, full)


def test_black_out_and_crop_to_render():
  rng = np.random.default_rng(5)
  image = rng.uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
  mask = rng.uniform(size=(2, 8, 8)) > 0.5
  got = np.asarray(jax.jit(aware3d.black_out)(image, mask))
  # Upstream's arithmetic: image / (−image·T + 1 − T).
  template, reference = mask[..., None].astype(np.float64), image.astype(np.float64)
  np.testing.assert_allclose(got, reference / (-reference * template + 1 - template), rtol=1e-6, atol=1e-7)
  coverage = rng.uniform(size=(2, 8, 8)).astype(np.float32)
  cropped = np.asarray(jax.jit(aware3d.crop_to_render)(image, coverage))
  np.testing.assert_array_equal(cropped, np.where(coverage[..., None] >= 0.5, image, -1.0))
