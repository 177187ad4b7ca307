"""SynthTalk head: a UV-parametrised head surface, its shape and expression rig, the 68 landmarks.

Coordinates
-----------
*Material* coordinates (u, v) ∈ [0, 1]² name a point of the skin; the texture, the landmarks and
the position map are defined on them, so they follow every deformation. u runs around the head
(u = 0.5 is the front), v from the crown (0) down to the bottom of the neck (1).

*Rest* coordinates (θ, η) place that point on the template head: θ is the angle around the
vertical axis (0 = front, > 0 towards image right), η the height in head units (y down; eyes
at 0, mouth at 0.72, chin at 1.18; one unit ≈ half the face width). The map from (u, v) to (θ, η)
is fixed; it collapses a thin band of v across the mouth to the lips' contact line, so a closed
mouth has no gap, and opening the jaw stretches that band into the mouth cavity (painted with
teeth and a dark interior).

*Head* coordinates (x, y, z): head units, x right, y down, z away from the viewer, the head's
centre at the origin. `surface` maps material points to head coordinates for an identity's
shape parameters and any number of expression frames.

Shape and expression
--------------------
`SHAPE_NAMES`: 14 identity parameters, each a standard-normal draw (clipped to ±2.5): overall
size, face and jaw width, face length, nose length and width, brow ridge, eye spacing and size,
mouth width, lip fullness, chin, cheeks, hair volume. They warp the rest coordinates or scale
feature bumps (nose, brow ridge, eye sockets, cheeks, lips, chin, ears).

`EXPRESSION_NAMES`: jaw opening, lip spread, lip rounding, blink, each in [0, 1]. Jaw opening
rotates the lower face about the jaw hinge; spread and rounding reshape the mouth region;
blinking slides the upper lid over the eye. None of them moves the 27 stable landmarks
(geometry.landmarks.STABLE_27: jaw 1–5 and 11–15, nose 27–35, eye corners, brow ends), so head
pose is recoverable exactly from them.

Everything is numpy and vectorised over points and frames.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SHAPE_NAMES = (
    "head_scale", "face_width", "jaw_width", "face_length", "nose_length", "nose_width",
    "brow_ridge", "eye_spacing", "eye_size", "mouth_width", "lip_fullness", "chin", "cheeks",
    "hair_volume",
)
EXPRESSION_NAMES = ("jaw_open", "lip_spread", "lip_round", "blink")
SHAPE_CLIP = 2.5

# iBUG-68 stable points (upstream RT_compute): jaw 1–5 and 11–15, nose 27–35, eye corners
# 36, 39, 42, 45, brow ends 17, 21, 22, 26. Kept here too so that the rig can be checked
# against it without importing the geometry package.
STABLE_POINTS = np.array(
    [1, 2, 3, 4, 5, 11, 12, 13, 14, 15, 27, 28, 29, 30, 31, 32, 33, 34, 35,
     36, 39, 42, 45, 17, 21, 22, 26])

# --- The material → rest map ------------------------------------------------------------------

# Around the head: θ = π·(α·s + (1 − α)·s³), s = 2u − 1. Gives the face (|θ| < 80°) two thirds
# of u, so the texture spends its texels where the face is.
_U_ALPHA = 0.45
# Down the head: a spherical cap from the crown to ETA_CAP, sampled by angle, then η linear in v
# with the same slope, down to ETA_BOTTOM (bottom of the neck, well below the image).
ETA_CAP, CAP_HEIGHT, ETA_BOTTOM = -0.5, 1.05, 2.3
_V_CAP = (CAP_HEIGHT * np.pi / 2) / (CAP_HEIGHT * np.pi / 2 + ETA_BOTTOM - ETA_CAP)
_ETA_PER_V = CAP_HEIGHT * np.pi / (2 * _V_CAP)

# Template feature positions (rest coordinates).
ETA_MOUTH = 0.72
THETA_MOUTH = 0.30          # half-width of the mouth (corner angle)
THETA_EYE = 0.36            # eye centres at ±THETA_EYE, η = 0
EYE_HALF_WIDTH = 0.17
LID_UP, LID_DOWN = 0.065, 0.05   # eye opening above/below the eye line at its centre
LID_MARGIN = 0.12           # upper-lid skin that stretches when the eye closes
ETA_CHIN = 1.18
ETA_NAPE = 0.55             # where the head meets the neck at the back

# The mouth band in material v: half-height at the centre and the margin that absorbs the
# collapse on either side (the lips live in it).
_MOUTH_BAND = 0.012
_MOUTH_MARGIN = 0.02


def _smoothstep(x):
  x = np.clip(x, 0.0, 1.0)
  return x * x * (3.0 - 2.0 * x)


def _gauss(x, sigma):
  return np.exp(-0.5 * (x / sigma) ** 2)


def _compact(x):
  """(1 − x²)² inside |x| < 1, 0 outside: a C1 bump with compact support."""
  return np.clip(1.0 - x * x, 0.0, None) ** 2


def theta_of_u(u):
  s = 2.0 * np.asarray(u, np.float64) - 1.0
  return np.pi * (_U_ALPHA * s + (1.0 - _U_ALPHA) * s ** 3)


def u_of_theta(theta):
  """Inverse of `theta_of_u` (Newton on a monotone cubic)."""
  target = np.asarray(theta, np.float64) / np.pi
  s = np.clip(target, -1.0, 1.0)
  for _ in range(40):
    s = s - (_U_ALPHA * s + (1.0 - _U_ALPHA) * s ** 3 - target) / (_U_ALPHA + 3 * (1 - _U_ALPHA) * s * s)
  return (s + 1.0) / 2.0


def eta_of_v_linear(v):
  """The uncollapsed height: a cap sampled by angle, then linear."""
  v = np.asarray(v, np.float64)
  cap_angle = 0.5 * np.pi * (1.0 - np.clip(v, 0.0, _V_CAP) / _V_CAP)
  cap = ETA_CAP - CAP_HEIGHT * np.sin(cap_angle)
  return np.where(v < _V_CAP, cap, ETA_CAP + _ETA_PER_V * (v - _V_CAP))


def v_of_eta_linear(eta):
  eta = np.asarray(eta, np.float64)
  cap = _V_CAP * (1.0 - np.arcsin(np.clip((ETA_CAP - eta) / CAP_HEIGHT, -1, 1)) / (0.5 * np.pi))
  return np.where(eta < ETA_CAP, cap, _V_CAP + (eta - ETA_CAP) / _ETA_PER_V)


V_MOUTH = float(v_of_eta_linear(ETA_MOUTH))


def mouth_band_half(theta):
  """Half-height (material v) of the mouth band at θ: a lens that closes at the corners."""
  return _MOUTH_BAND * np.sqrt(np.clip(1.0 - (theta / THETA_MOUTH) ** 2, 0.0, None))


def eye_lens(theta):
  """Openness profile of the eyes: 1 at an eye's centre, 0 at and beyond its corners."""
  x = (np.abs(theta) - THETA_EYE) / EYE_HALF_WIDTH
  return np.sqrt(np.clip(1.0 - x * x, 0.0, None))


def upper_lid(theta):
  return -LID_UP * eye_lens(theta)


def lower_lid(theta):
  return LID_DOWN * eye_lens(theta)


def rest_coordinates(u, v):
  """(θ, η, mouth fraction) of material points.

  The mouth fraction is 0 above the mouth band, 1 below, and runs linearly across it; points of
  the band all rest on the lips' contact line.
  """
  theta = theta_of_u(u)
  band = mouth_band_half(theta)
  d = np.asarray(v, np.float64) - V_MOUTH
  a = np.abs(d)
  outer = band + _MOUTH_MARGIN
  collapsed = np.where(a <= band, 0.0,
                       np.where(a < outer, (a - band) * outer / _MOUTH_MARGIN, a))
  eta = eta_of_v_linear(V_MOUTH + np.sign(d) * collapsed)
  with np.errstate(invalid="ignore", divide="ignore"):
    fraction = np.where(band > 0, np.clip((d + band) / (2 * band), 0.0, 1.0), (d > 0) * 1.0)
  return theta, eta, fraction


def material_coordinates(theta, eta, band_side=0):
  """Inverse of `rest_coordinates` for points outside the mouth band.

  `band_side` −1 / +1 picks the upper / lower edge of the mouth band for points on the lips'
  contact line (inner-lip landmarks); 0 picks the band's middle.
  """
  theta = np.asarray(theta, np.float64)
  u = u_of_theta(theta)
  band = mouth_band_half(theta)
  d_rest = v_of_eta_linear(eta) - V_MOUTH
  a = np.abs(d_rest)
  outer = band + _MOUTH_MARGIN
  d = np.sign(d_rest) * np.where(a >= outer, a, band + a * _MOUTH_MARGIN / outer)
  d = np.where(a == 0, np.asarray(band_side) * band, d)
  return u, V_MOUTH + d


def jaw_line(theta):
  """Rest η of the lower edge of the face (chin in front, nape behind)."""
  return ETA_NAPE + (ETA_CHIN - ETA_NAPE) * ((1.0 + np.cos(theta)) / 2.0) ** 2


# --- Landmarks --------------------------------------------------------------------------------

def _landmark_table():
  """(68, 3): θ, rest η and mouth-band side of each iBUG-68 landmark on the template."""
  rows = []
  # Jaw 0–16: up the face's side in front of the ear, then along the jaw line to the chin.
  jaw_theta = [-1.30, -1.28, -1.24, -1.16, -1.02, -0.83, -0.60, -0.32, 0.0]
  jaw_eta = [0.02, 0.22, 0.42, 0.60, 0.76, 0.90, 1.02, 1.11, 1.15]
  half = list(zip(jaw_theta, jaw_eta))
  rows += [(t, e, 0) for t, e in half] + [(-t, e, 0) for t, e in reversed(half[:-1])]
  # Brows 17–21 (image left, outer → inner) and 22–26 (mirror, inner → outer).
  brow = list(zip([-0.62, -0.50, -0.36, -0.23, -0.11], [-0.18, -0.26, -0.29, -0.28, -0.24]))
  rows += [(t, e, 0) for t, e in brow] + [(-t, e, 0) for t, e in reversed(brow)]
  # Nose bridge 27–30 (to the tip) and the base 31–35.
  rows += [(0.0, e, 0) for e in (-0.04, 0.10, 0.24, 0.40)]
  rows += [(-0.14, 0.49, 0), (-0.07, 0.52, 0), (0.0, 0.54, 0), (0.07, 0.52, 0), (0.14, 0.49, 0)]
  # Eyes 36–41 (image left: outer corner, upper lid ×2, inner corner, lower lid ×2) and 42–47.
  third = EYE_HALF_WIDTH / 3
  for sign in (-1, 1):
    c = sign * THETA_EYE
    outer, inner = c + sign * EYE_HALF_WIDTH, c - sign * EYE_HALF_WIDTH
    a, b = c + sign * third, c - sign * third  # a towards the outer corner
    if sign < 0:
      eye = [(outer, -0.005), (a, upper_lid(a)), (b, upper_lid(b)), (inner, 0.005),
             (b, lower_lid(b)), (a, lower_lid(a))]
    else:
      eye = [(inner, 0.005), (b, upper_lid(b)), (a, upper_lid(a)), (outer, -0.005),
             (a, lower_lid(a)), (b, lower_lid(b))]
    rows += [(float(t), float(e), 0) for t, e in eye]
  # Outer lips 48–59: corner, upper lip to the other corner, lower lip back.
  upper = [(-0.20), (-0.07), (0.0), (0.07), (0.20)]
  lower = [(0.20), (0.08), (0.0), (-0.08), (-0.20)]
  rows.append((-THETA_MOUTH, ETA_MOUTH, 0))
  rows += [(t, float(upper_lip_line(t)), 0) for t in upper]
  rows.append((THETA_MOUTH, ETA_MOUTH, 0))
  rows += [(t, float(lower_lip_line(t)), 0) for t in lower]
  # Inner lips 60–67: corners mid-band, upper edge of the band, lower edge.
  rows.append((-0.26, ETA_MOUTH, 0))
  rows += [(t, ETA_MOUTH, -1) for t in (-0.12, 0.0, 0.12)]
  rows.append((0.26, ETA_MOUTH, 0))
  rows += [(t, ETA_MOUTH, 1) for t in (0.12, 0.0, -0.12)]
  table = np.array(rows, np.float64)
  assert table.shape == (68, 3)
  return table


def upper_lip_line(theta):
  """Rest η of the upper lip's outer edge (with a cupid's bow)."""
  x = np.asarray(theta, np.float64)
  lens = np.sqrt(np.clip(1.0 - (x / THETA_MOUTH) ** 2, 0.0, None))
  height = 0.075 + 0.018 * _gauss(np.abs(x) - 0.07, 0.04) - 0.012 * _gauss(x, 0.025)
  return ETA_MOUTH - height * lens


def lower_lip_line(theta):
  x = np.asarray(theta, np.float64)
  return ETA_MOUTH + 0.10 * np.clip(1.0 - (x / THETA_MOUTH) ** 2, 0.0, None) ** 0.6


LANDMARK_REST = _landmark_table()
LANDMARK_U, LANDMARK_V = material_coordinates(
    LANDMARK_REST[:, 0], LANDMARK_REST[:, 1], LANDMARK_REST[:, 2])

# --- Material point sets ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MaterialPoints:
  """Material points and everything about them that depends on neither identity nor expression."""

  u: np.ndarray
  v: np.ndarray
  theta: np.ndarray      # rest θ
  eta: np.ndarray        # rest η
  lower: np.ndarray      # how much the point follows the jaw, before the lateral taper
  band: np.ndarray       # mouth-cavity depth profile: sin(π·fraction) inside the band, else 0
  lid_shift: np.ndarray  # rest-η slide of the point at a full blink

  @property
  def size(self) -> int:
    return self.u.size


def material_points(u, v) -> MaterialPoints:
  u = np.asarray(u, np.float64).ravel()
  v = np.asarray(v, np.float64).ravel()
  theta, eta, fraction = rest_coordinates(u, v)
  band = mouth_band_half(theta)
  d = v - V_MOUTH
  inside = (np.abs(d) < band) & (band > 0)
  # Beside the mouth the jaw's pull fades over a wider strip of cheek, so the skin stretches
  # instead of tearing; in the mouth it is the band itself.
  corner = _smoothstep((np.abs(theta) - 0.75 * THETA_MOUTH) / 0.35)
  spread = band + 0.06 * corner
  with np.errstate(invalid="ignore", divide="ignore"):
    lower = np.where(spread > 0, np.clip((d + spread) / (2 * spread), 0.0, 1.0), (d > 0) * 1.0)
  lower = np.where(inside, fraction, lower)
  # Blink: the opening slides down onto the lower lid, the lid skin above stretches after it.
  up, down = upper_lid(theta), lower_lid(theta)
  opening = down - up
  with np.errstate(invalid="ignore", divide="ignore"):
    in_eye = (eta >= up) & (eta <= down) & (opening > 0)
    f = np.where(in_eye, (eta - up) / np.where(opening > 0, opening, 1.0), 0.0)
  above = (eta < up) & (eta > up - LID_MARGIN)
  lid_shift = np.where(in_eye, (1.0 - f) * opening,
                       np.where(above, opening * (eta - (up - LID_MARGIN)) / LID_MARGIN, 0.0))
  return MaterialPoints(u=u, v=v, theta=theta, eta=eta, lower=lower,
                        band=np.where(inside, np.sin(np.pi * fraction), 0.0), lid_shift=lid_shift)


# --- Identity shape ---------------------------------------------------------------------------


def sample_shape(rng: np.random.Generator) -> np.ndarray:
  return np.clip(rng.normal(0.0, 1.0, len(SHAPE_NAMES)), -SHAPE_CLIP, SHAPE_CLIP)


def _warp(theta, eta, s):
  """Identity warps of the rest coordinates: eye spacing and size, mouth width, face length."""
  # Eye size: scale the neighbourhood of each eye about its centre.
  for sign in (-1.0, 1.0):
    dt, de = theta - sign * THETA_EYE, eta
    r = np.sqrt((dt / 0.3) ** 2 + (de / 0.22) ** 2)
    scale = 1.0 + 0.10 * s["eye_size"] * _compact(r)
    theta, eta = sign * THETA_EYE + dt * scale, de * scale
  theta = theta * (1.0 + 0.06 * s["eye_spacing"] * _gauss(eta, 0.3)
                   + 0.10 * s["mouth_width"] * _gauss(eta - ETA_MOUTH, 0.15) * _gauss(theta, 0.6))
  eta = eta + 0.08 * s["face_length"] * _smoothstep((eta - 0.1) / 1.1)
  return theta, eta


def _features(theta, eta, s):
  """Outward displacement of the skin by the facial features (head units)."""
  at = np.abs(theta)
  d = (0.06 * (1 + 0.35 * s["brow_ridge"]) * _gauss(eta + 0.26, 0.08)
       * _compact(theta / 0.8))
  # Eye sockets, and the eyeballs inside them.
  for sign in (-1.0, 1.0):
    dt = theta - sign * THETA_EYE
    d = d - 0.12 * _gauss(dt, 0.16) * _gauss(eta + 0.01, 0.13)
    d = d + 0.055 * _gauss(dt, 0.11) * _gauss(eta, 0.07)
  # Nose: a ridge that grows to the tip, then turns under to the lip.
  length = 0.34 * (1 + 0.2 * s["nose_length"])
  width = 1 + 0.12 * s["nose_width"]
  progress = np.clip((eta + 0.12) / 0.57, 0.0, None)
  rise = progress ** 1.4 * (1.0 - _smoothstep((eta - 0.43) / 0.12))
  ridge_width = width * (0.05 + 0.06 * np.clip(progress, 0, 1))
  d = d + length * rise * _gauss(theta, ridge_width)
  d = d + 0.09 * width * _gauss(at - 0.12 * width, 0.05) * _gauss(eta - 0.45, 0.06)  # alae
  # Cheeks, the muzzle around the mouth, lips, the groove under the lip, the chin, the ears.
  d = d + 0.06 * (1 + 0.4 * s["cheeks"]) * _gauss(at - 0.5, 0.2) * _gauss(eta - 0.32, 0.2)
  d = d + 0.10 * _gauss(theta, 0.38) * _gauss(eta - 0.72, 0.2)
  lens = np.clip(1.0 - (theta / (1.08 * THETA_MOUTH)) ** 2, 0.0, None) ** 0.7
  lip = 0.045 * (1 + 0.3 * s["lip_fullness"])
  d = d + lip * lens * (_gauss(eta - (ETA_MOUTH - 0.04), 0.03) + 1.1 * _gauss(eta - (ETA_MOUTH + 0.05), 0.04))
  d = d - 0.03 * _gauss(theta, 0.22) * _gauss(eta - 0.9, 0.035)
  d = d + 0.11 * (1 + 0.4 * s["chin"]) * _gauss(theta, 0.24) * _gauss(eta - 1.04, 0.1)
  d = d + 0.22 * _gauss(at - 1.52, 0.07) * _gauss(eta - 0.18, 0.2)
  return d


def _cross_section(theta, eta, s):
  """Point on the bare head (no features) and its outward horizontal direction."""
  face_width = 1.0 + 0.06 * s["face_width"]
  jaw = 0.70 + 0.05 * s["jaw_width"]
  half_width = face_width * (1.0 - (1.0 - jaw) * _smoothstep((eta - 0.2) / 1.0))
  cap = np.sqrt(np.clip(1.0 - ((ETA_CAP - eta) / CAP_HEIGHT) ** 2, 0.0, None))
  radius = np.where(eta < ETA_CAP, cap, 1.0)
  radius = radius * (1.0 + 0.06 * (1 + s["hair_volume"]) * _smoothstep((-0.55 - eta) / 0.5))
  sin, cos = np.sin(theta), np.cos(theta)
  depth = np.where(cos > 0, 1.15, 1.05)
  x = half_width * radius * sin
  # |cos|^0.75 flattens the front (faces are flatter than ellipses) while staying smooth.
  z = -depth * radius * np.sign(cos) * np.abs(cos) ** 0.75
  return x, z


def surface(points: MaterialPoints, shape: np.ndarray, expression: np.ndarray) -> np.ndarray:
  """Head coordinates (T, N, 3) of `points` for one identity in T expression frames.

  shape: (len(SHAPE_NAMES),) standard-normal parameters; expression: (T, 4) in [0, 1].
  """
  s = dict(zip(SHAPE_NAMES, np.asarray(shape, np.float64)))
  expression = np.asarray(expression, np.float64).reshape(-1, len(EXPRESSION_NAMES))
  jaw, spread, rounding, blink = (expression[:, i:i + 1] for i in range(4))
  theta0, eta0 = points.theta[None, :], points.eta[None, :]
  # Blink slides the skin over the fixed surface: features are looked up where it slides to.
  eta1 = eta0 + blink * points.lid_shift[None, :]
  theta1 = np.broadcast_to(theta0, eta1.shape)
  theta2, eta2 = _warp(theta1, eta1, s)

  x, z = _cross_section(theta2, eta2, s)
  bump = _features(theta1, eta1, s)
  # Below the jaw line the surface turns in to the neck (a cylinder behind the chin).
  neck = _smoothstep((eta1 - jaw_line(theta1)) / 0.22)
  bump = bump * (1.0 - neck)
  x = x + bump * np.sin(theta2)
  z = z - bump * np.cos(theta2)
  x = (1.0 - neck) * x + neck * 0.58 * np.sin(theta2)
  z = (1.0 - neck) * z + neck * (0.3 - 0.6 * np.cos(theta2))
  y = eta2

  # Mouth: rounding narrows and pushes the lips forward and parts them; spreading widens and
  # pulls the corners back and up. The region stops short of the nose and the jaw's sides.
  up = eta0 < ETA_MOUTH
  region = (_compact(theta0 / 0.6)
            * _compact((eta0 - ETA_MOUTH) / np.where(up, 0.14, 0.3)))
  lens = np.clip(1.0 - (theta0 / THETA_MOUTH) ** 2, 0.0, None)
  corner = np.clip((theta0 / THETA_MOUTH) ** 2, 0.0, 1.0)
  x = x * (1.0 + (0.22 * spread - 0.28 * rounding) * region)
  z = z + (0.07 * spread * corner - 0.09 * rounding * lens) * region
  y = y + (0.07 * rounding * (points.lower[None, :] - 0.5) * lens - 0.035 * spread * corner) * region

  # Jaw: the lower face turns about the hinge; the pull fades towards the jaw's sides (so the
  # stable jaw points stay put) and into the neck.
  lateral = 1.0 - _smoothstep((np.abs(theta0) - 0.4) / 0.22)
  weight = points.lower[None, :] * lateral * (1.0 - neck)
  angle = 0.22 * jaw * weight
  hinge_y, hinge_z = 0.3, 0.2
  dy, dz = y - hinge_y, z - hinge_z
  cos, sin = np.cos(angle), np.sin(angle)
  y = hinge_y + dy * cos - dz * sin
  z = hinge_z + dy * sin + dz * cos
  z = z + 0.2 * jaw * points.band[None, :]  # the cavity recedes as the mouth opens

  scale = 1.0 + 0.05 * s["head_scale"]
  return scale * np.stack([x, y, z], axis=-1)


# --- Meshes and maps --------------------------------------------------------------------------


def _mirror(values):
  values = np.asarray(values, np.float64)
  return np.concatenate([-values[::-1], [0.0], values])


def render_mesh_material(detail: float = 1.0):
  """Material (u, v) of the render mesh's vertices, its (rows, cols) grid, and its triangles.

  Columns are dense over the face and sparse at the back of the head; rows follow the eyelids
  and the mouth band so that they bend with them. `detail` 1 gives about 2.6k vertices and 5k
  triangles (for 256 px); 0.5 about half as many (enough for 64–128 px, where the texture
  carries the fine detail).
  """
  step = 0.05 / detail
  front = np.arange(step, 0.7 + 1e-6, step)
  side = np.arange(0.8, 1.61, 0.1 if detail >= 1 else 0.2)
  back = np.linspace(1.9, np.pi, 5 if detail >= 1 else 3)
  theta = _mirror(np.concatenate([front, side, back]))
  u = u_of_theta(theta)
  u[0], u[-1] = 0.0, 1.0

  fine = detail >= 1
  rows = []  # each row: a function of θ giving the material v
  cap_rows = 8 if fine else 5
  for eta in np.concatenate([ETA_CAP - CAP_HEIGHT * np.cos(np.linspace(0, 0.5 * np.pi, cap_rows)[:-1]),
                             np.arange(-0.5, -0.17, 0.06 if fine else 0.1)]):
    rows.append(lambda t, e=eta: material_coordinates(t, np.full_like(t, e))[1])
  for offset in ((LID_MARGIN, LID_MARGIN / 2) if fine else (LID_MARGIN,)):
    rows.append(lambda t, o=offset: material_coordinates(t, upper_lid(t) - o)[1])
  for f in ((0.0, 0.5, 1.0) if fine else (0.0, 1.0)):
    rows.append(lambda t, f=f: material_coordinates(t, (1 - f) * upper_lid(t) + f * lower_lid(t))[1])
  rows.append(lambda t: material_coordinates(t, lower_lid(t) + 0.07)[1])
  for eta in np.arange(0.16, 0.60, 0.055 if fine else 0.11):
    rows.append(lambda t, e=eta: material_coordinates(t, np.full_like(t, e))[1])
  for k in ((1.0, 0.5) if fine else (1.0,)):  # upper margin (upper lip)
    rows.append(lambda t, k=k: V_MOUTH - mouth_band_half(t) - k * _MOUTH_MARGIN)
  for c in ((-1.0, -1 / 3, 1 / 3, 1.0) if fine else (-1.0, 0.0, 1.0)):  # the band
    rows.append(lambda t, c=c: V_MOUTH + c * mouth_band_half(t))
  for k in ((0.5, 1.0) if fine else (1.0,)):  # lower margin (lower lip)
    rows.append(lambda t, k=k: V_MOUTH + mouth_band_half(t) + k * _MOUTH_MARGIN)
  below = np.arange(0.92, 1.25, 0.06 if fine else 0.1)
  for eta in np.concatenate([below, [1.32, 1.42, 1.6, 2.0, ETA_BOTTOM] if fine else [1.35, 1.7, ETA_BOTTOM]]):
    rows.append(lambda t, e=eta: material_coordinates(t, np.full_like(t, e))[1])

  v = np.stack([row(theta) for row in rows])  # (R, C)
  grid_u = np.broadcast_to(u, v.shape)
  n_rows, n_cols = v.shape
  index = np.arange(n_rows * n_cols).reshape(n_rows, n_cols)
  a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
  c, d = index[1:, :-1].ravel(), index[1:, 1:].ravel()
  faces = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)]).astype(np.int32)
  return grid_u.ravel().copy(), v.ravel().copy(), (n_rows, n_cols), faces


# The position map covers the face front: θ ∈ ±1.5 and rest η from above the hairline to below
# the chin, in material coordinates.
POSITION_MAP_THETA = 1.5
POSITION_MAP_ETA = (-1.0, 1.45)


def position_map_material(size: int):
  """Material (u, v) of the (size, size) position map's pixel centres (row = v, column = u)."""
  u0, u1 = u_of_theta(-POSITION_MAP_THETA), u_of_theta(POSITION_MAP_THETA)
  v0, v1 = (float(x) for x in v_of_eta_linear(np.array(POSITION_MAP_ETA)))
  centres = (np.arange(size) + 0.5) / size
  u = u0 + centres * (u1 - u0)
  v = v0 + centres * (v1 - v0)
  return np.meshgrid(u, v, indexing="xy")


def position_map_uv(u, v):
  """Material (u, v) → coordinates in the position map's UV square [0, 1]² (the inverse of
  `position_map_material`'s window)."""
  u0, u1 = u_of_theta(-POSITION_MAP_THETA), u_of_theta(POSITION_MAP_THETA)
  v0, v1 = (float(x) for x in v_of_eta_linear(np.array(POSITION_MAP_ETA)))
  return np.stack([(np.asarray(u) - u0) / (u1 - u0), (np.asarray(v) - v0) / (v1 - v0)], -1)


def face_mask_material(u, v):
  """The face region: forehead to jaw line, ear to ear (ears excluded). Fixed in material."""
  theta, eta, _ = rest_coordinates(u, v)
  top = -0.8 + 0.25 * (theta / 1.3) ** 2
  return (np.abs(theta) <= 1.3) & (eta >= top) & (eta <= jaw_line(theta) + 0.03)
