"""Cameras: world points → screen points (x, y in pixels, depth).

The one pixel convention of the project, used by every module in `render/`:

- x grows to the right, y grows downwards;
- pixel (row i, column j) covers [j, j+1) × [i, i+1) and has its centre at
  (x, y) = (j + 0.5, i + 0.5);
- depth z grows away from the viewer: a smaller z is nearer the camera.

Both cameras first map world points into camera space with `p_cam = R·p + t` (R and t are
optional; the default is the identity) and then project:

- `OrthographicCamera`: x = scale·X + cx, y = scale·Y + cy, depth = Z. With the defaults
  (scale 1, principal point 0) world coordinates *are* pixel coordinates, which is
  upstream's setup: landmarks and position maps live in the pixels of the square crop.
- `PerspectiveCamera`: a pinhole at the origin looking along +z (OpenCV axes):
  x = fx·X/Z + cx, y = fy·Y/Z + cy, depth = Z.

`near` and `far` bound the depths that are drawn (a fragment outside [near, far] is
discarded) and normalise depth for SoftRas' softmax aggregation (see `shading.py`).
A perspective camera additionally culls every face with a vertex at depth <= near,
because such a face has no valid projection (faces are not clipped against the near plane).

Cameras are pytrees, so they can be passed through `jax.jit` and batched: every field may
carry a leading batch axis that matches the vertices' batch axis.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

ArrayLike = Any


def _to_camera_space(points: jax.Array, rotation, translation) -> jax.Array:
  """p_cam = R·p + t over the last axis; R (…,3,3) and t (…,3) broadcast over the vertices."""
  if rotation is not None:
    points = jnp.einsum("...ij,...vj->...vi", jnp.asarray(rotation, points.dtype), points)
  if translation is not None:
    points = points + jnp.asarray(translation, points.dtype)[..., None, :]
  return points


def _pair(value, dtype) -> jax.Array:
  """A scalar or a (…, 2) value as an array whose last axis has size 2."""
  value = jnp.asarray(value, dtype)
  if value.ndim == 0:
    value = jnp.stack([value, value])
  return value


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class OrthographicCamera:
  """Orthographic projection in pixel units (see the module docstring).

  Attributes:
    scale: pixels per world unit, a scalar or (…,) per batch item.
    principal_point: pixel position (cx, cy) of the camera-space origin.
    rotation: optional (…, 3, 3) world-to-camera rotation R.
    translation: optional (…, 3) world-to-camera translation t.
    near: smallest depth drawn.
    far: largest depth drawn.
  """

  scale: ArrayLike = 1.0
  principal_point: ArrayLike = (0.0, 0.0)
  rotation: ArrayLike = None
  translation: ArrayLike = None
  near: ArrayLike = -1000.0
  far: ArrayLike = 1000.0

  perspective: ClassVar[bool] = False

  def to_camera(self, points: jax.Array) -> jax.Array:
    """World points (…, V, 3) → camera space (…, V, 3)."""
    return _to_camera_space(jnp.asarray(points, jnp.float32), self.rotation, self.translation)

  def project(self, points: jax.Array) -> jax.Array:
    """World points (…, V, 3) → screen points (…, V, 3): x, y in pixels, depth."""
    cam = self.to_camera(points)
    scale = jnp.asarray(self.scale, cam.dtype)[..., None, None]
    centre = _pair(self.principal_point, cam.dtype)[..., None, :]
    return jnp.concatenate([cam[..., :2] * scale + centre, cam[..., 2:]], axis=-1)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PerspectiveCamera:
  """Pinhole projection looking along +z, y down (see the module docstring).

  Attributes:
    focal_length: (fx, fy) or a scalar, in pixels.
    principal_point: (cx, cy) in pixels, where the optical axis meets the image.
    rotation: optional (…, 3, 3) world-to-camera rotation R.
    translation: optional (…, 3) world-to-camera translation t.
    near: smallest depth drawn; faces with a vertex at depth <= near are culled.
    far: largest depth drawn.
  """

  focal_length: ArrayLike = 1.0
  principal_point: ArrayLike = (0.0, 0.0)
  rotation: ArrayLike = None
  translation: ArrayLike = None
  near: ArrayLike = 0.1
  far: ArrayLike = 1000.0

  perspective: ClassVar[bool] = True

  @classmethod
  def from_fov(cls, fov_degrees: float, image_size: int | tuple[int, int], **kwargs) -> "PerspectiveCamera":
    """A camera whose horizontal field of view spans the image, optical axis at its centre."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    focal = 0.5 * width / math.tan(math.radians(fov_degrees) / 2)
    return cls(focal_length=focal, principal_point=(width / 2, height / 2), **kwargs)

  def to_camera(self, points: jax.Array) -> jax.Array:
    """World points (…, V, 3) → camera space (…, V, 3)."""
    return _to_camera_space(jnp.asarray(points, jnp.float32), self.rotation, self.translation)

  def project(self, points: jax.Array) -> jax.Array:
    """World points (…, V, 3) → screen points (…, V, 3): x, y in pixels, depth.

    Points at depth <= 0 get a finite but meaningless x, y; the rasterizer culls their faces.
    """
    cam = self.to_camera(points)
    depth = cam[..., 2:]
    safe_depth = jnp.where(depth > 0, depth, 1.0)
    focal = _pair(self.focal_length, cam.dtype)[..., None, :]
    centre = _pair(self.principal_point, cam.dtype)[..., None, :]
    return jnp.concatenate([cam[..., :2] / safe_depth * focal + centre, depth], axis=-1)


Camera = OrthographicCamera | PerspectiveCamera


def pixel_centers(height: int, width: int) -> jax.Array:
  """(H, W, 2) screen positions (x, y) of the pixel centres: (j + 0.5, i + 0.5)."""
  ys = jnp.arange(height, dtype=jnp.float32) + 0.5
  xs = jnp.arange(width, dtype=jnp.float32) + 0.5
  grid_y, grid_x = jnp.meshgrid(ys, xs, indexing="ij")
  return jnp.stack([grid_x, grid_y], axis=-1)
