"""Position map → mesh (PRNet-style UV-grid triangulation), vertex colours, re-posing."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from talkinghead_jax.geometry import mesh as meshlib


def flat_map(size, scale=1.0, offset=0.0):
  """A position map of a frontal plane: texel (i, j) at x = j·scale + offset, y = i·scale + offset."""
  jj, ii = np.meshgrid(np.arange(size), np.arange(size))
  return np.stack([jj * scale + offset, ii * scale + offset, np.zeros_like(jj)], -1).astype(np.float32)


def test_grid_topology_counts_and_neighbours():
  mask = np.zeros((5, 6), bool)
  mask[1:4, 1:5] = True  # 3 × 4 texels: 2 × 3 cells
  mask[0, 0] = True  # an isolated texel makes a vertex but no face
  grid_index, faces = meshlib.grid_topology(mask)
  assert grid_index.size == 13 and faces.shape == (2 * 2 * 3, 3)
  rows, cols = np.divmod(grid_index[faces], 6)
  # Every face is half of one grid cell: its corners lie within one 2 × 2 block.
  assert np.all(rows.max(1) - rows.min(1) == 1) and np.all(cols.max(1) - cols.min(1) == 1)
  assert np.all(mask.reshape(-1)[grid_index[faces]])
  # Two faces per cell, and the cells tile the masked block once.
  cells = set(zip(rows.min(1).tolist(), cols.min(1).tolist()))
  assert cells == {(i, j) for i in range(1, 3) for j in range(1, 4)}


def test_faces_are_front_facing_for_a_frontal_map():
  mesh = meshlib.position_map_to_mesh(flat_map(6, scale=2.0))
  corners = mesh.vertices[mesh.faces]
  normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
  # Normal towards the viewer (−z): counter-clockwise on screen, the renderer's front face.
  assert np.all(normals[:, 2] < 0)
  np.testing.assert_allclose(np.abs(normals[:, 2]).sum() / 2, (5 * 2.0) ** 2)  # area of the plane


def test_position_map_to_mesh_vertices_uv_and_gather():
  rng = np.random.default_rng(0)
  size = 8
  position_map = rng.normal(size=(size, size, 3)).astype(np.float32)
  mask = rng.uniform(size=(size, size)) < 0.7
  mesh = meshlib.position_map_to_mesh(position_map, mask)
  rows, cols = np.divmod(mesh.grid_index, size)
  np.testing.assert_array_equal(mesh.vertices, position_map[rows, cols])
  np.testing.assert_allclose(mesh.uv, np.stack([(cols + 0.5) / size, (rows + 0.5) / size], -1))
  # gather_vertices: any (batched, jax) position map → vertices of the same topology.
  batch = np.stack([position_map, position_map * 2])
  gathered = meshlib.gather_vertices(jnp.asarray(batch), mesh.grid_index)
  np.testing.assert_allclose(np.asarray(gathered), np.stack([mesh.vertices, mesh.vertices * 2]))
  with pytest.raises(ValueError, match="position map"):
    meshlib.position_map_to_mesh(position_map[:, :5])
  with pytest.raises(ValueError, match="mask"):
    meshlib.position_map_to_mesh(position_map, mask[:5])


def test_prnet_sized_mesh_at_256():
  # A face-sized disc in UV space, as PRNet's face mask: about 40k vertices, 80k triangles.
  u = (np.arange(256) + 0.5) / 256
  uu, vv = np.meshgrid(u, u)
  mask = (uu - 0.5) ** 2 + (vv - 0.5) ** 2 < 0.44**2
  grid_index, faces = meshlib.grid_topology(mask)
  assert 38_000 < grid_index.size < 42_000
  assert 76_000 < faces.shape[0] < 82_000


def test_vertex_colors_bilinear_known_values():
  image = np.arange(2 * 3 * 2, dtype=np.uint8).reshape(2, 3, 2)
  points = np.array([[0.5, 0.5, 0], [1.0, 0.5, 0], [1.5, 1.0, 0], [9.0, -3.0, 0]], np.float32)
  want = np.array([image[0, 0], (image[0, 0] + image[0, 1]) / 2, (image[0, 1] + image[1, 1]) / 2, image[0, 2]],
                  np.float32)
  got = meshlib.vertex_colors(image, points)
  assert isinstance(got, np.ndarray) and got.dtype == np.float32
  np.testing.assert_allclose(got, want, atol=1e-5)
  np.testing.assert_allclose(np.asarray(meshlib.vertex_colors(jnp.asarray(image), points)), want, atol=1e-5)


def test_repose_vertices_is_paper_eq1():
  rng = np.random.default_rng(1)
  vertices = rng.normal(size=(7, 3)) * 20
  pose_from = np.concatenate([rng.normal(size=3) * 0.2, rng.normal(size=3) * 5])
  poses_to = np.concatenate([rng.normal(size=(4, 3)) * 0.2, rng.normal(size=(4, 3)) * 5], -1)
  got = np.asarray(meshlib.repose_vertices(vertices, pose_from, poses_to))
  r_from = Rotation.from_rotvec(pose_from[:3]).as_matrix()
  for t, pose in enumerate(poses_to):
    r_to = Rotation.from_rotvec(pose[:3]).as_matrix()
    want = (vertices @ r_from.T + pose_from[3:] - pose[3:]) @ r_to  # Rtoᵀ(R_from·v + t_from − t_to)
    np.testing.assert_allclose(got[t], want, rtol=1e-6, atol=1e-6)


def test_rendered_key_frame_mesh_at_a_new_pose():
  # A flat disc, seen frontally at the key frame, re-posed by a 50° turn about the vertical
  # axis through its centre: its rendered silhouette is an ellipse of area π r² cos 50°.
  from talkinghead_jax import render

  size, radius, centre = 24, 10.0, 16.0
  position_map = flat_map(size, scale=(2 * radius + 2) / (size - 1), offset=centre - radius - 1)
  xy = position_map[..., :2] - centre
  mesh = meshlib.position_map_to_mesh(position_map, np.hypot(xy[..., 0], xy[..., 1]) <= radius)
  angle = np.radians(50)
  key_pose = np.zeros(6, np.float32)
  # front = R·l + t: rotating about (16, 16, 0) is R·l + (c − R·c).
  rotation = Rotation.from_rotvec([0, angle, 0])
  c = np.array([centre, centre, 0.0])
  target_pose = np.concatenate([rotation.as_rotvec(), c - rotation.as_matrix() @ c]).astype(np.float32)
  # The key frame is the frontal view; Eq. 1 takes it to how it looks at the target pose.
  posed = meshlib.repose_vertices(mesh.vertices, key_pose, target_pose)
  colors = np.ones((len(mesh.vertices), 3), np.float32)
  image = np.asarray(render.render_mesh(np.asarray(posed, np.float32), mesh.faces, colors, image_size=32,
                                        tile_capacity=mesh.faces.shape[0]))
  corners = mesh.vertices[mesh.faces]
  e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
  disc_area = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum() / 2  # the polygonal disc's own area
  covered = image[..., 3].sum()
  np.testing.assert_allclose(covered, disc_area * np.cos(angle), rtol=0.08)
  # Foreshortened along x only: the silhouette's width shrinks, its height does not.
  cols = np.flatnonzero(image[..., 3].any(0))
  rows = np.flatnonzero(image[..., 3].any(1))
  assert abs((cols[-1] - cols[0] + 1) - 2 * radius * np.cos(angle)) <= 2
  assert abs((rows[-1] - rows[0] + 1) - 2 * radius) <= 2
