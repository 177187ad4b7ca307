"""Tiled rasterization against a plain numpy dense reference, cameras, binning, overflow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import render_reference as ref

from talkinghead_jax import render
from talkinghead_jax.render import raster

HEIGHT, WIDTH = 20, 28  # not multiples of the 8-px tiles: partial tiles are cropped


def random_mesh(seed, num_vertices=30, num_faces=45):
  """Small random soup: faces straddle tiles, overlap in depth, face both ways, leave the
  image, and include a degenerate face (a repeated vertex) and a collinear one."""
  rng = np.random.default_rng(seed)
  xy = rng.uniform([-6, -6], [WIDTH + 6, HEIGHT + 6], (num_vertices, 2))
  z = rng.uniform(-20, 20, (num_vertices, 1))
  vertices = np.concatenate([xy, z], -1).astype(np.float32)
  vertices[2] = (vertices[0] + vertices[1]) / 2  # 0, 1, 2 collinear
  faces = rng.integers(0, num_vertices, (num_faces, 3)).astype(np.int32)
  faces[0] = [3, 4, 4]
  faces[1] = [0, 1, 2]
  return vertices, faces


def assert_fragments_match(fragments, expected, margin_px=1e-3):
  """Face indices agree except where the reference itself is on a knife edge (ties in depth
  or a pixel centre on an edge, to float32 precision); the rest agrees where indices do."""
  got = np.asarray(fragments.face_index)
  want = expected["face_index"]
  differs = np.any(got != want, axis=-1)
  # A pure tie swap keeps the set of faces and the depths.
  swapped = differs & np.all(np.sort(got, -1) == np.sort(want, -1), axis=-1)
  unexplained = differs & ~swapped & (expected["margin"] > margin_px)
  assert not unexplained.any(), np.argwhere(unexplained)[:5]
  assert differs.mean() < 0.1  # shared vertices give exact depth ties in a random soup
  same = (got == want) & ~differs[..., None]
  assert same.any()
  np.testing.assert_allclose(np.asarray(fragments.depth)[same], expected["depth"][same], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(fragments.signed_distance)[same], expected["signed_distance"][same],
                             rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(fragments.closest_barycentrics)[same], expected["closest"][same],
                             atol=1e-4)
  # Raw barycentrics are extrapolated far outside small faces: compare relatively.
  raw = np.asarray(fragments.barycentrics)[same]
  np.testing.assert_allclose(raw, expected["barycentrics"][same], rtol=1e-3, atol=2e-4)
  empty = got < 0
  assert np.all(np.isinf(np.asarray(fragments.depth)[empty]))
  assert np.all(np.asarray(fragments.barycentrics)[empty] == 0)


CASES = {
    "hard": dict(camera=render.OrthographicCamera(), k=1, radius=0.0, cull=False),
    "hard_k3_culled": dict(camera=render.OrthographicCamera(near=-15.0, far=12.0), k=3, radius=0.0, cull=True),
    "blur_k4": dict(camera=render.OrthographicCamera(), k=4, radius=1.5, cull=False),
    "perspective_k2": dict(
        camera=render.PerspectiveCamera(focal_length=(30.0, 26.0), principal_point=(14.0, 10.0),
                                        translation=(-14.0, -10.0, 45.0), near=28.0, far=60.0),
        k=2, radius=0.7, cull=False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tiled_matches_numpy_dense_reference(case):
  spec = CASES[case]
  vertices, faces = random_mesh(seed=sorted(CASES).index(case))
  fragments = render.rasterize(vertices, faces, spec["camera"], (HEIGHT, WIDTH), faces_per_pixel=spec["k"],
                               blur_radius=spec["radius"], tile_size=8, tile_capacity=64,
                               cull_backfaces=spec["cull"])
  assert int(fragments.overflow) == 0
  screen = ref.project(vertices, spec["camera"])
  expected = ref.fragments(screen, faces, HEIGHT, WIDTH, spec["k"], radius=spec["radius"],
                           perspective=spec["camera"].perspective, near=float(spec["camera"].near),
                           far=float(spec["camera"].far), cull_backfaces=spec["cull"])
  assert (expected["face_index"] >= 0).mean() > 0.2  # the scene is not empty
  assert_fragments_match(fragments, expected)
  # Degenerate faces are never drawn.
  assert not np.isin(np.asarray(fragments.face_index), [0, 1]).any()


# The static configuration of the "blur_k4" case; tests below reuse it (and its compiled code).
BLUR_K4 = dict(faces_per_pixel=4, blur_radius=1.5, tile_size=8, tile_capacity=64)


def test_dense_jax_selection_equals_tiled():
  vertices, faces = random_mesh(seed=sorted(CASES).index("blur_k4"))
  tiled = render.rasterize(vertices, faces, None, (HEIGHT, WIDTH), **BLUR_K4)
  dense = render.rasterize(vertices, faces, None, (HEIGHT, WIDTH), dense=True, **BLUR_K4)
  np.testing.assert_array_equal(np.asarray(tiled.face_index), np.asarray(dense.face_index))
  np.testing.assert_allclose(np.asarray(tiled.depth), np.asarray(dense.depth))


def test_unpacked_sort_fallback_gives_the_same_lists(monkeypatch):
  # Meshes with (tiles + 1) · faces >= 2³¹ cannot use the packed int32 sort key.
  vertices, faces = random_mesh(seed=3)
  kwargs = dict(faces_per_pixel=2, tile_size=4, tile_capacity=30)
  packed = render.rasterize(vertices, faces, None, (HEIGHT, WIDTH), **kwargs)
  monkeypatch.setattr(raster, "_PACKED_KEY_LIMIT", 0)
  unpacked = render.rasterize(vertices, faces, None, (HEIGHT, WIDTH), pair_capacity=10_000, **kwargs)
  np.testing.assert_array_equal(np.asarray(unpacked.face_index), np.asarray(packed.face_index))
  assert int(packed.overflow) == int(unpacked.overflow) == 0


def test_hard_coverage_equals_triangle_area():
  # A 26 × 20 right triangle: 260 px², and its pixel count is off by at most the edge pixels.
  vertices = np.array([[3.2, 4.1, 0.0], [29.2, 4.1, 0.0], [3.2, 24.1, 0.0]], np.float32)
  faces = np.array([[0, 2, 1]], np.int32)
  fragments = render.rasterize(vertices, faces, None, 32)
  covered = int(np.sum(np.asarray(fragments.face_index) >= 0))
  perimeter = 26 + 20 + np.hypot(26, 20)
  assert abs(covered - 260.0) <= perimeter / 2
  # And exactly the pixel centres inside (a point-in-triangle count in numpy).
  jj, ii = np.meshgrid(np.arange(32) + 0.5, np.arange(32) + 0.5)
  inside = (jj >= 3.2) & (ii >= 4.1) & ((jj - 3.2) / 26 + (ii - 4.1) / 20 <= 1)
  np.testing.assert_array_equal(np.asarray(fragments.face_index)[..., 0] >= 0, inside)


def test_pixel_convention_and_winding():
  # The orthographic default maps world x, y to pixels: a vertex at (j + 0.5, i + 0.5) is
  # the centre of pixel (row i, column j).
  camera = render.OrthographicCamera()
  np.testing.assert_allclose(np.asarray(camera.project(jnp.array([[3.5, 1.5, 7.0]]))), [[3.5, 1.5, 7.0]])
  np.testing.assert_allclose(np.asarray(render.pixel_centers(2, 3))[1, 2], [2.5, 1.5])
  # A triangle covering exactly the centre of pixel (1, 2) only.
  counter_clockwise = np.array([[2.4, 1.4, 0.0], [2.4, 1.7, 0.0], [2.7, 1.4, 0.0]], np.float32)
  clockwise = counter_clockwise[[0, 2, 1]]
  faces = np.array([[0, 1, 2]], np.int32)
  for vertices, front in ((counter_clockwise, True), (clockwise, False)):
    both = np.asarray(render.rasterize(vertices, faces, camera, (3, 4)).face_index)[..., 0]
    culled = np.asarray(render.rasterize(vertices, faces, camera, (3, 4), cull_backfaces=True).face_index)[..., 0]
    assert np.argwhere(both >= 0).tolist() == [[1, 2]]
    assert (culled[1, 2] >= 0) == front
    # Front-facing means the normal (v1 − v0) × (v2 − v0) points to the viewer (−z).
    normal = np.cross(vertices[1] - vertices[0], vertices[2] - vertices[0])
    assert (normal[2] < 0) == front


def test_cameras_project_like_numpy():
  rng = np.random.default_rng(3)
  points = rng.normal(size=(2, 5, 3)).astype(np.float32) + [0, 0, 6]
  angle = 0.3
  rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]],
                      np.float32)
  ortho = render.OrthographicCamera(scale=2.5, principal_point=(4.0, 3.0), rotation=rotation,
                                    translation=(1.0, 0.0, 2.0))
  persp = render.PerspectiveCamera.from_fov(60.0, (24, 32), rotation=rotation, translation=(0.0, 0.0, 1.0))
  np.testing.assert_allclose(float(persp.focal_length), 16 / np.tan(np.radians(30)), rtol=1e-6)
  for camera in (ortho, persp):
    got = np.asarray(camera.project(points))
    want = np.stack([ref.project(p, camera) for p in points])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
  # Cameras are pytrees: they go through jit as arguments.
  jitted = jax.jit(lambda cam, p: cam.project(p))(persp, points)
  np.testing.assert_allclose(np.asarray(jitted), np.asarray(persp.project(points)), rtol=1e-6)


def test_batched_equals_per_item():
  vertices, faces = random_mesh(seed=sorted(CASES).index("blur_k4"))
  rng = np.random.default_rng(11)
  batch = np.stack([vertices, vertices + rng.normal(0, 2, vertices.shape).astype(np.float32)])
  batched = render.rasterize(batch, faces, None, (HEIGHT, WIDTH), **BLUR_K4)
  for item in range(2):
    single = render.rasterize(batch[item], faces, None, (HEIGHT, WIDTH), **BLUR_K4)
    np.testing.assert_array_equal(np.asarray(batched.face_index)[item], np.asarray(single.face_index))
    for got, want in zip(jax.tree_util.tree_leaves(batched)[1:], jax.tree_util.tree_leaves(single)[1:]):
      np.testing.assert_allclose(np.asarray(got)[item], np.asarray(want), rtol=1e-5, atol=1e-5)


def test_jit_equals_direct_call():
  # rasterize can be traced inside a caller's jit, with the camera as a traced argument.
  vertices, faces = random_mesh(seed=sorted(CASES).index("blur_k4"))
  camera = render.OrthographicCamera(scale=0.9, principal_point=(1.0, 0.5))
  direct = render.rasterize(vertices, faces, camera, (HEIGHT, WIDTH), **BLUR_K4)
  jitted = jax.jit(lambda v, cam: render.rasterize(v, faces, cam, (HEIGHT, WIDTH), **BLUR_K4))(vertices, camera)
  for got, want in zip(jax.tree_util.tree_leaves(jitted), jax.tree_util.tree_leaves(direct)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_overflow_counts_what_does_not_fit():
  vertices, faces = random_mesh(seed=5)
  counts = np.asarray(render.tile_counts(vertices, faces, None, (HEIGHT, WIDTH), tile_size=8))
  total, fullest = int(counts.sum()), int(counts.max())
  # Tiles over capacity: the excess of every tile is counted.
  small = render.rasterize(vertices, faces, None, (HEIGHT, WIDTH), tile_size=8, tile_capacity=fullest - 3,
                           pair_capacity=total)
  assert int(small.overflow) == int(np.maximum(counts - (fullest - 3), 0).sum()) > 0
  # A pair buffer that is too small is counted too; enough of both gives 0.
  for pair_capacity, expected in ((total - 4, 4), (total, 0)):
    result = render.rasterize(vertices, faces, None, (HEIGHT, WIDTH), tile_size=8, tile_capacity=fullest,
                              pair_capacity=pair_capacity)
    assert int(result.overflow) == expected
  # suggest_capacity sizes both so that nothing overflows.
  suggested = render.suggest_capacity(vertices, faces, None, (HEIGHT, WIDTH), tile_size=8)
  assert suggested.tile_capacity >= fullest and suggested.pair_capacity >= total


def test_tile_counts_match_bounding_box_reference():
  vertices, faces = random_mesh(seed=2)
  radius, tile = 1.5, 8
  counts = np.asarray(render.tile_counts(vertices, faces, None, (HEIGHT, WIDTH), tile_size=tile,
                                         blur_radius=radius))
  expected = np.zeros_like(counts)
  screen = vertices.astype(np.float64)
  for face in faces:
    c = screen[face]
    area2 = (c[1, 0] - c[0, 0]) * (c[2, 1] - c[0, 1]) - (c[2, 0] - c[0, 0]) * (c[1, 1] - c[0, 1])
    lengths2 = ((np.roll(c[:, :2], -1, 0) - c[:, :2]) ** 2).sum()
    if abs(area2) <= 1e-5 * lengths2:
      continue
    # Pixel centres inside the widened box, then the tiles holding them.
    cols = [j for j in range(WIDTH) if c[:, 0].min() - radius <= j + 0.5 <= c[:, 0].max() + radius]
    rows = [i for i in range(HEIGHT) if c[:, 1].min() - radius <= i + 0.5 <= c[:, 1].max() + radius]
    for ty in {i // tile for i in rows}:
      for tx in {j // tile for j in cols}:
        expected[ty, tx] += 1
  np.testing.assert_array_equal(counts, expected)


def test_near_and_far_discard_fragments():
  vertices = np.array([[0, 0, 5.0], [16, 0, 5.0], [0, 16, 5.0], [0, 0, -5.0], [16, 0, -5.0], [0, 16, -5.0]],
                      np.float32)
  faces = np.array([[0, 2, 1], [3, 5, 4]], np.int32)
  both = render.rasterize(vertices, faces, render.OrthographicCamera(), 16, faces_per_pixel=2)
  assert np.asarray(both.face_index)[2, 2].tolist() == [1, 0]  # nearer (z = −5) first
  np.testing.assert_allclose(np.asarray(both.depth)[2, 2], [-5.0, 5.0])
  clipped = render.rasterize(vertices, faces, render.OrthographicCamera(near=0.0, far=10.0), 16, faces_per_pixel=2)
  assert np.asarray(clipped.face_index)[2, 2].tolist() == [0, -1]


def test_rasterize_rejects_bad_shapes():
  with pytest.raises(ValueError, match="vertices"):
    render.rasterize(np.zeros((4, 2)), np.zeros((1, 3), np.int32), None, 8)
  with pytest.raises(ValueError, match="faces"):
    render.rasterize(np.zeros((4, 3)), np.zeros((3,), np.int32), None, 8)


def test_blur_radius_bounds_softras_coverage():
  sigma = 0.7
  radius = raster.blur_radius(sigma, 1e-4)
  np.testing.assert_allclose(1 / (1 + np.exp(radius**2 / sigma)), 1e-4, rtol=1e-6)
  assert raster.blur_radius(0.0) == 0.0
