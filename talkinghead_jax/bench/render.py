"""`talkinghead bench render`: the tiled soft rasterizer on a PRNet-sized face mesh.

Renders the S×S position-map mesh (S = 256: ~40k vertices, ~80k triangles) of a synthetic
face at `--batch` poses, forward and forward+backward (gradients w.r.t. vertices and
colours), in hard (z-buffer) and soft (SoftRas) mode, with capacities measured on the batch
(`render.suggest_capacity`, so overflow is 0). Then the same renders by the dense
reference (every pixel against every face) at the smaller sizes given by `--dense-sizes`,
next to the tiled renderer at those sizes, so the speed-up is a ratio from one run. Also
a SynthTalk-sized case (~6k triangles at 128², hard) in frames per second.
"""

from __future__ import annotations

from talkinghead_jax import bench
from talkinghead_jax.errors import TalkingHeadError

# SoftRas' default sigma (1e-5 in NDC²) and gamma (1e-4).
SOFTRAS_SIGMA_NDC = 1e-5
SOFTRAS_GAMMA = 1e-4


def face_position_map(map_size: int, image_size: int):
  """A synthetic face-like position map (a bulging ellipsoid cap) and its disc mask.

  Texel (i, j) lies at x, y in the pixels of an image_size crop, z towards the viewer in
  the middle (negative: nearer). The mask keeps a disc of radius 0.44 in UV space, which at
  S = 256 gives PRNet's size: ~40k vertices, ~80k triangles.
  """
  import numpy as np

  u = (np.arange(map_size) + 0.5) / map_size
  uu, vv = np.meshgrid(u, u)
  r2 = ((uu - 0.5) ** 2 + (vv - 0.5) ** 2) / 0.44**2
  x = image_size / 2 + (uu - 0.5) * image_size * 0.85
  y = image_size / 2 + (vv - 0.5) * image_size * 0.95
  z = -0.35 * image_size * np.sqrt(np.clip(1 - r2, 0, 1))
  return np.stack([x, y, z], -1).astype(np.float32), r2 < 1


def posed_batch(vertices, batch: int, image_size: int, max_yaw: float = 0.5):
  """`batch` copies of the mesh turned about the image centre: yaw in ±max_yaw, some pitch."""
  import numpy as np
  from scipy.spatial.transform import Rotation

  yaw = np.linspace(-max_yaw, max_yaw, batch)
  pitch = 0.2 * np.sin(np.arange(batch))
  centre = np.array([image_size / 2, image_size / 2, 0.0], np.float32)
  rotations = Rotation.from_euler("yx", np.stack([yaw, pitch], -1)).as_matrix().astype(np.float32)
  return np.einsum("bij,vj->bvi", rotations, vertices - centre) + centre


@bench.register_target("render", "Tiled soft rasterizer: 80k-triangle face mesh, forward and forward+backward.")
def _configure(parser):
  parser.add_argument("--map-size", type=int, default=256, help="position map size S (mesh ~1.2·S² triangles)")
  parser.add_argument("--image-size", type=int, default=256)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--tile-size", type=int, default=4, help="screen tile side in pixels")
  parser.add_argument("--modes", default="hard,soft", help="comma list of hard, soft")
  parser.add_argument("--dense-sizes", default="64,128",
                      help="image sizes (map size = image size) for the dense reference vs tiled; '' for none")
  parser.add_argument("--no-synthtalk", action="store_true", help="skip the SynthTalk-sized case")

  def run(args) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from talkinghead_jax import render
    from talkinghead_jax.geometry import mesh as meshlib

    results = {}
    modes = [mode for mode in args.modes.split(",") if mode]
    for mode in modes:
      if mode not in ("hard", "soft"):
        raise TalkingHeadError(f"unknown mode {mode!r}; use hard, soft")

    def setup(map_size, image_size, batch, seed=0):
      position_map, mask = face_position_map(map_size, image_size)
      mesh = meshlib.position_map_to_mesh(position_map, mask)
      vertices = posed_batch(mesh.vertices, batch, image_size)
      colors = np.random.default_rng(seed).uniform(0, 1, (batch, len(mesh.vertices), 3)).astype(np.float32)
      return mesh, jnp.asarray(vertices), jnp.asarray(colors)

    def mode_kwargs(mode, image_size):
      if mode == "hard":
        return dict(sigma=0.0, gamma=0.0, faces_per_pixel=1)
      return dict(sigma=render.sigma_from_softras(SOFTRAS_SIGMA_NDC, image_size), gamma=SOFTRAS_GAMMA,
                  faces_per_pixel=8)

    def renderers(mesh, vertices, image_size, mode, tile_size, dense=False):
      kwargs = mode_kwargs(mode, image_size)
      radius = render.blur_radius(kwargs["sigma"])
      capacity = render.suggest_capacity(vertices, mesh.faces, None, image_size, tile_size=tile_size,
                                         blur_radius=radius)
      kwargs.update(image_size=image_size, tile_size=tile_size, tile_capacity=capacity.tile_capacity,
                    pair_capacity=capacity.pair_capacity, dense=dense)
      faces = jnp.asarray(mesh.faces)
      weights = jax.random.normal(jax.random.key(0), (vertices.shape[0], image_size, image_size, 4))

      def forward(v, c):
        return render.render_mesh(v, faces, c, return_overflow=True, **kwargs)

      def loss(v, c):
        return jnp.sum(render.render_mesh(v, faces, c, warn_on_overflow=False, **kwargs) * weights)

      return jax.jit(forward), jax.jit(jax.grad(loss, argnums=(0, 1))), capacity

    def timed(name, fn, *inputs, per=None):
      result = bench.measure(lambda: fn(*inputs), warmup=args.warmup, repeats=args.repeats)
      results[name] = result
      if per:
        results[name + " per image (ms)"] = round(result["median_s"] / per * 1e3, 3)
      return result

    # The PRNet-sized mesh at full size, tiled.
    mesh, vertices, colors = setup(args.map_size, args.image_size, args.batch)
    results["mesh"] = f"{len(mesh.vertices)} vertices, {len(mesh.faces)} triangles, S={args.map_size}"
    size = f"{args.image_size}², batch {args.batch}, tile {args.tile_size}"
    for mode in modes:
      forward, backward, capacity = renderers(mesh, vertices, args.image_size, mode, args.tile_size)
      overflow = int(jnp.sum(forward(vertices, colors)[1]))
      results[f"{mode}: capacities, overflow"] = f"{tuple(capacity)}, {overflow}"
      timed(f"{mode} forward ({size})", forward, vertices, colors, per=args.batch)
      timed(f"{mode} forward+backward ({size})", backward, vertices, colors, per=args.batch)

    # Dense reference vs tiled at sizes where the dense one fits.
    for dense_size in [int(s) for s in args.dense_sizes.split(",") if s]:
      mesh, vertices, colors = setup(dense_size, dense_size, args.batch)
      tag = f"{dense_size}², {len(mesh.faces)} triangles, batch {args.batch}"
      for mode in modes:
        tiled, _, _ = renderers(mesh, vertices, dense_size, mode, args.tile_size)
        dense, _, _ = renderers(mesh, vertices, dense_size, mode, args.tile_size, dense=True)
        fast = timed(f"{mode} forward tiled ({tag})", tiled, vertices, colors, per=args.batch)
        slow = timed(f"{mode} forward dense reference ({tag})", dense, vertices, colors, per=args.batch)
        np.testing.assert_allclose(np.asarray(tiled(vertices, colors)[0]), np.asarray(dense(vertices, colors)[0]),
                                   atol=1e-3)
        results[f"{mode} speed-up tiled/dense at {dense_size}²"] = round(slow["median_s"] / fast["median_s"], 1)

    if not args.no_synthtalk:
      # SynthTalk's use: ~6k triangles at 128², hard, a batch of frames, default tile size.
      mesh, vertices, colors = setup(72, 128, 16)
      forward, _, capacity = renderers(mesh, vertices, 128, "hard", 8)
      result = timed(f"synthtalk-sized hard forward (128², {len(mesh.faces)} triangles, batch 16)", forward,
                     vertices, colors)
      results["synthtalk-sized frames/s"] = round(16 / result["median_s"], 1)

    bench.report("render", results, args.json)
    return 0

  return run
