"""Differentiable mesh rendering in JAX: cameras, a tiled soft rasterizer, SoftRas shading.

Public API:

- `render_mesh(vertices, faces, colors | uv + texture, camera=, image_size=, sigma=, gamma=, …)`
  → RGBA, batched over meshes that share faces, jit-able, differentiable.
- `rasterize(vertices, faces, camera, image_size, faces_per_pixel=, blur_radius=, …)` → `Fragments`.
- `OrthographicCamera`, `PerspectiveCamera`, `pixel_centers`: the pixel convention
  (x right, y down, pixel (i, j) centred at (j + 0.5, i + 0.5), depth grows away).
- `Light`, `sigma_from_softras`, `blur_radius`, `tile_counts`, `suggest_capacity`.

See docs/rendering.md for the algorithm, its parameters and its limits.
"""

from talkinghead_jax.render.camera import OrthographicCamera, PerspectiveCamera, pixel_centers
from talkinghead_jax.render.raster import Capacity, Fragments, blur_radius, rasterize, suggest_capacity, tile_counts
from talkinghead_jax.render.renderer import OverflowWarning, render_mesh
from talkinghead_jax.render.shading import Light, sample_bilinear, sigma_from_softras

__all__ = [
    "Capacity",
    "Fragments",
    "Light",
    "OrthographicCamera",
    "OverflowWarning",
    "PerspectiveCamera",
    "blur_radius",
    "pixel_centers",
    "rasterize",
    "render_mesh",
    "sample_bilinear",
    "sigma_from_softras",
    "suggest_capacity",
    "tile_counts",
]
