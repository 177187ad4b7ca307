"""`render_mesh`: vertices + faces + colours (or a UV texture) → RGBA, SoftRas style.

The pipeline is `raster.select` (tiled, no gradients) → per-face corner columns of the
screen positions and attributes → `raster.geometry_from_columns` (differentiable) →
colours / texture / light → `shading.soft_blend`. The per-fragment part runs under
`jax.checkpoint`: the backward pass keeps the (B, H, W, K) face indices
and the per-fragment gathered corner values and recomputes the arithmetic on them, so
memory is O(B·H·W·K), never O(B·H·W·F).
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
from jax import lax

from talkinghead_jax.render import raster
from talkinghead_jax.render import shading

# Default K for soft rendering (hard rendering, sigma = gamma = 0, needs only 1).
SOFT_FACES_PER_PIXEL = 8
# Coverage below which a face is not considered for a pixel; sets the blur radius.
COVERAGE_THRESHOLD = 1e-4


class OverflowWarning(RuntimeWarning):
  """A tile held more faces than its capacity: the image may miss faces."""


def _warn_overflow(overflow) -> None:
  total = int(jnp.sum(jnp.asarray(overflow)))
  if total > 0:
    warnings.warn(
        f"render_mesh: {total} (tile, face) overlaps did not fit tile_capacity / pair_capacity "
        "and were ignored; raise them (render.suggest_capacity measures them; see docs/rendering.md)",
        OverflowWarning, stacklevel=2)


def _batch(value, batch: int, rank: int):
  """Adds a leading batch axis to an unbatched value (ndim == rank) and broadcasts it."""
  value = jnp.asarray(value, jnp.float32)
  if value.ndim == rank:
    value = value[None]
  return jnp.broadcast_to(value, (batch,) + value.shape[1:])


def render_mesh(vertices, faces, colors=None, *, uv=None, texture=None, camera=None,
                image_size: int | tuple[int, int], sigma: float = 0.0, gamma: float = 0.0,
                background=0.0, faces_per_pixel: int | None = None,
                coverage_threshold: float = COVERAGE_THRESHOLD, tile_size: int = 8, tile_capacity: int = 256,
                pair_capacity: int | None = None, cull_backfaces: bool = False, light: shading.Light | None = None,
                return_overflow: bool = False, warn_on_overflow: bool = True, dense: bool = False):
  """Renders meshes that share one topology; differentiable w.r.t. vertices, colours, texture.

  Args:
    vertices: (V, 3) or (B, V, 3) world-space vertices.
    faces: (F, 3) int vertex indices (shared by the batch).
    colors: (V, C) or (B, V, C) per-vertex colours. Give either colours or uv + texture.
    uv: (V, 2) per-vertex or (F, 3, 2) per-corner texture coordinates in [0, 1]
      (u along the width, v down; see `shading.sample_bilinear`).
    texture: (Ht, Wt, C) or (B, Ht, Wt, C), sampled bilinearly.
    camera: `OrthographicCamera` (default: world = pixel units) or `PerspectiveCamera`.
    image_size: H = W, or (H, W).
    sigma: SoftRas coverage sharpness in px² (0: hard edges).
    gamma: SoftRas depth-softmax temperature on depth normalised by near/far (0: nearest wins).
    background: background colour, scalar or (C,).
    faces_per_pixel: K; default 1 when sigma = gamma = 0, else 8.
    coverage_threshold: faces whose SoftRas coverage at a pixel is below this are not
      considered there (sets the blur radius, `raster.blur_radius`).
    tile_size, tile_capacity, pair_capacity: binning (see `raster.rasterize`, and
      docs/rendering.md for sizing them; `render.suggest_capacity` measures them).
    cull_backfaces: skip faces that appear clockwise on screen.
    light: optional ambient + Lambertian `shading.Light` (default: colours as given).
    return_overflow: also return the (B,) / () overflow counts.
    warn_on_overflow: when not returning them, emit an `OverflowWarning` (from a host
      callback, so also under jit) whenever a tile overflowed.
    dense: select faces by testing every pixel against every face (the O(H·W·F)
      reference the benchmark compares with; same image, no overflow).

  Returns:
    (…, H, W, C+1) float32: colour channels then alpha; with `return_overflow`,
    (image, overflow).
  """
  vertices, faces, camera, single = raster.prepare_mesh(vertices, faces, camera)
  if (colors is None) == (texture is None):
    raise ValueError("give either colors or uv + texture")
  if texture is not None and uv is None:
    raise ValueError("a texture needs uv coordinates")
  if sigma < 0 or gamma < 0:
    raise ValueError("sigma and gamma must be >= 0")
  batch = vertices.shape[0]
  if colors is not None:
    colors = _batch(colors, batch, 2)
    uv = None
  else:
    texture = _batch(texture, batch, 3)
    uv = jnp.asarray(uv, jnp.float32)
  if faces_per_pixel is None:
    faces_per_pixel = 1 if sigma == 0 and gamma == 0 else SOFT_FACES_PER_PIXEL
  image, overflow = _render(vertices, faces, colors, uv, texture, camera, light, background,
                            raster.image_hw(image_size), float(sigma), float(gamma), int(faces_per_pixel),
                            raster.blur_radius(float(sigma), coverage_threshold), int(tile_size),
                            int(tile_capacity), None if pair_capacity is None else int(pair_capacity),
                            bool(cull_backfaces), bool(warn_on_overflow and not return_overflow), bool(dense))
  if single:
    image, overflow = image[0], overflow[0]
  return (image, overflow) if return_overflow else image


def face_attribute_columns(screen, points, faces, colors, uv, light, camera):
  """Per-face corner columns (B·F,) of everything the shader interpolates.

  Built outside the checkpointed shader, so the backward pass neither recomputes them
  nor fuses their (F-sized) gathers into the per-fragment ones.
  """
  columns = {"screen": raster.face_columns(screen, faces)}
  if colors is not None:
    columns["colors"] = raster.face_columns(colors, faces)
  elif uv.ndim == 2:  # per vertex, shared by the batch
    columns["uv"] = raster.face_columns(uv[None], faces)
  else:  # (F, 3, 2) per face corner, shared by the batch
    flat = uv.reshape(faces.shape[0], 6)
    columns["uv"] = [flat[:, i] for i in range(6)]
  if light is not None:
    columns["normals"] = raster.face_columns(shading.vertex_normals(points, faces), faces)
    if camera.perspective:
      columns["points"] = raster.face_columns(points, faces)
  # Materialised: otherwise XLA fuses these F-sized gathers into every per-fragment gather,
  # which then reads through two levels of indirection per fragment.
  return lax.optimization_barrier(columns)


def shade_fragments(columns, face_index, texture, camera, light, background, *, sigma, gamma):
  """Differentiable part of `render_mesh`: face columns + fragments → RGBA (B, H, W, C+1)."""
  geometry = raster.geometry_from_columns(columns["screen"], face_index, camera.perspective)
  bary = geometry.closest_barycentrics
  batch = face_index.shape[0]
  ids = raster.fragment_ids(face_index, columns["screen"][0].shape[0] // batch)

  def interpolate(name, fragment_ids):
    return raster.interpolate_columns(raster.gather_columns(columns[name], fragment_ids), bary)

  if "colors" in columns:
    fragment_colors = interpolate("colors", ids)
  else:
    u, v = interpolate("uv", jnp.maximum(face_index, 0))  # shared by the batch: per-image face ids
    fragment_colors = shading.bilinear_channels(texture, u, v)
  if light is not None:
    normal = interpolate("normals", ids)
    if camera.perspective:
      view = [-p for p in interpolate("points", ids)]
    else:
      view = [jnp.zeros(()), jnp.zeros(()), -jnp.ones(())]
    fragment_colors = shading.lambert(fragment_colors, normal, view, light)
  return shading.soft_blend(fragment_colors, geometry.valid, geometry.inside, geometry.squared_distance,
                            geometry.depth, sigma=sigma, gamma=gamma, near=camera.near, far=camera.far,
                            background=background)


@functools.partial(jax.jit, static_argnums=tuple(range(8, 19)))
def _render(vertices, faces, colors, uv, texture, camera, light, background, image_size, sigma, gamma,
            faces_per_pixel, radius, tile_size, tile_capacity, pair_capacity, cull_backfaces, warn, dense):
  points = camera.to_camera(vertices)
  screen = camera.project(vertices)
  face_index, overflow = raster.select(
      screen, faces, camera, image_size, faces_per_pixel=faces_per_pixel, radius=radius, tile_size=tile_size,
      tile_capacity=tile_capacity, pair_capacity=pair_capacity, cull_backfaces=cull_backfaces, dense=dense)
  if warn:
    jax.debug.callback(_warn_overflow, overflow)
  # The backward pass keeps the gathered per-fragment columns (the costly part) and
  # recomputes the arithmetic on them, instead of holding every intermediate.
  shade = jax.checkpoint(functools.partial(shade_fragments, sigma=sigma, gamma=gamma),
                         policy=jax.checkpoint_policies.save_only_these_names(raster.GATHER_NAME))
  columns = face_attribute_columns(screen, points, faces, colors, uv, light, camera)
  image = shade(columns, face_index, texture, camera, light, background)
  return image, overflow
