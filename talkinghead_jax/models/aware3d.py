"""The 3D-aware module (paper §4.1, Eq. 1; UPSTREAM_NOTES.md §2.4): the key frame's face, re-posed.

The key frame's position map (from the unprojection net, or SynthTalk's ground truth) and its
face mask become a mesh whose vertices carry the key frame's colours; the mesh is moved from
the key pose to each target pose, V_t = R_tᵀ(R_key·V + t_key − t_t) (Eq. 1,
`geometry.rigid.repose`), and rendered with the project's soft rasterizer under an
orthographic camera in crop pixels (upstream's SoftRas setup, world = pixel units). Its
companion, the rendered face's landmark image, is the key frame's frontal landmarks seen at
the target pose, `rigid.unfrontalize(front_key, pose_t)`, drawn by `geometry.landmarks`.

Upstream pre-rendered these images offline with CUDA SoftRas, without gradients. Here the
whole thing is one jit-able function of arrays, so it runs inside the training step (or in
the input pipeline), and the image is differentiable w.r.t. the position map, the colours
and the poses.

Static topology. Shapes must be static under jit, but each clip has its own face mask. The
mesh is therefore the *full* UV grid of the (optionally strided) position map, triangulated
once (`geometry.mesh.grid_topology`); texels outside the mask are moved to NaN after
re-posing, and the rasterizer never draws a face with a non-finite vertex. The faces that
remain are exactly those of `position_map_to_mesh(map, mask)`. NaN never reaches a gradient:
the masking `where` passes no cotangent to the masked branch, and the rasterizer replaces
the corners of empty fragments with a dummy triangle before any arithmetic.

Also here: upstream's `--crop_ref` helpers (the mouth and eye boxes of `util.get_roi`,
blacked out in the warping reference, the rendered face and the cropped target) and the
"cropped target" that the rendered-face flow is supervised against.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from talkinghead_jax import render
from talkinghead_jax.geometry import landmarks as landmarks_lib
from talkinghead_jax.geometry import mesh as mesh_lib
from talkinghead_jax.geometry import rigid

MODES = ("soft", "hard")
# Upstream's boxes (`util.get_roi`): margins in pixels (at 256 px) around the points' bounding boxes.
RIGHT_EYE_POINTS = tuple(range(36, 42))
LEFT_EYE_POINTS = tuple(range(42, 48))
MOUTH_BOX_POINTS = (48, 50, 51, 54, 57)
EYE_MARGIN = 2
MOUTH_MARGIN = 5


class Aware3DOutput(NamedTuple):
  """What the 3D-aware module gives the generator; leading axes (B,) or (B, T).

  Attributes:
    image: (…, S, S, 3) the rendered face in [-1, 1] (when the key image is), -1 (black)
      where no face is drawn. As upstream this is SoftRas' colour channels: the colour
      of the fragments under a pixel, not faded by coverage.
    mask: (…, S, S) coverage (SoftRas alpha) in [0, 1]; exactly 0/1 in hard mode.
    landmarks: (…, 68, 3) the key frame's frontal landmarks seen at the target pose (crop px).
    landmark_image: (…, S, S, 1) those landmarks drawn as a landmark image, {0, 1}; None
      when `Aware3D.draw_landmarks` is off.
  """

  image: jax.Array
  mask: jax.Array
  landmarks: jax.Array
  landmark_image: jax.Array


def _full_grid_faces(size: int) -> np.ndarray:
  """(F, 3) faces of the complete size×size UV grid (vertex i·size + j = texel (i, j))."""
  _, faces = mesh_lib.grid_topology(np.ones((size, size), bool))
  return faces


def draw_landmark_images(points: jax.Array, size: int, thickness: int = 1,
                         include_forehead: bool = True) -> jax.Array:
  """(…, 68, ≥2) landmarks → (…, size, size, 1) landmark images, callable under jit.

  The drawing is `geometry.landmarks.draw_landmark_images` itself (numpy, on the host, through
  `jax.pure_callback`), so images drawn here and in the data pipeline are identical. No
  gradient: a landmark image is a condition, not a prediction.
  """
  points = jax.lax.stop_gradient(points)
  lead = points.shape[:-2]

  def draw(host_points):
    host_points = np.asarray(host_points)
    flat = host_points.reshape((-1,) + host_points.shape[-2:])
    images = landmarks_lib.draw_landmark_images(flat, size, thickness, include_forehead)
    return images.reshape(host_points.shape[:-2] + (size, size, 1)).astype(np.float32)

  shape = jax.ShapeDtypeStruct(lead + (size, size, 1), jnp.float32)
  return jax.pure_callback(draw, shape, points, vmap_method="expand_dims")


@dataclasses.dataclass(frozen=True)
class Aware3D:
  """Renders the key frame's textured face at target poses; see the module docstring.

  Attributes:
    image_size: S, the side of the rendered (and key) images.
    mode: "soft" (SoftRas aggregation, upstream's renderer settings) or "hard" (z-buffer).
    softras_sigma: SoftRas' sigma in NDC² (upstream used SoftRas' default 1e-5); converted to
      px² with `render.sigma_from_softras`.
    gamma: SoftRas' depth-softmax temperature (default 1e-4, SoftRas' and upstream's).
    faces_per_pixel: K nearest faces per pixel in soft mode (hard mode uses 1).
    depth_span: far − near in units of S, centred on z = 0. SoftRas' orthographic camera had
      near 1, far 100 in NDC units (S/2 px each): 49.5·S px, which fixes how strongly gamma
      prefers the nearer fragment.
    grid_stride: use every n-th texel of the position map in both directions (n² fewer
      triangles; the 256² map has ~80k triangles at stride 1).
    tile_size, tile_capacity: the rasterizer's binning (docs/rendering.md on sizing them).
    landmark_thickness: line width of the landmark image, px.
    include_forehead: draw upstream's synthetic forehead in the landmark image.
    draw_landmarks: draw the landmark image here (a host callback: under a sharded jit its
      points are gathered to one device); off, `landmark_image` is None and the input
      pipeline can draw it from the same points (`rigid.unfrontalize(front_key, pose_t)`).
    warn_on_overflow: `render_mesh`'s overflow warning (also a host callback); a sharded
      training step may turn it off once capacities are sized (docs/rendering.md).
  """

  image_size: int
  mode: str = "soft"
  softras_sigma: float = 1e-5
  gamma: float = 1e-4
  faces_per_pixel: int = 8
  depth_span: float = 49.5
  grid_stride: int = 1
  tile_size: int = 8
  tile_capacity: int = 256
  landmark_thickness: int = 1
  include_forehead: bool = True
  draw_landmarks: bool = True
  warn_on_overflow: bool = True

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
    if self.grid_stride < 1 or self.image_size < 1:
      raise ValueError("image_size and grid_stride must be positive")

  def camera(self) -> render.OrthographicCamera:
    """World = crop pixels (upstream's view), depths in [−span·S/2, span·S/2]."""
    half = 0.5 * self.depth_span * self.image_size
    return render.OrthographicCamera(near=-half, far=half)

  def render_options(self) -> dict:
    if self.mode == "hard":
      return dict(sigma=0.0, gamma=0.0, faces_per_pixel=1)
    return dict(sigma=render.sigma_from_softras(self.softras_sigma, self.image_size), gamma=self.gamma,
                faces_per_pixel=self.faces_per_pixel)

  def key_frame_mesh(self, position_map: jax.Array, key_image: jax.Array):
    """(B, P, P, 3) map + (B, S, S, 3) image → vertices (B, V, 3), colours (B, V, 3), faces (F, 3).

    Vertices are every `grid_stride`-th texel, row-major; colours are the key image sampled
    bilinearly at the vertices' x, y (`geometry.mesh.vertex_colors`; PRNet took the nearest
    pixel).
    """
    grid = position_map[:, ::self.grid_stride, ::self.grid_stride]
    batch, rows, cols, _ = grid.shape
    if rows != cols:
      raise ValueError(f"the position map must be square, got {position_map.shape}")
    vertices = grid.reshape(batch, rows * cols, 3)
    colors = jax.vmap(mesh_lib.vertex_colors)(key_image, vertices)
    return vertices, colors, jnp.asarray(_full_grid_faces(rows))

  def __call__(self, position_map: jax.Array, face_mask: jax.Array, key_image: jax.Array,
               key_pose: jax.Array, target_pose: jax.Array, key_front: jax.Array) -> Aware3DOutput:
    """Renders B key frames at their target poses.

    Args:
      position_map: (B, P, P, 3) the key frame's position map in crop pixels (posed as the
        key frame is).
      face_mask: (B, P, P) or (P, P) (a trailing axis of 1 is allowed), the texels that
        belong to the face: bool, or float with the face > 0.5.
      key_image: (B, S, S, 3) the key frame in [-1, 1].
      key_pose: (B, 6) the key frame's pose (rotation vector, translation; front = R·l + t).
      target_pose: (B, 6) or (B, T, 6) the poses to render at.
      key_front: (B, 68, 3) the key frame's frontal landmarks.

    Returns:
      `Aware3DOutput` with leading axes (B,) or (B, T), like `target_pose`.
    """
    size = self.image_size
    position_map, key_image, key_pose, target_pose, key_front = (
        jnp.asarray(a, jnp.float32) for a in (position_map, key_image, key_pose, target_pose, key_front))
    face_mask = jnp.asarray(face_mask)
    if face_mask.shape[-1:] == (1,) and face_mask.shape[-3:-1] == position_map.shape[1:3]:
      face_mask = face_mask[..., 0]  # the input pipeline's (…, P, P, 1) float mask
    if face_mask.dtype != jnp.bool_:
      face_mask = face_mask > 0.5
    if key_image.shape[1:3] != (size, size):
      raise ValueError(f"key image must be {size}×{size}, got {key_image.shape}")
    single_target = target_pose.ndim == 2
    targets = target_pose[:, None] if single_target else target_pose
    batch, count = targets.shape[:2]

    vertices, colors, faces = self.key_frame_mesh(position_map, key_image)
    mask = jnp.broadcast_to(face_mask, position_map.shape[:3])[:, ::self.grid_stride, ::self.grid_stride]
    mask = mask.reshape(batch, 1, -1, 1)
    posed = rigid.repose(vertices[:, None], key_pose[:, None], targets)  # (B, T, V, 3)
    # After re-posing, so that no NaN meets the poses (their gradients stay finite).
    posed = jnp.where(mask, posed, jnp.nan)
    num_vertices = vertices.shape[1]
    colors = jnp.broadcast_to(colors[:, None], (batch, count, num_vertices, 3))
    rgba = render.render_mesh(
        posed.reshape(batch * count, num_vertices, 3), faces, colors.reshape(batch * count, num_vertices, 3),
        camera=self.camera(), image_size=size, background=-1.0, tile_size=self.tile_size,
        tile_capacity=self.tile_capacity, warn_on_overflow=self.warn_on_overflow, **self.render_options())
    rgba = rgba.reshape(batch, count, size, size, 4)

    points = rigid.unfrontalize(key_front[:, None], targets)  # (B, T, 68, 3)
    landmark_image = None
    if self.draw_landmarks:
      landmark_image = draw_landmark_images(points, size, self.landmark_thickness, self.include_forehead)
    out = Aware3DOutput(image=rgba[..., :3], mask=rgba[..., 3], landmarks=points, landmark_image=landmark_image)
    if single_target:
      out = Aware3DOutput(*(None if field is None else field[:, 0] for field in out))
    return out


# --- upstream's --crop_ref boxes and the cropped target ------------------------------------------


def _box(points: jax.Array, indices, margin: float, size: int, rows: jax.Array, cols: jax.Array) -> jax.Array:
  """One `get_roi` box: [trunc(min − m), trunc(max + m)) clipped to [0, S − 1], as a mask."""
  chosen = points[..., list(indices), :2]
  low = jnp.maximum(jnp.trunc(jnp.min(chosen, axis=-2) - margin), 0)
  high = jnp.minimum(jnp.trunc(jnp.max(chosen, axis=-2) + margin), size - 1)
  inside_x = (cols >= low[..., None, None, 0]) & (cols < high[..., None, None, 0])
  inside_y = (rows >= low[..., None, None, 1]) & (rows < high[..., None, None, 1])
  return inside_x & inside_y


def region_mask(points: jax.Array, size: int, eyes: bool = False, mouth: bool = True,
                margin_scale: float | None = None) -> jax.Array:
  """Upstream's `get_roi` template: (…, 68, ≥2) landmarks → (…, S, S) bool.

  The mouth box spans points 48, 50, 51, 54, 57 ± 5 px; each eye box its six points ± 2 px
  (upstream's margins at 256 px, multiplied by `margin_scale`, default S/256). Pixel (i, j)
  is in a box when trunc(min − margin) ≤ index < trunc(max + margin), the bounds clipped to
  [0, S − 1] (so, as upstream, the last row and column are never in a box). Upstream training
  blacks out the mouth only (`mask_eyes=False`); its demo also the eyes. (The generator input
  pipeline's `mouth_box` tests pixel centres instead; the two differ by at most a pixel row
  or column on each side.)
  """
  scale = size / 256.0 if margin_scale is None else float(margin_scale)
  points = jnp.asarray(points, jnp.float32)
  rows = jnp.arange(size, dtype=jnp.float32)[:, None]
  cols = jnp.arange(size, dtype=jnp.float32)[None, :]
  result = jnp.zeros(points.shape[:-2] + (size, size), bool)
  boxes = []
  if eyes:
    boxes += [(RIGHT_EYE_POINTS, EYE_MARGIN), (LEFT_EYE_POINTS, EYE_MARGIN)]
  if mouth:
    boxes += [(MOUTH_BOX_POINTS, MOUTH_MARGIN)]
  for indices, margin in boxes:
    result = result | _box(points, indices, margin * scale, size, rows, cols)
  return result


def black_out(image: jax.Array, mask: jax.Array) -> jax.Array:
  """(…, S, S, C) image in [-1, 1] with the (…, S, S) mask's pixels set to -1 (black).

  Upstream computes image / (−image·T + 1 − T) for a 0/1 template T, which is −1 inside the
  box (and 0/0 where the image is exactly 0 there); this is the same without the division.
  """
  return jnp.where(mask[..., None], -1.0, image)


def crop_to_render(target: jax.Array, coverage: jax.Array, threshold: float = 0.5) -> jax.Array:
  """The target frame kept only where the rendered face is, -1 elsewhere (the "cropped target").

  The rendered-face flow and warp are supervised against this. Upstream, which had only the
  pre-rendered video, blanked target pixels whose rendered intensity was below 10/255 in each
  channel; we have the renderer's coverage and threshold that instead.
  """
  return jnp.where((coverage >= threshold)[..., None], target, -1.0)
