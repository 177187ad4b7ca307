"""Plain numpy references for the render tests: every pixel against every face, float64.

Written independently of the JAX code (edge functions instead of the affine barycentric
table, explicit loops over edges), so that agreement means something.
"""

from __future__ import annotations

import numpy as np


def project(vertices, camera):
  """Screen points (x, y, depth) of world vertices, for the two camera kinds."""
  v = np.asarray(vertices, np.float64)
  if camera.rotation is not None:
    v = v @ np.asarray(camera.rotation, np.float64).T
  if camera.translation is not None:
    v = v + np.asarray(camera.translation, np.float64)
  cx, cy = np.broadcast_to(np.asarray(camera.principal_point, np.float64), (2,))
  if camera.perspective:
    fx, fy = np.broadcast_to(np.asarray(camera.focal_length, np.float64), (2,))
    z = v[:, 2]
    safe = np.where(z > 0, z, 1.0)
    return np.stack([fx * v[:, 0] / safe + cx, fy * v[:, 1] / safe + cy, z], -1)
  s = float(camera.scale)
  return np.stack([s * v[:, 0] + cx, s * v[:, 1] + cy, v[:, 2]], -1)


def fragments(screen, faces, height, width, k, *, radius=0.0, perspective=False, near=-1e3, far=1e3,
              cull_backfaces=False):
  """Dict of face_index, depth, barycentrics, closest, signed_distance, margin arrays.

  `margin` (H, W) is how far the pixel is from changing its set of faces: the smallest
  distance (px) to a face edge or to the blur radius, and the depth gap at the K-th place;
  tests forgive disagreements only where it is tiny (float32 vs float64 rounding).
  """
  screen = np.asarray(screen, np.float64)
  faces = np.asarray(faces)
  c = screen[faces]  # (F, 3, 3)
  x, y, z = c[..., 0], c[..., 1], c[..., 2]
  area2 = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
  lengths2 = ((np.roll(c[..., :2], -1, axis=1) - c[..., :2]) ** 2).sum(-1).sum(-1)
  ok = np.all(np.isfinite(c), axis=(1, 2)) & (np.abs(area2) > 1e-5 * lengths2)
  if perspective:
    ok &= np.all(z > near, axis=1)
  if cull_backfaces:
    ok &= area2 < 0
  safe_area = np.where(ok, area2, 1.0)
  jj, ii = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
  px = jj.reshape(-1, 1)
  py = ii.reshape(-1, 1)  # (P, 1) against (F,)

  def edge(a, b):  # twice the signed area of the triangle (p, a, b)
    return (x[:, a] - px) * (y[:, b] - py) - (x[:, b] - px) * (y[:, a] - py)

  # The division by the signed area makes the barycentrics independent of the winding.
  bary = np.stack([edge(1, 2), edge(2, 0), edge(0, 1)], -1) / safe_area[None, :, None]
  inside = np.all(bary >= 0, axis=-1)

  dists, closest_list = [], []
  for a, b in ((0, 1), (1, 2), (2, 0)):
    ex, ey = x[:, b] - x[:, a], y[:, b] - y[:, a]
    t = ((px - x[:, a]) * ex + (py - y[:, a]) * ey) / np.maximum(ex * ex + ey * ey, 1e-300)
    t = np.clip(t, 0, 1)
    qx, qy = x[:, a] + t * ex - px, y[:, a] + t * ey - py
    dists.append(qx * qx + qy * qy)
    cb = np.zeros(t.shape + (3,))
    cb[..., a] = 1 - t
    cb[..., b] = t
    closest_list.append(cb)
  dists = np.stack(dists, -1)
  which = np.argmin(dists, axis=-1)  # first minimum, as the JAX code's <= chain
  d2 = np.min(dists, axis=-1)
  closest = np.take_along_axis(np.stack(closest_list, -2), which[..., None, None], axis=-2)[..., 0, :]
  closest = np.where(inside[..., None], bary, closest)

  value_of = (1.0 / np.where(z > 0, z, 1.0)) if perspective else z
  value = np.sum(closest * value_of[None], -1)
  keep = ok[None] & (inside | (d2 <= radius * radius if radius > 0 else False))
  lo, hi = (1 / far, 1 / near) if perspective else (near, far)
  keep &= (value >= lo) & (value <= hi)
  depth = 1.0 / value if perspective else value
  depth = np.where(keep, depth, np.inf)

  num_faces = faces.shape[0]
  order = np.lexsort((np.broadcast_to(np.arange(num_faces), depth.shape), depth), axis=-1)
  top = order[:, :k]
  top_depth = np.take_along_axis(depth, top, -1)
  face_index = np.where(np.isfinite(top_depth), top, -1)

  def pick(a):
    return np.take_along_axis(a, top.reshape(top.shape + (1,) * (a.ndim - 2)), 1)

  raw = pick(bary)
  clo = pick(closest)
  if perspective:
    w = 1.0 / np.where(z > 0, z, 1.0)
    wf = w[top]
    with np.errstate(divide="ignore", invalid="ignore"):  # raw ones can be singular outside
      raw = raw * wf / np.sum(raw * wf, -1, keepdims=True)
    clo = clo * wf / np.sum(clo * wf, -1, keepdims=True)
  valid = face_index >= 0
  dist = np.sqrt(pick(d2))
  signed = np.where(pick(inside), -dist, dist)

  # Margin: distance to a decision boundary for this pixel.
  length = np.sqrt(np.maximum((np.roll(x, -1, 1) - x) ** 2 + (np.roll(y, -1, 1) - y) ** 2, 1e-300))
  edge_px = np.abs(np.stack([edge(0, 1) / length[:, 0], edge(1, 2) / length[:, 1],
                             edge(2, 0) / length[:, 2]], -1)).min(-1)
  near_edge = np.where(ok[None], edge_px, np.inf).min(-1)
  blur_gap = np.where(ok[None], np.abs(np.sqrt(d2) - radius), np.inf).min(-1) if radius > 0 else np.inf
  sorted_depth = np.take_along_axis(depth, order, -1)
  # Only a tie at the K-th place changes which faces are kept (a tie inside the first K
  # only reorders them, which tests compare order-free).
  if num_faces > k:
    kth, next_ = sorted_depth[:, k - 1], sorted_depth[:, k]
    with np.errstate(invalid="ignore"):
      gaps = np.where(np.isfinite(kth) & np.isfinite(next_), np.abs(next_ - kth), np.inf)
  else:
    gaps = np.full(sorted_depth.shape[0], np.inf)
  vgap = np.where(ok[None], np.minimum(np.abs(value - lo), np.abs(value - hi)), np.inf).min(-1)
  margin = np.minimum(np.minimum(near_edge, blur_gap), np.minimum(gaps, vgap * 100))

  shape = (height, width, k)
  return dict(
      face_index=face_index.reshape(shape),
      depth=np.where(valid, top_depth, np.inf).reshape(shape),
      barycentrics=np.where(valid[..., None], raw, 0).reshape(shape + (3,)),
      closest=np.where(valid[..., None], clo, 0).reshape(shape + (3,)),
      signed_distance=np.where(valid, signed, np.inf).reshape(shape),
      margin=margin.reshape(height, width),
  )
