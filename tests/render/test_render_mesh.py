"""render_mesh: images against numpy references, soft → hard, light, textures, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import render_reference as ref
from jax.test_util import check_grads

from talkinghead_jax import render

HEIGHT, WIDTH = 20, 28


def soup(seed, num_vertices=30, num_faces=40):
  rng = np.random.default_rng(seed)
  xy = rng.uniform([-4, -4], [WIDTH + 4, HEIGHT + 4], (num_vertices, 2))
  z = rng.uniform(-8, 8, (num_vertices, 1))
  vertices = np.concatenate([xy, z], -1).astype(np.float32)
  faces = rng.integers(0, num_vertices, (num_faces, 3)).astype(np.int32)
  colors = rng.uniform(0, 1, (num_vertices, 3)).astype(np.float32)
  return vertices, faces, colors


def softras_numpy(frags, vertex_colors, faces, sigma, gamma, near, far, background):
  """SoftRas aggregation (Liu et al. 2019) over reference fragments, written out in numpy."""
  index = frags["face_index"]
  valid = index >= 0
  corner_colors = vertex_colors[faces[np.maximum(index, 0)]]  # (H, W, K, 3, C)
  colors = np.einsum("hwkjc,hwkj->hwkc", corner_colors, frags["closest"])
  if sigma == 0:
    coverage = valid.astype(np.float64)
  else:
    d = frags["signed_distance"]
    coverage = np.where(valid, 1 / (1 + np.exp(np.where(valid, d * np.abs(d), 0) / sigma)), 0.0)
  alpha = 1 - np.prod(1 - coverage, -1)
  if gamma == 0:
    rgb = np.where(valid[..., :1], colors[:, :, 0], background)
  else:
    z = np.where(valid, (far - frags["depth"]) / (far - near), -np.inf)
    top = np.maximum(z.max(-1, keepdims=True), 1e-10) / gamma
    weights = coverage * np.exp(z / gamma - top)
    background_weight = np.exp(1e-10 / gamma - top)
    rgb = (np.einsum("hwk,hwkc->hwc", weights, colors) + background_weight * background)
    rgb = rgb / (weights.sum(-1, keepdims=True) + background_weight)
  return np.concatenate([rgb, alpha[..., None]], -1)


@pytest.mark.parametrize("sigma, gamma, k", [(0.0, 0.0, 1), (0.5, 0.05, 4)])
def test_image_matches_numpy_softras(sigma, gamma, k):
  vertices, faces, colors = soup(seed=1)
  camera = render.OrthographicCamera(near=-10.0, far=10.0)
  background = np.array([0.2, 0.4, 0.6], np.float32)
  image = render.render_mesh(vertices, faces, colors, camera=camera, image_size=(HEIGHT, WIDTH), sigma=sigma,
                             gamma=gamma, faces_per_pixel=k, background=background, tile_size=8, tile_capacity=40)
  radius = render.blur_radius(sigma)
  frags = ref.fragments(vertices, faces, HEIGHT, WIDTH, k, radius=radius, near=-10.0, far=10.0)
  expected = softras_numpy(frags, colors.astype(np.float64), faces, sigma, gamma, -10.0, 10.0, background)
  clear = frags["margin"] > 1e-3
  assert clear.mean() > 0.9 and (frags["face_index"] >= 0).mean() > 0.2
  np.testing.assert_allclose(np.asarray(image)[clear], expected[clear], atol=2e-4)


def test_texture_matches_numpy_bilinear_and_per_corner_uv():
  vertices, faces, _ = soup(seed=2)
  rng = np.random.default_rng(2)
  texture = rng.uniform(0, 1, (5, 7, 2)).astype(np.float32)
  uv = rng.uniform(-0.1, 1.1, (len(vertices), 2)).astype(np.float32)  # some lookups clamp at the border
  image = np.asarray(render.render_mesh(vertices, faces, uv=uv, texture=texture, image_size=(HEIGHT, WIDTH)))
  frags = ref.fragments(vertices, faces, HEIGHT, WIDTH, 1)
  index = frags["face_index"][..., 0]
  uv_at = np.einsum("hwjc,hwj->hwc", uv[faces[np.maximum(index, 0)]], frags["closest"][:, :, 0])
  # Bilinear lookup written out: texel (r, c) is centred at ((c + .5)/Wt, (r + .5)/Ht).
  x = np.clip(uv_at[..., 0] * 7 - 0.5, 0, 6)
  y = np.clip(uv_at[..., 1] * 5 - 0.5, 0, 4)
  x0, y0 = np.minimum(np.floor(x).astype(int), 5), np.minimum(np.floor(y).astype(int), 3)
  fx, fy = (x - x0)[..., None], (y - y0)[..., None]
  want = ((texture[y0, x0] * (1 - fx) + texture[y0, x0 + 1] * fx) * (1 - fy)
          + (texture[y0 + 1, x0] * (1 - fx) + texture[y0 + 1, x0 + 1] * fx) * fy)
  want = np.where(index[..., None] >= 0, want, 0.0)
  clear = frags["margin"] > 1e-3
  np.testing.assert_allclose(image[..., :2][clear], want[clear], atol=2e-4)
  per_corner = render.render_mesh(vertices, faces, uv=uv[faces], texture=texture, image_size=(HEIGHT, WIDTH))
  np.testing.assert_allclose(np.asarray(per_corner), image, atol=1e-6)


def test_sample_bilinear_known_values():
  texture = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
  uv = np.array([[0.5 / 4, 0.5 / 3], [1.0 / 4, 0.5 / 3], [2.5 / 4, 1.5 / 3], [1.0, 1.0], [0.0, 0.0]], np.float32)
  got = np.asarray(render.sample_bilinear(texture, uv))[:, 0]
  np.testing.assert_allclose(got, [0.0, 0.5, 6.0, 11.0, 0.0], atol=1e-5)


def test_soft_converges_to_hard():
  # Every pixel centre is at least 0.35 px from the edges (x = 2, y = 3, x + y = 17.5), so
  # once the blur band is narrower than that the soft image equals the hard one.
  vertices = np.array([[2.0, 3.0, 0.0], [14.5, 3.0, 0.0], [2.0, 15.5, 0.0]], np.float32)
  faces = np.array([[0, 2, 1]], np.int32)
  colors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
  hard = np.asarray(render.render_mesh(vertices, faces, colors, image_size=16))
  errors = []
  for sigma in (0.3, 0.03, 0.003):
    soft = np.asarray(render.render_mesh(vertices, faces, colors, image_size=16, sigma=sigma, gamma=1e-4,
                                         faces_per_pixel=1))
    errors.append(np.abs(soft - hard).mean())
  assert errors[0] > errors[1] > errors[2]
  assert errors[2] < 1e-6
  assert 0.2 > errors[0] > 0.01  # the soft edge is there, and only at the edge


def test_ambient_and_lambertian_light():
  # A flat triangle facing the camera (normal −z), lit from 60° off the view axis.
  vertices = np.array([[1, 1, 0.0], [1, 15.3, 0.0], [15.3, 1, 0.0]], np.float32)  # no centre on an edge
  faces = np.array([[0, 1, 2]], np.int32)
  colors = np.full((3, 3), 0.8, np.float32)
  direction = (np.sin(np.pi / 3), 0.0, -np.cos(np.pi / 3))
  light = render.Light(ambient=0.25, diffuse=0.5, direction=direction)
  image = np.asarray(render.render_mesh(vertices, faces, colors, image_size=16, light=light))
  np.testing.assert_allclose(image[4, 4, :3], 0.8 * (0.25 + 0.5 * 0.5), atol=1e-5)
  # Two-sided: the same triangle wound the other way (a back face) is lit the same.
  flipped = np.asarray(render.render_mesh(vertices, faces[:, ::-1], colors, image_size=16, light=light))
  np.testing.assert_allclose(flipped, image, atol=1e-5)


def test_batched_render_equals_per_item_jit_and_vmap():
  vertices, faces, colors = soup(seed=4)
  rng = np.random.default_rng(4)
  batch = np.stack([vertices, vertices + rng.normal(0, 1, vertices.shape).astype(np.float32)])
  batch_colors = np.stack([colors, colors[::-1]])
  # The static configuration of test_image_matches_numpy_softras's soft case (compiled once).
  kwargs = dict(image_size=(HEIGHT, WIDTH), sigma=0.5, gamma=0.05, faces_per_pixel=4, tile_size=8, tile_capacity=40,
                background=np.array([0.2, 0.4, 0.6], np.float32))
  batched = np.asarray(render.render_mesh(batch, faces, batch_colors, **kwargs))
  assert batched.shape == (2, HEIGHT, WIDTH, 4)
  for item in range(2):
    single = np.asarray(render.render_mesh(batch[item], faces, batch_colors[item], **kwargs))
    np.testing.assert_allclose(batched[item], single, atol=1e-6)
  jitted = jax.jit(lambda v, c: render.render_mesh(v, faces, c, **kwargs))(batch, batch_colors)
  np.testing.assert_allclose(np.asarray(jitted), batched, atol=1e-6)
  # jax.vmap over single meshes gives the same as the batched call.
  mapped = jax.vmap(lambda v, c: render.render_mesh(v, faces, c, **kwargs))(batch, batch_colors)
  np.testing.assert_allclose(np.asarray(mapped), batched, atol=1e-6)


def test_overflow_is_returned_and_warned():
  vertices, faces, colors = soup(seed=5)
  kwargs = dict(image_size=(HEIGHT, WIDTH), tile_capacity=2)
  image, overflow = render.render_mesh(vertices, faces, colors, return_overflow=True, **kwargs)
  assert int(overflow) > 0 and image.shape == (HEIGHT, WIDTH, 4)
  with pytest.warns(render.OverflowWarning, match="tile_capacity"):
    jax.block_until_ready(render.render_mesh(vertices, faces, colors, **kwargs))
    jax.effects_barrier()


def test_bad_arguments_raise():
  vertices, faces, colors = soup(seed=6)
  with pytest.raises(ValueError, match="either colors or uv"):
    render.render_mesh(vertices, faces, colors, uv=np.zeros((30, 2)), texture=np.zeros((2, 2, 3)), image_size=8)
  with pytest.raises(ValueError, match="uv"):
    render.render_mesh(vertices, faces, texture=np.zeros((2, 2, 3)), image_size=8)
  with pytest.raises(ValueError, match="sigma"):
    render.render_mesh(vertices, faces, colors, image_size=8, sigma=-1.0)


# Gradients: two overlapping triangles on an 8 × 8 image; with K = F and a tiny coverage
# threshold the soft image is continuous in the vertices, so finite differences apply. It is
# only piecewise smooth (SoftRas' distance to the boundary has kinks on the triangle's
# medial axis), so the vertices are placed with every pixel centre > 1e-2 px from a kink.
GRAD_VERTICES = np.array([[0.51, 1.29, 0.87], [7.02, 2.25, 2.58], [2.14, 7.44, 0.47],
                          [4.47, 0.35, -1.14], [7.6, 6.73, -0.16], [1.52, 5.09, 1.49]], np.float32)
GRAD_FACES = np.array([[0, 2, 1], [3, 5, 4]], np.int32)
GRAD_COLORS = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.5], [0.4, 0.3, 0.9],
                        [0.7, 0.6, 0.1], [0.1, 0.2, 0.8], [0.5, 0.9, 0.4]], np.float32)
GRAD_KWARGS = dict(image_size=8, sigma=0.8, gamma=0.1, faces_per_pixel=2, coverage_threshold=1e-7,
                   camera=render.OrthographicCamera(near=-5.0, far=5.0))


def test_gradients_vertices_with_light():
  light = render.Light(ambient=0.4, diffuse=0.6, direction=(0.3, -0.2, -1.0))
  render_fn = lambda v: render.render_mesh(v, GRAD_FACES, GRAD_COLORS, light=light, **GRAD_KWARGS)
  check_grads(render_fn, (GRAD_VERTICES,), order=1, modes=("rev",), eps=1e-2, atol=2e-2, rtol=2e-2)


def test_gradients_vertices_perspective():
  camera = render.PerspectiveCamera(focal_length=8.0, principal_point=(4.0, 4.0), translation=(-4.0, -4.0, 10.0),
                                    near=1.0, far=20.0)
  kwargs = dict(GRAD_KWARGS, camera=camera)
  render_fn = lambda v: render.render_mesh(v, GRAD_FACES, GRAD_COLORS, **kwargs)
  check_grads(render_fn, (GRAD_VERTICES,), order=1, modes=("rev",), eps=1e-2, atol=2e-2, rtol=2e-2)


def test_gradients_colors_and_texture():
  render_colors = lambda c: render.render_mesh(GRAD_VERTICES, GRAD_FACES, c, **GRAD_KWARGS)
  check_grads(render_colors, (GRAD_COLORS,), order=1, modes=("rev",), eps=1e-2, atol=1e-2, rtol=1e-2)
  texture = np.random.default_rng(0).uniform(0, 1, (4, 4, 3)).astype(np.float32)
  uv = GRAD_VERTICES[:, :2] / 8.0
  render_texture = lambda t: render.render_mesh(GRAD_VERTICES, GRAD_FACES, uv=uv, texture=t, **GRAD_KWARGS)
  check_grads(render_texture, (texture,), order=1, modes=("rev",), eps=1e-2, atol=1e-2, rtol=1e-2)
  # The gradient reaches every texel a visible fragment samples, and only those.
  grad = jax.grad(lambda t: jnp.sum(render_texture(t)[..., :3]))(jnp.asarray(texture))
  assert np.all(np.asarray(grad) >= 0) and np.asarray(grad).sum() > 0


def test_backward_memory_does_not_scale_with_pixels_times_faces():
  # 3000 tiny faces on a 16 × 16 image: a dense (pixels × faces) intermediate would need
  # 16·16·3000·4 bytes = 3 MB per float; the tiled renderer's gradient needs far less.
  rng = np.random.default_rng(0)
  num_faces = 3000
  centres = rng.uniform(0, 16, (num_faces, 1, 3))
  vertices = (centres + rng.normal(0, 0.3, (num_faces, 3, 3))).reshape(-1, 3).astype(np.float32)
  faces = np.arange(3 * num_faces, dtype=np.int32).reshape(-1, 3)
  colors = rng.uniform(0, 1, (3 * num_faces, 3)).astype(np.float32)
  loss = lambda v, c: jnp.sum(render.render_mesh(v, faces, c, image_size=16, sigma=0.1, gamma=0.01,
                                                 faces_per_pixel=4, tile_capacity=256, warn_on_overflow=False))
  compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(vertices, colors).compile()
  memory = compiled.memory_analysis()
  if memory is None:
    pytest.skip("this backend reports no memory analysis")
  assert memory.temp_size_in_bytes < 16 * 16 * num_faces * 4
