"""SynthTalk appearance: per-identity skin texture, per-video background and light.

The texture is painted in material coordinates (see `synthtalk_head`), so it sticks to the
skin through every deformation: skin tone with blotches, pores, freckles and moles, blush,
lips, the mouth cavity with teeth (revealed when the jaw opens), eyes with sclera, iris, pupil
and lashes, brows, hair (hairline, recession, sideburns, optional fringe or baldness), an
optional beard, ears, neck and a collar. Texture row r, column c is the material point
((c + 0.5)/W, (r + 0.5)/H), the convention of `render.sample_bilinear`.

All colours are linear RGB in [0, 1]. numpy only.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from talkinghead_jax.data import synthtalk_head as head

# Skin from light to dark; hair, iris and clothing palettes.
_SKIN_TONES = np.array([
    [0.96, 0.80, 0.69], [0.90, 0.70, 0.56], [0.80, 0.58, 0.43],
    [0.63, 0.43, 0.30], [0.45, 0.30, 0.20], [0.30, 0.20, 0.14]])
_HAIR = np.array([
    [0.06, 0.05, 0.05], [0.20, 0.13, 0.08], [0.38, 0.25, 0.15], [0.78, 0.64, 0.40],
    [0.52, 0.22, 0.10], [0.62, 0.61, 0.59]])
_IRIS = np.array([
    [0.33, 0.19, 0.09], [0.14, 0.08, 0.05], [0.28, 0.44, 0.64], [0.30, 0.44, 0.28],
    [0.44, 0.49, 0.53]])

APPEARANCE_NAMES = (
    "skin_r", "skin_g", "skin_b", "lip_r", "lip_g", "lip_b", "hair_r", "hair_g", "hair_b",
    "iris_r", "iris_g", "iris_b", "brow_r", "brow_g", "brow_b", "cloth_r", "cloth_g", "cloth_b",
    "hairline", "recession", "sideburn", "fringe", "bald", "beard", "brow_thickness",
    "freckles",
)


@dataclasses.dataclass(frozen=True)
class Appearance:
  """One identity's colours and hair/beard style (see APPEARANCE_NAMES for the vector)."""

  skin: np.ndarray
  lip: np.ndarray
  hair: np.ndarray
  iris: np.ndarray
  brow: np.ndarray
  cloth: np.ndarray
  hairline: float        # rest η of the hairline at the forehead's centre
  recession: float       # how far the hairline retreats at the temples
  sideburn: float        # rest η where the hair ends in front of the ears
  fringe: float          # 0: none; >0: bangs that come this far down the forehead
  bald: float            # 1: no hair on top
  beard: float           # 0: clean-shaven … 1: full stubble
  brow_thickness: float
  freckles: float
  texture_seed: int

  def vector(self) -> np.ndarray:
    return np.concatenate([
        self.skin, self.lip, self.hair, self.iris, self.brow, self.cloth,
        [self.hairline, self.recession, self.sideburn, self.fringe, self.bald, self.beard,
         self.brow_thickness, self.freckles]]).astype(np.float32)


def _palette_pick(rng, palette, weights=None):
  index = rng.choice(len(palette), p=weights)
  return np.clip(palette[index] * rng.uniform(0.9, 1.1) + rng.normal(0, 0.015, 3), 0.02, 0.98)


def sample_appearance(rng: np.random.Generator) -> Appearance:
  tone = rng.uniform(0, len(_SKIN_TONES) - 1)
  low = int(np.floor(tone))
  high = min(low + 1, len(_SKIN_TONES) - 1)
  skin = _SKIN_TONES[low] + (tone - low) * (_SKIN_TONES[high] - _SKIN_TONES[low])
  skin = np.clip(skin * np.array([1.0, rng.uniform(0.96, 1.03), rng.uniform(0.94, 1.05)]), 0, 1)
  dark_skin = tone / (len(_SKIN_TONES) - 1)
  hair_weights = np.array([0.25 + dark_skin, 0.3, 0.25, 0.15 * (1 - dark_skin), 0.08 * (1 - dark_skin), 0.1])
  hair = _palette_pick(rng, _HAIR, hair_weights / hair_weights.sum())
  iris_weights = np.array([0.35 + dark_skin, 0.2 + dark_skin, 0.2 * (1 - dark_skin), 0.15 * (1 - dark_skin), 0.1])
  iris = _palette_pick(rng, _IRIS, iris_weights / iris_weights.sum())
  lip = np.clip(skin * np.array([0.92, 0.62, 0.62]) * rng.uniform(0.8, 1.0)
                + np.array([0.06, 0.0, 0.01]) * rng.uniform(0.0, 1.0), 0, 1)
  bald = float(rng.random() < 0.1)
  fringe = float(rng.uniform(0.1, 0.35)) if (rng.random() < 0.25 and not bald) else 0.0
  return Appearance(
      skin=skin,
      lip=lip,
      hair=hair,
      iris=iris,
      brow=np.clip(hair * rng.uniform(0.6, 0.95), 0.02, 1.0),
      cloth=rng.uniform(0.05, 0.9, 3),
      hairline=float(rng.uniform(-0.95, -0.65)),
      recession=float(rng.uniform(0.0, 0.2)),
      sideburn=float(rng.uniform(-0.05, 0.35)),
      fringe=fringe,
      bald=bald,
      beard=float(rng.uniform(0.2, 0.9)) if rng.random() < 0.25 else 0.0,
      brow_thickness=float(rng.uniform(0.035, 0.06)),
      freckles=float(rng.uniform(0.0, 1.0)) if rng.random() < 0.2 else 0.0,
      texture_seed=int(rng.integers(2**31)),
  )


def value_noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
  """Smooth noise of roughly unit variance with `cells` features along each axis (cubic)."""
  grid = rng.normal(0.0, 1.0, (cells[0] + 3, cells[1] + 3))
  zoom = ((shape[0] + 3 * shape[0] / cells[0]) / grid.shape[0],
          (shape[1] + 3 * shape[1] / cells[1]) / grid.shape[1])
  big = ndimage.zoom(grid, zoom, order=3, mode="nearest")
  oy, ox = int(shape[0] / cells[0]), int(shape[1] / cells[1])
  out = big[oy:oy + shape[0], ox:ox + shape[1]]
  if out.shape != shape:  # rounding of the zoom: pad by edge values
    out = np.pad(out, [(0, shape[0] - out.shape[0]), (0, shape[1] - out.shape[1])], mode="edge")
  return out / (out.std() + 1e-9)


def _soft(x, width):
  """0 → 1 as x goes from −width/2 to +width/2 (a soft inequality x > 0)."""
  return head._smoothstep(x / width + 0.5)


def _blend(base, colour, weight):
  weight = np.clip(weight, 0.0, 1.0)[..., None]
  return base * (1.0 - weight) + np.asarray(colour) * weight


def brow_line(theta):
  """Rest η of the brows' centre line (through the brow landmarks), NaN beyond their ends."""
  table = head.LANDMARK_REST[17:22]
  at = np.abs(theta)
  ends = (-table[:, 0])  # image-left brow has θ < 0; its mirror gives |θ|
  order = np.argsort(ends)
  eta = np.interp(at, ends[order], table[order, 1])
  return np.where((at > ends.min() - 0.04) & (at < ends.max() + 0.05), eta, np.nan)


def hairline(theta, look: Appearance):
  """Rest η above which (smaller η) the scalp carries hair."""
  at = np.abs(theta)
  front = look.hairline + look.fringe
  eta = front - look.recession * head._gauss(at - 0.6, 0.15)
  eta = eta + (look.sideburn - front) * head._smoothstep((at - 0.85) / 0.35)
  return eta + (0.55 - look.sideburn) * head._smoothstep((at - 1.45) / 0.3)


def paint_texture(look: Appearance, size: int = 512) -> np.ndarray:
  """The identity's (size, size, 3) float32 texture in material coordinates."""
  rng = np.random.default_rng(look.texture_seed)
  centres = (np.arange(size) + 0.5) / size
  u, v = np.meshgrid(centres, centres, indexing="xy")
  theta, eta, fraction = head.rest_coordinates(u, v)
  at = np.abs(theta)
  shape = (size, size)

  # Skin: blotches, pores, a warmer centre of the face, blush, a redder nose tip.
  blotch = value_noise(rng, shape, (12, 12))
  pores = value_noise(rng, shape, (160, 160))
  tex = look.skin[None, None, :] * (1.0 + 0.03 * blotch + 0.012 * pores)[..., None]
  redness = (0.5 * head._gauss(at - 0.5, 0.18) * head._gauss(eta - 0.35, 0.15)
             + 0.6 * head._gauss(theta, 0.08) * head._gauss(eta - 0.42, 0.07))
  tex = tex * (1.0 - 0.12 * redness[..., None] * np.array([0.0, 1.0, 0.8]))
  under_eye = head._gauss(at - head.THETA_EYE, 0.14) * head._gauss(eta - 0.1, 0.05)
  tex = tex * (1.0 - 0.12 * under_eye)[..., None]
  if look.freckles > 0:
    spots = value_noise(rng, shape, (90, 90)) > 2.0 - 0.6 * look.freckles
    area = head._gauss(at, 0.6) * head._gauss(eta - 0.25, 0.3)
    tex = _blend(tex, look.skin * np.array([0.8, 0.62, 0.5]), 0.6 * spots * area)
  for _ in range(int(rng.integers(0, 4))):  # moles
    mt, me = rng.uniform(-1.0, 1.0), rng.uniform(-0.5, 1.1)
    mole = ((theta - mt) / 0.018) ** 2 + ((eta - me) / 0.018) ** 2 < 1.0
    tex = _blend(tex, look.skin * 0.45, 0.8 * mole)
  # Ears: a touch darker and redder, with a darker inner fold.
  ear_r = np.sqrt(((at - 1.52) / 0.09) ** 2 + ((eta - 0.18) / 0.26) ** 2)
  tex = tex * (1.0 - 0.08 * (ear_r < 1.0))[..., None]
  tex = tex * (1.0 - 0.18 * ((ear_r > 0.45) & (ear_r < 0.6)))[..., None]
  # Neck: slightly darker than the face; clothing below a collar line.
  neck = head._smoothstep((eta - head.jaw_line(theta) - 0.05) / 0.2)
  tex = tex * (1.0 - 0.08 * neck)[..., None]
  collar = 1.85 - 0.18 * head._gauss(theta, 0.5) + 0.02 * value_noise(rng, shape, (20, 4))
  weave = 1.0 + 0.06 * value_noise(rng, shape, (120, 60))
  tex = _blend(tex, look.cloth[None, None, :] * weave[..., None], _soft(eta - collar, 0.02))

  # Beard: stubble over jaw, chin and upper lip.
  if look.beard > 0:
    jaw_area = ((eta > 0.5 + 0.2 * (1 - head._smoothstep((at - 0.2) / 0.3)))
                & (eta < head.jaw_line(theta) + 0.12) & (at < 1.35))
    moustache = (eta > 0.56) & (eta < head.upper_lip_line(theta) - 0.01) & (at < 0.38)
    stubble = value_noise(rng, shape, (220, 220)) > 0.3
    density = look.beard * (jaw_area | moustache) * (0.55 + 0.45 * stubble)
    tex = _blend(tex, look.hair * 0.7, 0.75 * density)

  # Lips, then the mouth band (cavity and teeth) over them.
  in_band = (np.abs(v - head.V_MOUTH) < head.mouth_band_half(theta)) & (head.mouth_band_half(theta) > 0)
  lip_area = (_soft(eta - head.upper_lip_line(theta), 0.012) * _soft(head.lower_lip_line(theta) - eta, 0.012)
              * _soft(head.THETA_MOUTH - at, 0.02))
  lip_tex = look.lip[None, None, :] * (1.0 + 0.05 * value_noise(rng, shape, (200, 20)))[..., None]
  tex = _blend(tex, lip_tex, lip_area)
  depth = np.sin(np.pi * fraction)
  cavity = _blend(np.zeros(shape + (3,)) + np.array([0.32, 0.08, 0.08]),
                  np.array([0.1, 0.02, 0.02]), depth)
  teeth = np.array([0.88, 0.86, 0.8])
  cavity = _blend(cavity, teeth, (fraction < 0.2) * (at < 0.22))
  cavity = _blend(cavity, teeth * 0.9, (fraction > 0.85) * (at < 0.2))
  cavity = _blend(cavity, np.array([0.6, 0.28, 0.28]), (fraction > 0.6) * (fraction <= 0.85) * (at < 0.18))
  tex = np.where(in_band[..., None], cavity, tex)

  # Eyes: sclera, iris, pupil, a highlight, the lid's shadow, lashes on the upper lid.
  up, down = head.upper_lid(theta), head.lower_lid(theta)
  lens = head.eye_lens(theta)
  in_eye = (eta > up) & (eta < down) & (lens > 0)
  local_t = at - head.THETA_EYE
  iris_r = np.sqrt(local_t ** 2 + eta ** 2)
  streaks = 1.0 + 0.15 * value_noise(rng, shape, (300, 300))
  eye = np.zeros(shape + (3,)) + np.array([0.92, 0.89, 0.86])
  eye = _blend(eye, np.array([0.85, 0.6, 0.58]), head._gauss(np.abs(local_t) - head.EYE_HALF_WIDTH, 0.03))
  eye = _blend(eye, look.iris[None, None, :] * streaks[..., None], _soft(0.052 - iris_r, 0.008))
  eye = _blend(eye, look.iris * 0.5, _soft(0.01 - np.abs(iris_r - 0.05), 0.006))
  eye = _blend(eye, np.array([0.02, 0.02, 0.02]), _soft(0.02 - iris_r, 0.006))
  highlight = np.sqrt((local_t + 0.016) ** 2 + (eta + 0.014) ** 2) < 0.008
  eye = _blend(eye, np.array([1.0, 1.0, 1.0]), highlight)
  with np.errstate(invalid="ignore", divide="ignore"):
    f_eye = np.clip((eta - up) / np.maximum(down - up, 1e-6), 0, 1)
  eye = eye * (0.7 + 0.3 * np.sqrt(f_eye))[..., None]
  tex = np.where(in_eye[..., None], eye, tex)
  lashes = (eta > up - 0.014) & (eta < up + 0.004) & (lens > 0.15)
  tex = _blend(tex, look.hair * 0.3, 0.9 * lashes)
  lower_line = (eta > down - 0.003) & (eta < down + 0.008) & (lens > 0.3)
  tex = _blend(tex, look.skin * 0.7, 0.6 * lower_line)

  # Brows: a band along the brow line, thicker at the inner end, made of strands.
  centre = brow_line(theta)
  thick = look.brow_thickness * (1.25 - 0.6 * np.clip((at - 0.1) / 0.55, 0, 1))
  with np.errstate(invalid="ignore"):
    brow = np.nan_to_num(_soft(thick / 2 - np.abs(eta - centre), 0.012))
  strands = np.clip(0.85 + 0.25 * value_noise(rng, shape, (40, 300)), 0, 1)
  tex = _blend(tex, look.brow, brow * strands)

  # Hair: above the hairline, with strands that run down the head and a ragged edge.
  line = hairline(theta, look) + 0.025 * value_noise(rng, shape, (60, 6))
  hair = _soft(line - eta, 0.03)
  ear = ear_r < 1.1
  hair = hair * (1.0 - ear)
  if look.bald:
    hair = hair * _soft(eta + 0.55, 0.08) * _soft(at - 1.0, 0.2)
  strand = value_noise(rng, shape, (8, 260)) * 0.5 + value_noise(rng, shape, (30, 60)) * 0.3
  hair_tex = look.hair[None, None, :] * np.clip(1.0 + 0.35 * strand, 0.4, 1.6)[..., None]
  tex = _blend(tex, hair_tex, hair)
  return np.clip(tex, 0.0, 1.0).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Scene:
  """One video's surroundings: background image, light and colour tint."""

  background: np.ndarray  # (S, S, 3) float32
  light_direction: np.ndarray  # (3,) unit, from the surface towards the light (camera space)
  ambient: np.ndarray     # (3,) per channel
  diffuse: np.ndarray     # (3,) per channel


def sample_scene(rng: np.random.Generator, size: int, cloth: np.ndarray) -> Scene:
  """A blurred room, the speaker's shoulders in `cloth` colour, and a light from the front."""
  top, bottom = rng.uniform(0.05, 0.9, 3), rng.uniform(0.05, 0.9, 3)
  y = (np.arange(size) + 0.5) / size
  angle = rng.uniform(-0.6, 0.6)
  xx, yy = np.meshgrid(y, y, indexing="xy")
  ramp = np.clip(0.5 + (yy - 0.5) * np.cos(angle) + (xx - 0.5) * np.sin(angle), 0, 1)
  background = top * (1 - ramp[..., None]) + bottom * ramp[..., None]
  # A few out-of-focus shapes (a room behind the speaker), and fine grain.
  for _ in range(int(rng.integers(2, 6))):
    cx, cy = rng.uniform(0, 1, 2)
    rx, ry = rng.uniform(0.08, 0.4, 2)
    colour = rng.uniform(0.05, 0.95, 3)
    blob = np.clip(1.0 - ((xx - cx) / rx) ** 2 - ((yy - cy) / ry) ** 2, 0, 1) ** 0.5
    background = _blend(background, colour, 0.6 * blob)
  # Shoulders: the top of an ellipse below the head (they barely move, so they are part of
  # the background), shaded from the top, with a fold or two.
  width, top = rng.uniform(0.42, 0.55), rng.uniform(0.74, 0.8)
  centre = 0.5 + rng.normal(0.0, 0.02)
  shoulders = ((xx - centre) / width) ** 2 + ((yy - top - 0.45) / 0.45) ** 2 < 1.0
  folds = 1.0 + 0.06 * value_noise(rng, (size, size), (6, 3))
  cloth_shade = (0.75 + 0.25 * np.clip((yy - top) / 0.2, 0, 1)) * folds
  background = np.where(shoulders[..., None], cloth * cloth_shade[..., None], background)
  grain = value_noise(rng, (size, size), (max(size // 8, 2), max(size // 8, 2)))
  background = background * (1.0 + 0.03 * grain[..., None])
  azimuth, elevation = rng.uniform(-0.9, 0.9), rng.uniform(-0.7, 0.4)
  direction = np.array([np.sin(azimuth) * np.cos(elevation), np.sin(elevation),
                        -np.cos(azimuth) * np.cos(elevation)])
  tint = 1.0 + rng.normal(0.0, 0.04, 3)
  ambient = rng.uniform(0.4, 0.65)
  diffuse = rng.uniform(0.35, 0.6)
  return Scene(
      background=np.clip(background, 0, 1).astype(np.float32),
      light_direction=direction.astype(np.float32),
      ambient=(ambient * tint).astype(np.float32),
      diffuse=(diffuse * tint).astype(np.float32),
  )
