"""Shading and aggregation of fragments: interpolation, textures, light, SoftRas blending.

SoftRas (Liu et al. 2019), in this project's units:

- coverage of fragment j: D_j = sigmoid(δ_j · d_j² / sigma), d_j the screen distance (px)
  from the pixel centre to the face boundary, δ_j = +1 inside the face and −1 outside;
  `sigma` is in px² (SoftRas' sigma is in NDC², multiply by (W/2)² to convert:
  `sigma_from_softras`);
- alpha = 1 − Π_j (1 − D_j);
- colour = (Σ_j w_j c_j + w_b c_background) / (Σ_j w_j + w_b) with
  w_j = D_j exp(z_j / gamma), w_b = exp(eps / gamma), and z_j = (far − depth_j) /
  (far − near) the normalised inverse depth (1 at near, 0 at far), eps = 1e-10.

The hard z-buffer is the limit sigma, gamma → 0, and is what sigma = 0 / gamma = 0 give:
D_j is 1 inside and 0 outside; the colour is the nearest covering fragment's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

# SoftRas' depth of the background in the softmax.
BACKGROUND_DEPTH = 1e-10


def sigma_from_softras(sigma_ndc: float, image_width: int) -> float:
  """SoftRas' sigma (NDC², the image spanning [−1, 1]) → this module's sigma (px²)."""
  return sigma_ndc * (image_width / 2.0) ** 2


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Light:
  """Ambient + Lambertian light: colour × (ambient + diffuse · max(n·l, 0)).

  `direction` points from the surface towards the light, in camera space (the default,
  (0, 0, −1), is a light behind the viewer). Normals are two-sided: they are flipped to
  face the camera before the dot product. Scalars or per-channel (C,) values.
  """

  ambient: Any = 1.0
  diffuse: Any = 0.0
  direction: Any = (0.0, 0.0, -1.0)


def bilinear_channels(texture: jax.Array, u: jax.Array, v: jax.Array) -> list[jax.Array]:
  """Bilinear lookup of (B, Ht, Wt, C) textures at u, v of shape (B, …); C arrays (B, …).

  u runs along the width, v along the height (downwards), both in [0, 1]; texel (r, c)
  has its centre at ((c + 0.5) / Wt, (r + 0.5) / Ht), the pixel convention of camera.py.
  Lookups outside [0, 1] take the nearest border texel. Gathers are per channel from flat
  1D arrays (fast on CPU); the gradient w.r.t. the texture is the matching scatter-add.
  """
  batch, tex_h, tex_w, channels = texture.shape
  x = u * tex_w - 0.5
  y = v * tex_h - 0.5
  x0f, y0f = jnp.floor(x), jnp.floor(y)
  fx, fy = x - x0f, y - y0f
  x0 = jnp.clip(x0f, 0, tex_w - 1).astype(jnp.int32)
  x1 = jnp.clip(x0f + 1, 0, tex_w - 1).astype(jnp.int32)
  y0 = jnp.clip(y0f, 0, tex_h - 1).astype(jnp.int32)
  y1 = jnp.clip(y0f + 1, 0, tex_h - 1).astype(jnp.int32)
  base = (jnp.arange(batch, dtype=jnp.int32) * (tex_h * tex_w)).reshape((batch,) + (1,) * (u.ndim - 1))
  taps = [(base + y0 * tex_w + x0, (1 - fx) * (1 - fy)), (base + y0 * tex_w + x1, fx * (1 - fy)),
          (base + y1 * tex_w + x0, (1 - fx) * fy), (base + y1 * tex_w + x1, fx * fy)]
  flat = texture.reshape(batch * tex_h * tex_w, channels)
  out = []
  for channel in range(channels):
    column = flat[:, channel]
    out.append(sum(column.at[index].get(mode="promise_in_bounds") * weight for index, weight in taps))
  return out


def sample_bilinear(texture: jax.Array, uv: jax.Array) -> jax.Array:
  """Bilinear lookup of one (Ht, Wt, C) texture at (…, 2) uv → (…, C) (see `bilinear_channels`)."""
  texture = jnp.asarray(texture, jnp.float32)
  uv = jnp.asarray(uv, jnp.float32)
  channels = bilinear_channels(texture[None], uv[None, ..., 0], uv[None, ..., 1])
  return jnp.stack(channels, -1)[0]


def vertex_normals(points: jax.Array, faces: jax.Array) -> jax.Array:
  """(B, V, 3) camera-space vertices → (B, V, 3) unit area-weighted vertex normals.

  A face's normal is (v1 − v0) × (v2 − v0): it points towards the camera (−z) for
  front-facing faces.
  """
  corners = jnp.take(points, faces, axis=1)  # (B, F, 3, 3)
  face_normals = jnp.cross(corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0])
  sums = jnp.zeros_like(points)
  for corner in range(3):
    sums = sums.at[:, faces[:, corner]].add(face_normals)
  norm = jnp.sqrt(jnp.maximum(jnp.sum(sums * sums, -1, keepdims=True), 1e-24))  # unused vertices: 0
  return sums / norm


def lambert(colors: list[jax.Array], normal: list[jax.Array], view: list[jax.Array], light: Light) -> list[jax.Array]:
  """Ambient + two-sided Lambertian shading of C colour arrays with 3 normal arrays.

  `view` (3 arrays) points from the surface towards the camera; normals facing away from
  it are flipped, so that a back face seen from the camera is lit like a front face.
  """
  nx, ny, nz = normal
  # Empty fragments interpolate a zero normal: keep sqrt away from 0 so no NaN reaches a gradient.
  norm = jnp.sqrt(jnp.maximum(nx * nx + ny * ny + nz * nz, 1e-24))
  facing = nx * view[0] + ny * view[1] + nz * view[2]
  sign = jnp.where(facing < 0, -1.0, 1.0) / norm
  direction = jnp.asarray(light.direction, jnp.float32)
  direction = direction / jnp.sqrt(jnp.sum(direction * direction))
  cosine = jnp.maximum(sign * (nx * direction[0] + ny * direction[1] + nz * direction[2]), 0.0)
  ambient = jnp.broadcast_to(jnp.asarray(light.ambient, jnp.float32), (len(colors),))
  diffuse = jnp.broadcast_to(jnp.asarray(light.diffuse, jnp.float32), (len(colors),))
  return [c * (ambient[i] + diffuse[i] * cosine) for i, c in enumerate(colors)]


def soft_blend(colors: list[jax.Array], valid, inside, squared_distance, depth, *, sigma: float, gamma: float,
               near, far, background) -> jax.Array:
  """SoftRas aggregation of C fragment colour arrays (B, H, W, K) → (B, H, W, C+1) RGBA.

  Fragments are sorted nearest first. sigma = 0 gives hard coverage (D = 1 for every
  selected fragment; with blur radius 0 the rasterizer only selects faces that contain
  the pixel centre); gamma = 0 gives the colour of the nearest fragment.
  """
  channels = len(colors)
  background = jnp.broadcast_to(jnp.asarray(background, jnp.float32), (channels,))
  if sigma > 0:
    signed = jnp.where(inside, squared_distance, -squared_distance)
    coverage = jnp.where(valid, jax.nn.sigmoid(jnp.where(valid, signed, 0.0) / sigma), 0.0)
  else:
    coverage = valid.astype(jnp.float32)
  alpha = 1.0 - jnp.prod(1.0 - coverage, axis=-1)

  if gamma > 0:
    near = jnp.asarray(near, jnp.float32)
    far = jnp.asarray(far, jnp.float32)
    if near.ndim:  # one camera per batch item
      near = near.reshape((-1,) + (1,) * (depth.ndim - 1))
      far = far.reshape((-1,) + (1,) * (depth.ndim - 1))
    z = (far - jnp.where(valid, depth, far)) / (far - near)
    logits = jnp.where(valid, z / gamma, -jnp.inf)
    background_logit = BACKGROUND_DEPTH / gamma
    top = jnp.maximum(jnp.max(logits, axis=-1, keepdims=True), background_logit)
    weights = coverage * jnp.exp(logits - top)
    background_weight = jnp.exp(background_logit - top)[..., 0]
    total = jnp.sum(weights, -1) + background_weight
    rgb = [(jnp.sum(weights * c, -1) + background_weight * background[i]) / total for i, c in enumerate(colors)]
  else:
    rgb = [jnp.where(valid[..., 0], c[..., 0], background[i]) for i, c in enumerate(colors)]
  return jnp.stack(rgb + [alpha], axis=-1)
