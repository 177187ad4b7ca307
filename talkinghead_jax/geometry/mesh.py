"""Position map ↔ mesh (PRNet style), vertex colours, and re-posing a key-frame mesh.

A position map is an (S, S, 3) image whose texel (i, j) holds the 3D position (x, y, z) of
the face point with UV coordinates ((j + 0.5) / S, (i + 0.5) / S), in the pixels of the
square crop (x right, y down, z away from the viewer). The mesh keeps the texels inside a
face mask as vertices and triangulates the UV grid: each grid cell (i, j)–(i+1, j+1)
whose corners are all in the mask gives two triangles,

    (i, j), (i+1, j), (i, j+1)        and        (i+1, j), (i+1, j+1), (i, j+1),

wound counter-clockwise on screen for a face seen from the front (so they are front-facing
under `render`'s rule). The topology depends on the mask only, so meshes of different
frames or clips with one mask share their faces and can be rendered as a batch. At S = 256
with a face-sized mask that is about 40k vertices and 80k triangles (PRNet's count).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class GridMesh(NamedTuple):
  """A triangulated position map.

  Attributes:
    vertices: (V, 3) float32 positions (in the position map's units).
    faces: (F, 3) int32 vertex indices.
    uv: (V, 2) float32 texel-centre UV coordinates of the vertices.
    grid_index: (V,) int32 flat index i·S + j of each vertex's texel; with it,
      `gather_vertices` turns any position map (a batch, or a network's output) into
      vertices of this same topology.
  """

  vertices: np.ndarray
  faces: np.ndarray
  uv: np.ndarray
  grid_index: np.ndarray


def grid_topology(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(S, S) bool mask → (grid_index (V,), faces (F, 3) indexing the V kept texels)."""
  mask = np.asarray(mask, bool)
  if mask.ndim != 2:
    raise ValueError(f"mask must be (S, S), got {mask.shape}")
  rows, cols = mask.shape
  grid_index = np.flatnonzero(mask).astype(np.int32)
  vertex_of = np.full(rows * cols, -1, np.int64)
  vertex_of[grid_index] = np.arange(grid_index.size)
  vertex_of = vertex_of.reshape(rows, cols)
  top_left = vertex_of[:-1, :-1]
  bottom_left = vertex_of[1:, :-1]
  top_right = vertex_of[:-1, 1:]
  bottom_right = vertex_of[1:, 1:]
  first = np.stack([top_left, bottom_left, top_right], -1).reshape(-1, 3)
  second = np.stack([bottom_left, bottom_right, top_right], -1).reshape(-1, 3)
  # Interleave per cell so that neighbouring triangles have neighbouring indices.
  faces = np.stack([first, second], 1).reshape(-1, 3)
  faces = faces[np.all(faces >= 0, axis=1)]
  return grid_index, faces.astype(np.int32)


def position_map_to_mesh(position_map: np.ndarray, mask: np.ndarray | None = None) -> GridMesh:
  """(S, S, 3) position map + optional (S, S) mask (default: all texels) → `GridMesh`."""
  position_map = np.asarray(position_map, np.float32)
  if position_map.ndim != 3 or position_map.shape[-1] != 3 or position_map.shape[0] != position_map.shape[1]:
    raise ValueError(f"position map must be (S, S, 3), got {position_map.shape}")
  size = position_map.shape[0]
  mask = np.ones((size, size), bool) if mask is None else np.asarray(mask, bool)
  if mask.shape != (size, size):
    raise ValueError(f"mask must be {(size, size)}, got {mask.shape}")
  grid_index, faces = grid_topology(mask)
  rows, cols = np.divmod(grid_index, size)
  uv = np.stack([(cols + 0.5) / size, (rows + 0.5) / size], -1).astype(np.float32)
  vertices = position_map.reshape(-1, 3)[grid_index]
  return GridMesh(vertices=vertices, faces=faces, uv=uv, grid_index=grid_index)


def gather_vertices(position_maps, grid_index):
  """(…, S, S, 3) position maps (numpy or jax) → (…, V, 3) vertices of `grid_index`."""
  shape = position_maps.shape
  flat = position_maps.reshape(shape[:-3] + (shape[-3] * shape[-2], 3))
  return flat[..., grid_index, :]


def vertex_colors(image, vertices):
  """Bilinear colours of an (H, W, C) image at the vertices' x, y (pixel convention).

  Pixel (i, j) has its centre at (j + 0.5, i + 0.5); positions outside the image take the
  nearest border pixel. Works on numpy or jax arrays (uint8 images come back as float32
  in the image's own range). Returns (V, C).
  """
  xp = np if isinstance(image, np.ndarray) and isinstance(vertices, np.ndarray) else _jnp()
  image = xp.asarray(image).astype(xp.float32)
  height, width = image.shape[:2]
  x = xp.asarray(vertices)[..., 0].astype(xp.float32) - 0.5
  y = xp.asarray(vertices)[..., 1].astype(xp.float32) - 0.5
  x0f, y0f = xp.floor(x), xp.floor(y)
  fx, fy = (x - x0f)[..., None], (y - y0f)[..., None]
  x0 = xp.clip(x0f, 0, width - 1).astype(xp.int32)
  x1 = xp.clip(x0f + 1, 0, width - 1).astype(xp.int32)
  y0 = xp.clip(y0f, 0, height - 1).astype(xp.int32)
  y1 = xp.clip(y0f + 1, 0, height - 1).astype(xp.int32)
  top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
  bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
  return top * (1 - fy) + bottom * fy


def _jnp():
  import jax.numpy as jnp

  return jnp


def repose_vertices(vertices, pose_from, pose_to):
  """Paper Eq. 1: vertices of the key frame (pose `pose_from`) seen at pose `pose_to`.

  Poses are (…, 6) rotation vector + translation with front = R·l + t, so
  V_t = R_toᵀ (R_from·V + t_from − t_to). Delegates to `geometry.rigid.repose`; batched
  over the poses' leading axes (e.g. (T, 6) poses → (T, V, 3)).
  """
  from talkinghead_jax.geometry import rigid

  return rigid.repose(vertices, pose_from, pose_to)
