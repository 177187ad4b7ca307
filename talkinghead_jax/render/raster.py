"""Tiled rasterization: per pixel, the K nearest faces by depth (SoftRas/PyTorch3D style).

Two stages (docs/rendering.md has the full story):

1. Selection, without gradients. Faces are binned into square screen tiles: each face
   gets the tiles its (blur-expanded) bounding box touches, every (tile, face) pair is
   packed into one int32 key `tile·F + face`, one sort groups the pairs by tile (faces in
   index order within a tile), and each tile keeps its first `tile_capacity` faces. Pairs
   that did not fit are counted in `overflow`; nothing is dropped silently. Then each tile
   tests its pixels against its candidates only, and keeps, per pixel, the K candidates
   with the smallest depth (ties go to the lower face index). All shapes are static.
2. Geometry, with gradients. For the K selected faces of each pixel, barycentrics,
   depth and the distance to the face are recomputed from the (gathered) vertices with
   plain jnp, so autodiff gives gradients w.r.t. the vertices with memory O(B·H·W·K).

A face is kept for a pixel when the pixel centre is inside it (all barycentrics >= 0,
edges included) or, with a blur radius r > 0, when the centre is within r pixels of it.
Its depth is the depth at the point of the face nearest to the pixel centre (for a pixel
inside, the interpolated depth). Degenerate faces (|2·area| <= 1e-5 × the sum of squared
edge lengths), faces with a non-finite vertex, faces with a vertex at depth <= near under a
perspective camera and, with `cull_backfaces`, back faces are never drawn; fragments whose
depth lies outside [near, far] are discarded.

Winding: a face (v0, v1, v2) is front-facing when it appears counter-clockwise on the
screen (with y pointing down), i.e. when its normal (v1 − v0) × (v2 − v0) points towards
the camera (negative z in camera space).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.ad_checkpoint import checkpoint_name

from talkinghead_jax.render import camera as camera_lib

# A face is degenerate, and never drawn, when |2·signed area| <= this × the sum of its
# squared edge lengths (a sliver thinner than ~2e-5 of its length). Relative, because
# float32 rounding (FMA contraction under jit) leaves ~1e-7·|x|² of noise in the area of a
# face whose vertices coincide.
DEGENERATE_AREA = 1e-5
# Bounding boxes are widened by this many pixels before binning, so that rounding can
# only add candidates, never lose one (the exact per-pixel test decides).
_BIN_MARGIN = 1e-3
# Elements (tiles × pixels × candidates) evaluated per step of the tile loop.
_CHUNK_ELEMENTS = 1 << 21
# (tiles + 1) · faces must stay below this for the packed int32 sort key tile·F + face;
# beyond it binning falls back to a (slower) two-operand stable sort.
_PACKED_KEY_LIMIT = 2**31

# Columns of the per-face table used by the tile test.
_X0, _Y0, _X1, _Y1, _X2, _Y2, _A1, _C1, _A2, _C2, _D0, _D1, _D2, _L01, _L12, _L20 = range(16)
_TABLE_COLUMNS = 16


class Fragments(NamedTuple):
  """The K nearest faces of every pixel, nearest first.

  Leading axes (…) are the batch axes of the vertices (none for a single mesh).

  Attributes:
    face_index: (…, H, W, K) int32 face index, -1 where fewer than K faces cover the pixel.
    depth: (…, H, W, K) depth at the point of the face nearest to the pixel centre
      (camera-space z; +inf where face_index is -1).
    barycentrics: (…, H, W, K, 3) barycentric coordinates of the pixel centre
      (perspective-correct; negative outside the face; 0 where face_index is -1).
    closest_barycentrics: (…, H, W, K, 3) barycentrics of the point of the face nearest
      to the pixel centre (equal to `barycentrics` inside the face); use these to shade.
    signed_distance: (…, H, W, K) screen distance in pixels from the pixel centre to the
      face's boundary, negative inside (+inf where face_index is -1).
    overflow: (…,) int32 number of (tile, face) overlaps that did not fit (a tile's
      capacity or the pair buffer) and were ignored; 0 means the result is exact.
  """

  face_index: jax.Array
  depth: jax.Array
  barycentrics: jax.Array
  closest_barycentrics: jax.Array
  signed_distance: jax.Array
  overflow: jax.Array


class FragmentGeometry(NamedTuple):
  """Differentiable per-fragment quantities, as the shaders need them."""

  valid: jax.Array  # (…, H, W, K) bool: a face was selected
  inside: jax.Array  # (…, H, W, K) bool: the pixel centre is inside the face
  squared_distance: jax.Array  # (…, H, W, K) squared screen distance to the boundary
  depth: jax.Array  # (…, H, W, K)
  barycentrics: tuple[jax.Array, ...]  # 3 × (…, H, W, K) raw, perspective-correct
  closest_barycentrics: tuple[jax.Array, ...]  # 3 × (…, H, W, K) of the nearest point


def image_hw(image_size: int | tuple[int, int]) -> tuple[int, int]:
  """(H, W) from an int or a pair."""
  if isinstance(image_size, int):
    return image_size, image_size
  height, width = image_size
  return int(height), int(width)


def blur_radius(sigma: float, threshold: float = 1e-4) -> float:
  """Distance (px) beyond which SoftRas coverage sigmoid(−d²/sigma) drops below `threshold`."""
  if sigma <= 0:
    return 0.0
  return math.sqrt(sigma * math.log((1.0 - threshold) / threshold))


# --------------------------------------------------------------------------------------
# Face tables and the per-pixel test (shared by the tiled and the dense rasterizer).


def _face_corners(screen: jax.Array, faces: jax.Array) -> jax.Array:
  """(…, V, 3) screen vertices, (F, 3) faces → (…, F, 3 corners, 3 coords)."""
  return jnp.take(screen, faces, axis=-2)


def _signed_area2(corners: jax.Array) -> jax.Array:
  """2 × signed screen area; negative for counter-clockwise (front-facing) faces."""
  x, y = corners[..., 0], corners[..., 1]
  return (x[..., 1] - x[..., 0]) * (y[..., 2] - y[..., 0]) - (x[..., 2] - x[..., 0]) * (y[..., 1] - y[..., 0])


def _edge_lengths2(corners: jax.Array) -> jax.Array:
  """(…, 3) squared screen lengths of the edges 0→1, 1→2, 2→0."""
  xy = corners[..., :2]
  return jnp.sum((jnp.roll(xy, -1, axis=-2) - xy) ** 2, axis=-1)


def _drawable(corners: jax.Array, perspective: bool, near, cull_backfaces: bool) -> jax.Array:
  """(…, F) bool: the face can produce fragments at all."""
  area2 = _signed_area2(corners)
  scale = jnp.sum(_edge_lengths2(corners), axis=-1)
  ok = jnp.all(jnp.isfinite(corners), axis=(-1, -2)) & (jnp.abs(area2) > DEGENERATE_AREA * scale)
  if perspective:
    ok &= jnp.all(corners[..., 2] > jnp.asarray(near)[..., None, None], axis=-1)
  if cull_backfaces:
    ok &= area2 < 0
  return ok


def _face_table(corners: jax.Array, perspective: bool) -> jax.Array:
  """(…, F, 3, 3) corners → (…, F, 16) coefficients of the per-pixel test.

  Barycentrics are affine in the pixel position relative to v0, b1 = a1·dx + c1·dy,
  b2 = a2·dx + c2·dy, which keeps float32 rounding small. The interpolated value is the
  depth (orthographic) or the inverse depth (perspective), both affine on screen.
  """
  x, y, z = corners[..., 0], corners[..., 1], corners[..., 2]
  area2 = _signed_area2(corners)
  safe_area2 = jnp.where(area2 != 0, area2, 1.0)  # degenerate faces are masked elsewhere
  inv = 1.0 / safe_area2
  value = 1.0 / jnp.where(z > 0, z, 1.0) if perspective else z

  def inv_len2(a, b):
    length2 = (x[..., b] - x[..., a]) ** 2 + (y[..., b] - y[..., a]) ** 2
    return 1.0 / jnp.maximum(length2, 1e-20)

  columns = [
      x[..., 0], y[..., 0], x[..., 1], y[..., 1], x[..., 2], y[..., 2],
      (y[..., 2] - y[..., 0]) * inv, -(x[..., 2] - x[..., 0]) * inv,
      -(y[..., 1] - y[..., 0]) * inv, (x[..., 1] - x[..., 0]) * inv,
      value[..., 0], value[..., 1], value[..., 2],
      inv_len2(0, 1), inv_len2(1, 2), inv_len2(2, 0),
  ]
  return jnp.stack(columns, axis=-1)


def _segment(px, py, ax, ay, bx, by, inv_len2):
  """Squared distance from p to segment a→b and the parameter t of the nearest point."""
  ex, ey = bx - ax, by - ay
  dx, dy = px - ax, py - ay
  t = jnp.clip((dx * ex + dy * ey) * inv_len2, 0.0, 1.0)
  qx, qy = dx - t * ex, dy - t * ey
  return qx * qx + qy * qy, t


def _pixel_keys(px, py, columns, valid_face, value_lo, value_hi, perspective: bool, radius: float):
  """Depth keys of pixels against faces (broadcasting); +inf where the face is not kept.

  `columns` are the 16 face-table columns, each broadcasting against px, py. The returned
  key orders fragments nearest first: the depth (orthographic) or minus the inverse depth
  (perspective).
  """
  col = lambda i: columns[i]
  dx, dy = px - col(_X0), py - col(_Y0)
  b1 = col(_A1) * dx + col(_C1) * dy
  b2 = col(_A2) * dx + col(_C2) * dy
  b0 = 1.0 - b1 - b2
  inside = (b0 >= 0) & (b1 >= 0) & (b2 >= 0)
  value = b0 * col(_D0) + b1 * col(_D1) + b2 * col(_D2)
  keep = inside
  if radius > 0:
    d01, t01 = _segment(px, py, col(_X0), col(_Y0), col(_X1), col(_Y1), col(_L01))
    d12, t12 = _segment(px, py, col(_X1), col(_Y1), col(_X2), col(_Y2), col(_L12))
    d20, t20 = _segment(px, py, col(_X2), col(_Y2), col(_X0), col(_Y0), col(_L20))
    v01 = col(_D0) + t01 * (col(_D1) - col(_D0))
    v12 = col(_D1) + t12 * (col(_D2) - col(_D1))
    v20 = col(_D2) + t20 * (col(_D0) - col(_D2))
    nearest = jnp.where(d01 <= d12, jnp.where(d01 <= d20, v01, v20), jnp.where(d12 <= d20, v12, v20))
    d2 = jnp.minimum(jnp.minimum(d01, d12), d20)
    value = jnp.where(inside, value, nearest)
    keep = inside | (d2 <= radius * radius)
  keep &= valid_face & (value >= value_lo) & (value <= value_hi)
  key = -value if perspective else value
  return jnp.where(keep, key, jnp.inf)


def _value_bounds(camera, perspective: bool):
  """Bounds of the interpolated value (depth, or inverse depth) for [near, far]."""
  near = jnp.asarray(camera.near, jnp.float32)
  far = jnp.asarray(camera.far, jnp.float32)
  if perspective:
    return 1.0 / far, 1.0 / near
  return near, far


def _select_nearest(keys: jax.Array, k: int) -> jax.Array:
  """Indices of the k smallest keys along the last axis (ties → lower index); -1 if +inf."""
  if k == 1:
    # Two plain reductions (min, then the first position holding it) vectorise far better
    # on CPU than one variadic argmin reduction.
    smallest = jnp.min(keys, axis=-1, keepdims=True)
    positions = lax.broadcasted_iota(jnp.int32, keys.shape, keys.ndim - 1)
    index = jnp.min(jnp.where(keys == smallest, positions, keys.shape[-1] - 1), axis=-1, keepdims=True)
  else:
    index = lax.top_k(-keys, k)[1]
  chosen = jnp.take_along_axis(keys, index, axis=-1)
  return jnp.where(jnp.isfinite(chosen), index, -1).astype(jnp.int32)


# --------------------------------------------------------------------------------------
# Binning.


def _tile_rects(corners, drawable, *, height, width, tile, radius):
  """(F, 3, 3) corners → tile rectangles tx0, tx1, ty0, ty1 (inclusive) and `overlaps`.

  A face touches every tile that holds a pixel centre inside its bounding box widened by
  `radius`; faces that touch no pixel of the image, or are not drawable, overlap nothing.
  """

  def pixel_range(lo, hi, size):
    # Pixel centres c + 0.5 with lo − r <= c + 0.5 <= hi + r, clamped to the image.
    first = jnp.ceil(jnp.clip(lo - radius - 0.5 - _BIN_MARGIN, -1.0, size))
    last = jnp.floor(jnp.clip(hi + radius - 0.5 + _BIN_MARGIN, -1.0, size))
    first = jnp.maximum(first, 0).astype(jnp.int32)
    last = jnp.minimum(last, size - 1).astype(jnp.int32)
    return first, last

  col0, col1 = pixel_range(jnp.min(corners[..., 0], -1), jnp.max(corners[..., 0], -1), width)
  row0, row1 = pixel_range(jnp.min(corners[..., 1], -1), jnp.max(corners[..., 1], -1), height)
  overlaps = drawable & (col0 <= col1) & (row0 <= row1)
  return col0 // tile, col1 // tile, row0 // tile, row1 // tile, overlaps


def _bin_faces(corners, drawable, *, height, width, tile, capacity, num_slots, radius):
  """One image: (F, 3, 3) corners → (tiles, capacity) face lists (-1 empty), overflow.

  The number of pairs a face makes is known up front (its tile rectangle), so pairs are
  enumerated into a static buffer of `num_slots` slots. With tiles·capacity slots, if
  every tile fits its capacity the pairs fit the buffer too; a smaller buffer is faster
  (sort and gathers scale with it) but can run out. Either excess is counted.
  """
  num_faces = corners.shape[0]
  tiles_y, tiles_x = -(-height // tile), -(-width // tile)
  num_tiles = tiles_y * tiles_x
  tx0, tx1, ty0, ty1, overlaps = _tile_rects(corners, drawable, height=height, width=width, tile=tile,
                                             radius=radius)
  span_x = tx1 - tx0 + 1
  pairs = jnp.where(overlaps, span_x * (ty1 - ty0 + 1), 0)
  start = jnp.cumsum(pairs) - pairs
  total = jnp.sum(pairs)

  # Slot s belongs to the last face whose first slot is <= s.
  face_ids = jnp.arange(num_faces, dtype=jnp.int32)
  marks = jnp.full((num_slots,), -1, jnp.int32).at[start].max(
      jnp.where(pairs > 0, face_ids, -1), mode="drop")
  slot_face = jnp.maximum(lax.cummax(marks), 0)
  slots = jnp.arange(num_slots, dtype=jnp.int32)
  local = slots - start[slot_face]
  width_in_tiles = span_x[slot_face]
  tile_y = ty0[slot_face] + local // width_in_tiles
  tile_x = tx0[slot_face] + local % width_in_tiles
  in_use = slots < total
  tile_id = jnp.where(in_use, tile_y * tiles_x + tile_x, num_tiles)

  if (num_tiles + 1) * num_faces < _PACKED_KEY_LIMIT:
    # One packed int32 key sorts several times faster than a stable two-operand sort.
    packed = lax.sort(tile_id * num_faces + slot_face)
    sorted_tile, sorted_face = packed // num_faces, packed % num_faces
  else:
    sorted_tile, sorted_face = lax.sort((tile_id, slot_face), num_keys=1, is_stable=True)

  tile_ids = jnp.arange(num_tiles, dtype=sorted_tile.dtype)
  first = jnp.searchsorted(sorted_tile, tile_ids, side="left").astype(jnp.int32)
  last = jnp.searchsorted(sorted_tile, tile_ids, side="right").astype(jnp.int32)
  kept = jnp.minimum(last - first, capacity)
  positions = first[:, None] + jnp.arange(capacity, dtype=jnp.int32)[None, :]
  lists = sorted_face[jnp.minimum(positions, num_slots - 1)]
  lists = jnp.where(jnp.arange(capacity)[None, :] < kept[:, None], lists, -1)
  overflow = (total - jnp.sum(kept)).astype(jnp.int32)
  return lists.astype(jnp.int32), overflow


def tile_counts(vertices, faces, camera=None, image_size: int | tuple[int, int] = 256, *, tile_size: int = 8,
                blur_radius: float = 0.0, cull_backfaces: bool = False) -> jax.Array:
  """Exact number of faces binned to every tile: (…, tiles_y, tiles_x) int32.

  The capacity a mesh needs at a pose is the maximum of this; see `suggest_capacity`.
  """
  vertices, faces, camera, single = prepare_mesh(vertices, faces, camera)
  counts = _tile_counts(vertices, faces, camera, image_hw(image_size),
                        int(tile_size), float(blur_radius), bool(cull_backfaces))
  return counts[0] if single else counts


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _tile_counts(vertices, faces, camera, image_size, tile, radius, cull_backfaces):
  height, width = image_size
  screen = camera.project(vertices)
  corners = _face_corners(screen, faces)
  near = jnp.broadcast_to(jnp.asarray(camera.near, jnp.float32), (screen.shape[0],))
  drawable = _drawable(corners, camera.perspective, near, cull_backfaces)
  tiles_y, tiles_x = -(-height // tile), -(-width // tile)

  def one(c, d):
    tx0, tx1, ty0, ty1, overlaps = _tile_rects(c, d, height=height, width=width, tile=tile, radius=radius)
    # 2D difference array: +1 at the rectangle's corner, −1 past its ends, then prefix sums.
    diff = jnp.zeros((tiles_y + 1, tiles_x + 1), jnp.int32)
    ones = overlaps.astype(jnp.int32)
    diff = diff.at[ty0, tx0].add(ones).at[ty0, tx1 + 1].add(-ones)
    diff = diff.at[ty1 + 1, tx0].add(-ones).at[ty1 + 1, tx1 + 1].add(ones)
    return jnp.cumsum(jnp.cumsum(diff, 0), 1)[:tiles_y, :tiles_x]

  return jax.vmap(one)(corners, drawable)


class Capacity(NamedTuple):
  """Static sizes for `rasterize` / `render_mesh`."""

  tile_capacity: int  # faces a tile can hold
  pair_capacity: int  # (tile, face) pairs an image can hold


def suggest_capacity(vertices, faces, camera=None, image_size: int | tuple[int, int] = 256, *,
                     tile_size: int = 8, blur_radius: float = 0.0, cull_backfaces: bool = False,
                     headroom: float = 1.25, multiple: int = 32) -> Capacity:
  """Capacities that hold these (sample) meshes with some headroom and no overflow.

  Pass a batch that spans the poses you will render (turned heads pack more faces per
  tile than frontal ones). tile_capacity = the fullest tile × headroom, pair_capacity =
  the largest total of pairs in an image × headroom, both rounded up to `multiple`.
  Runs eagerly (the result sets static shapes).
  """
  counts = tile_counts(vertices, faces, camera, image_size, tile_size=tile_size, blur_radius=blur_radius,
                       cull_backfaces=cull_backfaces)
  per_image = counts.reshape((-1, counts.shape[-2] * counts.shape[-1]))

  def round_up(value):
    return max(multiple, int(math.ceil(value * headroom / multiple)) * multiple)

  return Capacity(tile_capacity=round_up(int(jnp.max(per_image))),
                  pair_capacity=round_up(int(jnp.max(jnp.sum(per_image, -1)))))


# --------------------------------------------------------------------------------------
# Selection (no gradients).


def _chunk_size(num_items: int, per_item: int) -> int:
  """Items per step of a `lax.map` so that a step handles about _CHUNK_ELEMENTS elements."""
  return max(1, min(num_items, _CHUNK_ELEMENTS // max(per_item, 1)))


def pair_slots(image_size, tile_size: int, tile_capacity: int, pair_capacity: int | None, num_faces: int) -> int:
  """Static size of the (tile, face) pair buffer: `pair_capacity` or tiles × capacity."""
  height, width = image_hw(image_size)
  num_tiles = (-(-height // tile_size)) * (-(-width // tile_size))
  full = num_tiles * min(tile_capacity, num_faces)
  return full if pair_capacity is None else max(1, min(int(pair_capacity), full))


def select_faces(screen, faces, camera, image_size, *, faces_per_pixel=1, radius=0.0, tile_size=8,
                 tile_capacity=256, pair_capacity=None, cull_backfaces=False):
  """Tiled selection: (B, V, 3) screen vertices → (B, H, W, K) face indices, (B,) overflow.

  No gradients flow through the result (face indices are discrete).
  """
  height, width = image_hw(image_size)
  perspective = camera.perspective
  screen = lax.stop_gradient(screen)
  batch, num_faces = screen.shape[0], faces.shape[0]
  tile = int(tile_size)
  tiles_y, tiles_x = -(-height // tile), -(-width // tile)
  num_tiles = tiles_y * tiles_x
  capacity = int(min(tile_capacity, num_faces))
  num_slots = pair_slots(image_size, tile, capacity, pair_capacity, num_faces)

  corners = _face_corners(screen, faces)  # (B, F, 3, 3)
  near = jnp.broadcast_to(jnp.asarray(camera.near, jnp.float32), (batch,))
  drawable = _drawable(corners, perspective, near, cull_backfaces)
  lists, overflow = jax.vmap(
      lambda c, d: _bin_faces(c, d, height=height, width=width, tile=tile, capacity=capacity,
                             num_slots=num_slots, radius=radius)
  )(corners, drawable)

  # Flatten the batch into one list of tiles; face ids index the flattened face table,
  # kept as separate columns (1D gathers are the fast kind on CPU). Lists only hold
  # drawable faces: binning skipped the others.
  table = _face_table(corners, perspective).reshape(batch * num_faces, _TABLE_COLUMNS)
  columns = [table[:, i] for i in range(_TABLE_COLUMNS)]
  offsets = (jnp.arange(batch, dtype=jnp.int32) * num_faces)[:, None, None]
  lists = jnp.where(lists >= 0, lists + offsets, -1).reshape(batch * num_tiles, capacity)
  lo, hi = _value_bounds(camera, perspective)
  lo = jnp.repeat(jnp.broadcast_to(lo, (batch,)), num_tiles)
  hi = jnp.repeat(jnp.broadcast_to(hi, (batch,)), num_tiles)
  ty, tx = jnp.divmod(jnp.arange(num_tiles, dtype=jnp.int32), tiles_x)
  origin = jnp.stack([tx * tile, ty * tile], -1).astype(jnp.float32)
  origin = jnp.tile(origin, (batch, 1))
  offs = jnp.arange(tile, dtype=jnp.float32) + 0.5
  local_y, local_x = jnp.meshgrid(offs, offs, indexing="ij")
  local_x, local_y = local_x.reshape(-1, 1), local_y.reshape(-1, 1)
  k = int(faces_per_pixel)

  def tile_step(args):
    candidates, tile_origin, value_lo, value_hi = args
    ok = candidates >= 0
    safe = jnp.maximum(candidates, 0)
    rows = [column.at[safe].get(mode="promise_in_bounds")[None] for column in columns]  # 16 × (1, C)
    keys = _pixel_keys(local_x + tile_origin[0], local_y + tile_origin[1], rows, ok[None],
                       value_lo, value_hi, perspective, radius)  # (T², C)
    if k > capacity:
      keys = jnp.pad(keys, ((0, 0), (0, k - capacity)), constant_values=jnp.inf)
      candidates = jnp.pad(candidates, (0, k - capacity), constant_values=-1)
    chosen = _select_nearest(keys, k)  # (T², K) positions in the list
    return jnp.where(chosen >= 0, candidates[jnp.maximum(chosen, 0)], -1)

  chunk = _chunk_size(batch * num_tiles, tile * tile * capacity)
  chosen = lax.map(tile_step, (lists, origin, lo, hi), batch_size=chunk)  # (B·tiles, T², K)
  chosen = jnp.where(chosen >= 0, chosen % num_faces, -1)  # back to per-image face ids
  chosen = chosen.reshape(batch, tiles_y, tiles_x, tile, tile, k)
  chosen = chosen.transpose(0, 1, 3, 2, 4, 5).reshape(batch, tiles_y * tile, tiles_x * tile, k)
  return chosen[:, :height, :width], overflow


def select_faces_dense(screen, faces, camera, image_size, *, faces_per_pixel=1, radius=0.0,
                       cull_backfaces=False, rows_per_step=None):
  """Reference selection: every pixel against every face (cost and memory O(H·W·F)).

  Same result as `select_faces` with enough capacity; used as the baseline in
  `talkinghead bench render` and by tests.
  """
  height, width = image_hw(image_size)
  perspective = camera.perspective
  screen = lax.stop_gradient(screen)
  batch, num_faces = screen.shape[0], faces.shape[0]
  corners = _face_corners(screen, faces)
  near = jnp.broadcast_to(jnp.asarray(camera.near, jnp.float32), (batch,))
  drawable = _drawable(corners, perspective, near, cull_backfaces)
  table = _face_table(corners, perspective)  # (B, F, 16)
  lo, hi = _value_bounds(camera, perspective)
  lo = jnp.broadcast_to(lo, (batch,))[:, None, None]
  hi = jnp.broadcast_to(hi, (batch,))[:, None, None]
  centres = camera_lib.pixel_centers(height, width)
  rows = rows_per_step or _chunk_size(height, width * num_faces * batch)
  k = int(faces_per_pixel)

  def row_step(row):  # row: (W, 2) → (B, W, K)
    columns = [table[:, None, :, i] for i in range(_TABLE_COLUMNS)]
    keys = _pixel_keys(row[None, :, 0:1], row[None, :, 1:2], columns, drawable[:, None],
                       lo, hi, perspective, radius)  # (B, W, F)
    if k > num_faces:
      keys = jnp.pad(keys, ((0, 0), (0, 0), (0, k - num_faces)), constant_values=jnp.inf)
    return _select_nearest(keys, k)

  chosen = lax.map(row_step, centres, batch_size=rows)  # (H, B, W, K)
  zeros = jnp.zeros((batch,), jnp.int32)
  return jnp.moveaxis(chosen, 0, 1), zeros


# --------------------------------------------------------------------------------------
# Geometry of the selected fragments (differentiable).

GATHER_NAME = "fragment_gather"

# Gathers below work on separate 1D columns (structure of arrays): on CPU, XLA gathers and
# scatters of scalars are several times faster than of short rows.


def face_columns(values: jax.Array, faces: jax.Array) -> list[jax.Array]:
  """(B, V, D) per-vertex values → 3·D columns (B·F,), corner-major: [corner0 d0, d1, …, corner1 …].

  Each column is one 1D gather from one contiguous (B·V,) channel plane.
  """
  batch, num_vertices, depth = values.shape
  planes = jnp.moveaxis(values, -1, 0).reshape(depth, batch * num_vertices)
  offsets = (jnp.arange(batch, dtype=jnp.int32) * num_vertices)[:, None]
  columns = []
  for corner in range(3):
    vertex_ids = (offsets + faces[None, :, corner]).reshape(-1)
    columns.extend(planes[d].at[vertex_ids].get(mode="promise_in_bounds") for d in range(depth))
  return columns


def fragment_ids(face_index: jax.Array, num_faces: int) -> jax.Array:
  """(B, H, W, K) face indices → indices into (B·F,) face columns (empty → the image's face 0)."""
  batch = face_index.shape[0]
  offsets = (jnp.arange(batch, dtype=jnp.int32) * num_faces).reshape((batch,) + (1,) * (face_index.ndim - 1))
  return jnp.maximum(face_index, 0) + offsets


def gather_columns(columns: list[jax.Array], ids: jax.Array) -> list[jax.Array]:
  """Each (B·F,) column at the fragments' `ids` → list of (B, H, W, K)."""
  # Named, so that a checkpoint policy can keep these (costly) gathers for the backward pass.
  return [checkpoint_name(column.at[ids].get(mode="promise_in_bounds"), GATHER_NAME) for column in columns]


def interpolate_columns(corner_values: list[jax.Array], bary: tuple[jax.Array, ...]) -> list[jax.Array]:
  """Corner-major columns (3·D of (B, H, W, K)) and 3 barycentrics → D interpolated arrays."""
  depth = len(corner_values) // 3
  return [bary[0] * corner_values[d] + bary[1] * corner_values[depth + d] + bary[2] * corner_values[2 * depth + d]
          for d in range(depth)]


# A well-formed stand-in triangle for empty fragments, so that no NaN reaches a gradient.
_DUMMY_TRIANGLE = ((0.0, 0.0, 1.0), (1.0, 0.0, 1.0), (0.0, 1.0, 1.0))


def fragment_geometry(screen: jax.Array, faces: jax.Array, face_index: jax.Array,
                      perspective: bool) -> FragmentGeometry:
  """(B, V, 3) screen vertices + (B, H, W, K) face indices → differentiable geometry."""
  return geometry_from_columns(face_columns(screen, faces), face_index, perspective)


def geometry_from_columns(screen_columns: list[jax.Array], face_index: jax.Array,
                          perspective: bool) -> FragmentGeometry:
  """Like `fragment_geometry`, from the 9 face columns of the screen vertices."""
  height, width = face_index.shape[1:3]
  valid = face_index >= 0
  ids = fragment_ids(face_index, screen_columns[0].shape[0] // face_index.shape[0])
  gathered = gather_columns(screen_columns, ids)
  dummy = [value for corner in _DUMMY_TRIANGLE for value in corner]
  x0, y0, z0, x1, y1, z1, x2, y2, z2 = [jnp.where(valid, g, d) for g, d in zip(gathered, dummy)]
  centres = camera_lib.pixel_centers(height, width)
  px = centres[None, :, :, None, 0]
  py = centres[None, :, :, None, 1]
  area2 = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
  dx, dy = px - x0, py - y0
  b1 = (dx * (y2 - y0) - (x2 - x0) * dy) / area2
  b2 = ((x1 - x0) * dy - dx * (y1 - y0)) / area2
  b0 = 1.0 - b1 - b2
  inside = (b0 >= 0) & (b1 >= 0) & (b2 >= 0)

  def seg(ax, ay, bx, by):
    return _segment(px, py, ax, ay, bx, by, 1.0 / ((bx - ax) ** 2 + (by - ay) ** 2))

  (d01, t01), (d12, t12), (d20, t20) = seg(x0, y0, x1, y1), seg(x1, y1, x2, y2), seg(x2, y2, x0, y0)
  # Barycentrics of the nearest boundary point: on edge a→b, (1 − t) at a and t at b.
  use01 = (d01 <= d12) & (d01 <= d20)
  use12 = ~use01 & (d12 <= d20)
  use20 = ~use01 & ~use12
  zero = jnp.zeros_like(t01)
  c0 = jnp.where(use01, 1.0 - t01, jnp.where(use20, t20, zero))
  c1 = jnp.where(use01, t01, jnp.where(use12, 1.0 - t12, zero))
  c2 = jnp.where(use12, t12, jnp.where(use20, 1.0 - t20, zero))
  squared_distance = jnp.minimum(jnp.minimum(d01, d12), d20)
  raw = (b0, b1, b2)
  closest = tuple(jnp.where(inside, b, c) for b, c in zip(raw, (c0, c1, c2)))

  if perspective:
    weights = (1.0 / z0, 1.0 / z1, 1.0 / z2)

    def correct(bary):
      weighted = [b * w for b, w in zip(bary, weights)]
      total = weighted[0] + weighted[1] + weighted[2]
      return tuple(w / total for w in weighted), 1.0 / total

    raw, _ = correct(raw)
    closest, depth = correct(closest)
  else:
    depth = closest[0] * z0 + closest[1] * z1 + closest[2] * z2

  mask = lambda a, empty: jnp.where(valid, a, empty)
  return FragmentGeometry(
      valid=valid,
      inside=inside & valid,
      squared_distance=mask(squared_distance, jnp.inf),
      depth=mask(depth, jnp.inf),
      barycentrics=tuple(mask(b, 0.0) for b in raw),
      closest_barycentrics=tuple(mask(b, 0.0) for b in closest),
  )


def _safe_sqrt(x):
  positive = x > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def to_fragments(geometry: FragmentGeometry, face_index: jax.Array, overflow: jax.Array) -> Fragments:
  distance = _safe_sqrt(jnp.where(geometry.valid, geometry.squared_distance, 1.0))
  signed = jnp.where(geometry.inside, -distance, distance)
  return Fragments(
      face_index=face_index,
      depth=geometry.depth,
      barycentrics=jnp.stack(geometry.barycentrics, -1),
      closest_barycentrics=jnp.stack(geometry.closest_barycentrics, -1),
      signed_distance=jnp.where(geometry.valid, signed, jnp.inf),
      overflow=overflow,
  )


# --------------------------------------------------------------------------------------
# Public entry point.


def prepare_mesh(vertices, faces, camera):
  """The public entry points' common start: float32/int32 arrays of checked shapes, a
  leading batch axis on the vertices, and the default camera.

  Returns (vertices (B, V, 3), faces, camera, single) where `single` says the caller gave
  (V, 3) vertices and expects unbatched results.
  """
  camera = camera_lib.OrthographicCamera() if camera is None else camera
  vertices = jnp.asarray(vertices, jnp.float32)
  faces = jnp.asarray(faces, jnp.int32)
  check_mesh(vertices, faces)
  single = vertices.ndim == 2
  return (vertices[None] if single else vertices), faces, camera, single


def check_mesh(vertices, faces) -> None:
  """Raises ValueError on shapes the rasterizer cannot take."""
  if vertices.ndim not in (2, 3) or vertices.shape[-1] != 3:
    raise ValueError(f"vertices must be (V, 3) or (B, V, 3), got {tuple(vertices.shape)}")
  if faces.ndim != 2 or faces.shape[-1] != 3:
    raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
  if faces.shape[0] == 0:
    raise ValueError("faces is empty")


def rasterize(vertices, faces, camera=None, image_size: int | tuple[int, int] = 256, *,
              faces_per_pixel: int = 1, blur_radius: float = 0.0, tile_size: int = 8,
              tile_capacity: int = 256, pair_capacity: int | None = None, cull_backfaces: bool = False,
              dense: bool = False) -> Fragments:
  """Per-pixel fragments of the K nearest faces by depth.

  Args:
    vertices: (V, 3) or (B, V, 3) world-space vertices (batched meshes share `faces`).
    faces: (F, 3) int vertex indices.
    camera: an `OrthographicCamera` (default: pixel units) or `PerspectiveCamera`.
    image_size: H = W, or (H, W).
    faces_per_pixel: K.
    blur_radius: also keep faces whose boundary is within this many pixels of a pixel
      centre (0: only faces that contain it).
    tile_size: side of a screen tile in pixels.
    tile_capacity: faces a tile can hold; the excess is reported in `overflow`.
    pair_capacity: (tile, face) pairs an image can hold (default tiles × tile_capacity,
      which never overflows unless a tile does); smaller is faster, see `suggest_capacity`.
    cull_backfaces: drop faces that appear clockwise on screen.
    dense: test every pixel against every face instead (reference; O(H·W·F)).

  Returns:
    `Fragments`, differentiable w.r.t. the vertices (through depth, barycentrics and
    distances; face indices are discrete).
  """
  vertices, faces, camera, single = prepare_mesh(vertices, faces, camera)
  fragments = _rasterize(vertices, faces, camera, image_hw(image_size),
                         int(faces_per_pixel), float(blur_radius), int(tile_size), int(tile_capacity),
                         None if pair_capacity is None else int(pair_capacity), bool(cull_backfaces), bool(dense))
  if single:
    fragments = jax.tree_util.tree_map(lambda a: a[0], fragments)
  return fragments


def select(screen, faces, camera, image_size, *, faces_per_pixel, radius, tile_size, tile_capacity,
           pair_capacity, cull_backfaces, dense):
  """Selection by the tiled or the dense method (see `select_faces`)."""
  if dense:
    return select_faces_dense(screen, faces, camera, image_size, faces_per_pixel=faces_per_pixel,
                              radius=radius, cull_backfaces=cull_backfaces)
  return select_faces(screen, faces, camera, image_size, faces_per_pixel=faces_per_pixel, radius=radius,
                      tile_size=tile_size, tile_capacity=tile_capacity, pair_capacity=pair_capacity,
                      cull_backfaces=cull_backfaces)


def _rasterize_impl(vertices, faces, camera, image_size, faces_per_pixel, radius, tile_size, tile_capacity,
                    pair_capacity, cull_backfaces, dense):
  screen = camera.project(vertices)
  face_index, overflow = select(screen, faces, camera, image_size, faces_per_pixel=faces_per_pixel,
                                radius=radius, tile_size=tile_size, tile_capacity=tile_capacity,
                                pair_capacity=pair_capacity, cull_backfaces=cull_backfaces, dense=dense)
  geometry = fragment_geometry(screen, faces, face_index, camera.perspective)
  return to_fragments(geometry, face_index, overflow)


_rasterize = jax.jit(_rasterize_impl, static_argnums=(3, 4, 5, 6, 7, 8, 9, 10))
