"""SynthTalk: the embedded procedural talking-head data set, with full ground truth.

    manifest = generate("synthtalk", identities=4, clips_per_identity=2, seconds=2.0,
                        image_size=128, seed=0)

writes VoxCeleb2's layout, `OUT/{dev,test}/mp4/idNNNNN/<video>/<clip>.mp4` (H.264 + AAC,
25 fps), with a ground-truth `<clip>.npz` beside every clip, `OUT/canonical_face.npy` and
`OUT/synthtalk.json` (the parameters and the list of clips). docs/data.md describes every field.

How a clip is made (modules `synthtalk_*` hold one idea each):

1. The identity (`make_identity`): head shape (`synthtalk_head`), colours and hair
   (`synthtalk_appearance`), voice (`synthtalk_speech`), head-motion style and blink rate
   (`synthtalk_motion`), and the rigid alignment that puts its neutral face onto the canonical
   face over the 27 stable landmarks.
2. The video: background, light, and how this video's motion departs from the style.
3. The clip: a syllable timeline → speech audio and the mouth (jaw, spread, round), blinks,
   head motion with nods on stressed syllables; the head surface in every frame, posed;
   rendered with `talkinghead_jax.render` (batched over frames, Gouraud-shaded, textured).

Pose convention (DESIGN.md §2): pose = [rotvec(R), t] with front = R·l + t. `front` is the
identity's face (with expression) aligned to the canonical face, so
`rigid.pose_from_landmarks(landmarks, canonical)` recovers the stored pose exactly (to float32
rounding): the 27 stable points do not move with expression, and each identity's neutral face is
Procrustes-aligned to the canonical face on them.

Randomness: everything about identity i comes from `SeedSequence(seed, spawn_key=(i, …))`, so
a set with more identities, clips or workers contains the same files for the ones they share.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import time
import zipfile
from typing import Any

import numpy as np

from talkinghead_jax.data import synthtalk_appearance as appearance_lib
from talkinghead_jax.data import synthtalk_head as head
from talkinghead_jax.data import synthtalk_motion as motion
from talkinghead_jax.data import synthtalk_speech as speech
from talkinghead_jax.errors import InputError, TalkingHeadError
from talkinghead_jax.fileio import atomic_write_path
from talkinghead_jax.geometry import rigid

GENERATOR_VERSION = 1
MANIFEST_NAME = "synthtalk.json"
CANONICAL_NAME = "canonical_face.npy"
# The face's landmark box spans this fraction of the crop, as in VoxCeleb2-style crops
# (upstream's crop side is 205/90 of the landmark extent).
FACE_FRACTION = 90.0 / 205.0
# The head turns about a point behind and below the face (head units, before placement).
_PIVOT = np.array([0.0, 0.75, 0.3])
# Frames rendered per jitted call (a fixed size: one compilation per image size).
RENDER_CHUNK = 25
_SENSOR_NOISE = 1.2  # std of the added pixel noise, in 8-bit levels
FRAMES_PER_WORKER = 500  # below this much work per process, another process costs more than it saves


@dataclasses.dataclass(frozen=True)
class SynthConfig:
  """Everything that shapes a clip besides the seed and its place in the set."""

  image_size: int = 128
  seconds: float = 4.0
  fps: int = 25
  sample_rate: int = 16000
  clips_per_video: int = 2
  test_every: int = 5
  crf: int = 18
  preset: str = "veryfast"

  def __post_init__(self):
    if self.image_size % 2 or not 32 <= self.image_size <= 512:
      raise TalkingHeadError(f"image size must be even and within 32–512 px, got {self.image_size}")
    if not self.seconds > 0:
      raise TalkingHeadError(f"seconds must be positive, got {self.seconds}")
    if self.clips_per_video < 1:
      raise TalkingHeadError(f"clips per video must be >= 1, got {self.clips_per_video}")
    if self.test_every < 2:
      raise TalkingHeadError(f"test_every must be >= 2, got {self.test_every}")
    if self.sample_rate < 8000:
      raise TalkingHeadError(f"sample rate must be >= 8000 Hz, got {self.sample_rate}")

  @property
  def num_frames(self) -> int:
    return max(1, int(round(self.seconds * self.fps)))

  @property
  def audio_rate(self) -> int:
    """The rate the mp4 stores: `sample_rate` if AAC can hold it, else 48 kHz (what
    `media.write_video` would resample to); the speech is synthesised at this rate."""
    from talkinghead_jax.media import AAC_SAMPLE_RATES

    return self.sample_rate if self.sample_rate in AAC_SAMPLE_RATES else 48000

  @property
  def texture_size(self) -> int:
    return 256 if self.image_size <= 128 else 512

  @property
  def mesh_detail(self) -> float:
    return 0.5 if self.image_size <= 128 else 1.0


def _rng(seed: int, *key: int) -> np.random.Generator:
  return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in key)))


# --- Placement: head units → pixels of the crop -------------------------------------------------


@functools.lru_cache(maxsize=None)
def _template_landmarks() -> np.ndarray:
  """The template's neutral landmarks in head units (68, 3)."""
  points = head.material_points(head.LANDMARK_U, head.LANDMARK_V)
  return head.surface(points, np.zeros(len(head.SHAPE_NAMES)), np.zeros((1, 4)))[0]


@dataclasses.dataclass(frozen=True)
class Placement:
  """pixel = scale · head + offset, the same for every identity of a given image size."""

  scale: float
  offset: np.ndarray

  def apply(self, points: np.ndarray) -> np.ndarray:
    return points * self.scale + self.offset


@functools.lru_cache(maxsize=None)
def placement(image_size: int) -> Placement:
  """The canonical face's landmark box is centred and spans FACE_FRACTION of the crop."""
  template = _template_landmarks()
  low, high = template.min(0), template.max(0)
  scale = FACE_FRACTION * image_size / float(np.max(high[:2] - low[:2]))
  centre = (low + high) / 2
  offset = np.array([image_size / 2 - scale * centre[0], image_size / 2 - scale * centre[1],
                     -scale * template[:, 2].mean()])
  return Placement(scale=scale, offset=offset)


def canonical_face(image_size: int) -> np.ndarray:
  """The identity-independent mean neutral face (68, 3) float32 in pixels: the template head
  (all shape parameters 0) with a closed mouth and open eyes, frontal."""
  return placement(image_size).apply(_template_landmarks()).astype(np.float32)


# --- Identities --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Identity:
  index: int
  name: str
  split: str
  shape: np.ndarray
  look: appearance_lib.Appearance
  speaker: speech.Speaker
  style: motion.MotionStyle
  blink_rate: float
  align_rotation: np.ndarray     # (3, 3): head units, neutral stable points → template's
  align_translation: np.ndarray  # (3,)


def identity_name(index: int) -> str:
  return f"id{index + 1:05d}"


def split_of(index: int, test_every: int) -> str:
  """Identity i is in the test split when i % test_every == 1 (so sets of >= 2 identities
  always have one), otherwise in dev; independent of how many identities there are."""
  return "test" if index % test_every == 1 else "dev"


def make_identity(seed: int, index: int, test_every: int = 5) -> Identity:
  rng = _rng(seed, index, 0)
  shape = head.sample_shape(rng)
  look = appearance_lib.sample_appearance(rng)
  speaker = speech.sample_speaker(rng)
  style = motion.sample_style(rng)
  blink_rate = motion.sample_blink_rate(rng)
  points = head.material_points(head.LANDMARK_U, head.LANDMARK_V)
  neutral = head.surface(points, shape, np.zeros((1, 4)))[0]
  stable = head.STABLE_POINTS
  rotation, translation = rigid.fit(neutral[stable], _template_landmarks()[stable])
  return Identity(index=index, name=identity_name(index), split=split_of(index, test_every),
                  shape=shape, look=look, speaker=speaker, style=style, blink_rate=blink_rate,
                  align_rotation=rotation, align_translation=translation)


def frontal_points(identity: Identity, points: head.MaterialPoints, expression: np.ndarray,
                   image_size: int) -> np.ndarray:
  """Material points of the identity's face, aligned to the canonical face, in pixels (T, N, 3)."""
  surface = head.surface(points, identity.shape, expression)
  aligned = surface @ identity.align_rotation.T + identity.align_translation
  return placement(image_size).apply(aligned)


def position_map(identity: Identity, size: int) -> tuple[np.ndarray, np.ndarray]:
  """The neutral frontal position map (size, size, 3) float32 in pixels of a `size` crop, and
  its face mask (size, size) bool. Texel (i, j) is the material point of the map's UV window
  at ((j + 0.5)/size, (i + 0.5)/size) (geometry.mesh's convention)."""
  u, v = head.position_map_material(size)
  points = head.material_points(u, v)
  positions = frontal_points(identity, points, np.zeros((1, 4)), size)[0]
  return (positions.reshape(size, size, 3).astype(np.float32),
          head.face_mask_material(u, v).reshape(size, size))


# --- Poses ---------------------------------------------------------------------------------------


def head_rotation(angles: np.ndarray) -> np.ndarray:
  """(T, 3) yaw, pitch, roll → (T, 3, 3) rotation that poses a frontal head:
  roll about z · pitch about x (positive: chin down) · yaw about y."""
  angles = np.asarray(angles, np.float64)
  zeros = np.zeros_like(angles[:, 0])
  yaw = rigid.rotvec_to_matrix(np.stack([zeros, angles[:, 0], zeros], -1))
  pitch = rigid.rotvec_to_matrix(np.stack([angles[:, 1], zeros, zeros], -1))
  roll = rigid.rotvec_to_matrix(np.stack([zeros, zeros, angles[:, 2]], -1))
  return roll @ pitch @ yaw


def pose_parameters(angles: np.ndarray, translation: np.ndarray, image_size: int) -> np.ndarray:
  """The project's pose (T, 6) for a head turned by `angles` about the pivot and shifted by
  `translation` (pixels): posed = Q(front − c) + c + d, so R = Qᵀ and t = c − Qᵀ(c + d)."""
  q = head_rotation(angles)
  pivot = placement(image_size).apply(_PIVOT)
  rotation = np.swapaxes(q, -1, -2)
  t = pivot - np.einsum("tij,tj->ti", rotation, pivot + translation)
  return np.concatenate([rigid.matrix_to_rotvec(rotation), t], -1)


# --- Rendering ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RenderMesh:
  points: head.MaterialPoints  # mesh vertices then the 68 landmarks
  num_vertices: int
  faces: np.ndarray
  uv: np.ndarray               # (V, 2) float32
  incidence: Any               # scipy.sparse (V, F): sums face normals into vertex normals


@functools.lru_cache(maxsize=None)
def render_mesh_for(detail: float) -> RenderMesh:
  from scipy import sparse

  u, v, _, faces = head.render_mesh_material(detail)
  points = head.material_points(np.concatenate([u, head.LANDMARK_U]),
                                np.concatenate([v, head.LANDMARK_V]))
  rows = faces.ravel()
  cols = np.repeat(np.arange(faces.shape[0]), 3)
  incidence = sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(u.size, faces.shape[0]))
  return RenderMesh(points=points, num_vertices=u.size, faces=faces,
                    uv=np.stack([u, v], -1).astype(np.float32), incidence=incidence)


def vertex_shading(vertices: np.ndarray, mesh: RenderMesh, scene: appearance_lib.Scene) -> np.ndarray:
  """(T, V, 3) Lambert shading per vertex (ambient + diffuse·max(n·l, 0), two-sided)."""
  corners = vertices[:, mesh.faces]  # (T, F, 3, 3)
  face_normals = np.cross(corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0])
  frames = vertices.shape[0]
  summed = mesh.incidence @ face_normals.transpose(1, 0, 2).reshape(face_normals.shape[1], -1)
  normals = summed.reshape(-1, frames, 3).transpose(1, 0, 2)
  normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
  normals = np.where(normals[..., 2:] > 0, -normals, normals)  # face the camera (−z)
  cosine = np.maximum(normals @ scene.light_direction.astype(np.float64), 0.0)
  return scene.ambient + scene.diffuse * cosine[..., None]


def _tent3(images):
  """Separable [1, 2, 1]/4 blur of (B, H, W, C) images along H and W, edges repeated."""
  import jax.numpy as jnp

  padded = jnp.pad(images, ((0, 0), (1, 1), (0, 0), (0, 0)), mode="edge")
  images = 0.25 * padded[:, :-2] + 0.5 * padded[:, 1:-1] + 0.25 * padded[:, 2:]
  padded = jnp.pad(images, ((0, 0), (0, 0), (1, 1), (0, 0)), mode="edge")
  return 0.25 * padded[:, :, :-2] + 0.5 * padded[:, :, 1:-1] + 0.25 * padded[:, :, 2:]


@functools.lru_cache(maxsize=None)
def _frame_renderer(image_size: int, detail: float, tile_capacity: int, pair_capacity: int):
  """A jitted function: vertices, per-vertex shading, texture, background, noise key →
  (uint8 frames, overflow count)."""
  import jax
  import jax.numpy as jnp

  from talkinghead_jax import render

  mesh = render_mesh_for(detail)
  faces = jnp.asarray(mesh.faces)
  uv = jnp.asarray(mesh.uv)

  @jax.jit
  def frames(vertices, shade, texture, background, key):
    batch = vertices.shape[0]
    attributes = jnp.concatenate([jnp.broadcast_to(uv, (batch,) + uv.shape), shade], -1)
    image, overflow = render.render_mesh(vertices, faces, attributes, image_size=image_size,
                                         cull_backfaces=True, tile_capacity=tile_capacity,
                                         pair_capacity=pair_capacity, return_overflow=True)
    colour = render.sample_bilinear(texture, image[..., :2]) * image[..., 2:5]
    alpha = image[..., 5:6]
    composite = colour * alpha + background * (1.0 - alpha)
    # Soften the silhouette: where coverage changes, use a 3×3 tent-filtered image (a cheap
    # stand-in for antialiasing that the hard rasterizer does not do).
    blurred = _tent3(jnp.concatenate([composite, alpha], -1))
    edge = (blurred[..., 3:] > 0.01) & (blurred[..., 3:] < 0.99)
    composite = jnp.where(edge, blurred[..., :3], composite)
    noise = jax.random.normal(key, composite.shape) * _SENSOR_NOISE
    return jnp.clip(composite * 255.0 + noise + 0.5, 0, 255).astype(jnp.uint8), overflow

  return frames


@functools.lru_cache(maxsize=None)
def render_capacity(image_size: int, detail: float) -> tuple[int, int]:
  """(tile, pair) capacities for the rasterizer's static buffers, measured once per size on
  fixed probes (extreme shapes, open jaw, turned and tilted heads) with 30 % headroom.
  Rendering retries with doubled capacities if a clip still overflows, so they only set
  speed, never the pixels."""
  from talkinghead_jax import render

  mesh = render_mesh_for(detail)
  probes = []
  for value in (-1.5, 0.0, 1.5):
    shape = np.full(len(head.SHAPE_NAMES), value)
    for jaw in (0.0, 1.0):
      surface = head.surface(mesh.points, shape, np.array([[jaw, 0.5, 0.0, 0.0]]))
      front = placement(image_size).apply(surface[:, :mesh.num_vertices])
      for yaw in (-0.45, 0.0, 0.45):
        for pitch in (-0.25, 0.25):
          pose = pose_parameters(np.array([[yaw, pitch, 0.0]]), np.zeros((1, 3)), image_size)
          probes.append(rigid.unfrontalize(front, pose)[0])
  capacity = render.suggest_capacity(np.stack(probes).astype(np.float32), mesh.faces,
                                     image_size=image_size, cull_backfaces=True, headroom=1.3)
  return int(capacity.tile_capacity), int(capacity.pair_capacity)


def render_frames(vertices: np.ndarray, texture: np.ndarray, scene: appearance_lib.Scene,
                  config: SynthConfig, noise_seed: int) -> np.ndarray:
  """Renders posed mesh vertices (T, V, 3) in pixels → (T, S, S, 3) uint8, RENDER_CHUNK
  frames per call (the last chunk padded), retrying with larger capacities on overflow."""
  import jax
  import jax.numpy as jnp

  mesh = render_mesh_for(config.mesh_detail)
  shade = vertex_shading(vertices, mesh, scene).astype(np.float32)
  frames = vertices.shape[0]
  padded = -(-frames // RENDER_CHUNK) * RENDER_CHUNK
  pad = [(0, padded - frames), (0, 0), (0, 0)]
  vertices = np.pad(vertices.astype(np.float32), pad, mode="edge")
  shade = np.pad(shade, pad, mode="edge")
  texture = jnp.asarray(texture)
  background = jnp.asarray(scene.background)
  tile_capacity, pair_capacity = render_capacity(config.image_size, config.mesh_detail)
  base_key = jax.random.key(noise_seed)
  while True:
    renderer = _frame_renderer(config.image_size, config.mesh_detail, tile_capacity, pair_capacity)
    chunks, overflowed = [], False
    for index, start in enumerate(range(0, padded, RENDER_CHUNK)):
      image, overflow = renderer(vertices[start:start + RENDER_CHUNK], shade[start:start + RENDER_CHUNK],
                                 texture, background, jax.random.fold_in(base_key, index))
      if int(np.max(np.asarray(overflow))) > 0:
        overflowed = True
        break
      chunks.append(np.asarray(image))
    if not overflowed or tile_capacity >= mesh.faces.shape[0]:
      return np.concatenate(chunks)[:frames]
    tile_capacity, pair_capacity = 2 * tile_capacity, 2 * pair_capacity


# --- Clips -------------------------------------------------------------------------------------


def video_name(rng: np.random.Generator) -> str:
  """An 11-character YouTube-style id (never starting with '-' or '_', which command lines
  would take for an option)."""
  alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
  first = alphabet[int(rng.integers(0, 62))]
  return first + "".join(alphabet[i] for i in rng.integers(0, len(alphabet), 10))


@dataclasses.dataclass(frozen=True)
class ClipSpec:
  """Where a clip sits in the set."""

  identity: int
  video: int           # index of the video within the identity
  clip_in_video: int
  number: int          # clip number within the identity, from 1 (the file name)

  @staticmethod
  def of(identity: int, clip: int, clips_per_video: int) -> "ClipSpec":
    return ClipSpec(identity, clip // clips_per_video, clip % clips_per_video, clip + 1)


@dataclasses.dataclass(frozen=True)
class Clip:
  frames: np.ndarray            # (T, S, S, 3) uint8
  audio: np.ndarray             # (n,) float32 at config.audio_rate
  ground_truth: dict[str, np.ndarray]
  video_name: str


def video_setup(seed: int, identity: Identity, video: int, image_size: int):
  """A video's name, scene (background, shoulders, light) and motion variation."""
  rng = _rng(seed, identity.index, 1, video)
  name = video_name(rng)
  scene = appearance_lib.sample_scene(rng, image_size, identity.look.cloth)
  variation = motion.sample_video_variation(rng)
  return name, scene, variation


def clip_timeline(seed: int, identity: Identity, spec: ClipSpec, config: SynthConfig):
  """The clip's random draws: syllable timeline, audio noise seed, blinks, pixel-noise seed."""
  rng = _rng(seed, identity.index, 2, spec.video, spec.clip_in_video)
  timeline = speech.make_timeline(rng, config.num_frames / config.fps, identity.speaker)
  audio_seed, noise_seed = (int(x) for x in rng.integers(0, 2**31, 2))
  blink = motion.blink_track(rng, identity.blink_rate, speech.frame_times(timeline.seconds, config.fps))
  return timeline, audio_seed, noise_seed, blink


def make_clip(seed: int, identity: Identity, spec: ClipSpec, config: SynthConfig,
              texture: np.ndarray | None = None) -> Clip:
  """Everything about one clip: frames, audio and ground truth (nothing written)."""
  size = config.image_size
  name, scene, variation = video_setup(seed, identity, spec.video, size)
  timeline, audio_seed, noise_seed, blink = clip_timeline(seed, identity, spec, config)
  audio = speech.synthesize(timeline, identity.speaker, config.audio_rate,
                            np.random.default_rng(audio_seed))
  mouth = speech.mouth_trajectory(timeline, identity.speaker, config.fps)
  expression = np.stack([mouth.jaw, mouth.spread, mouth.round, blink], -1).astype(np.float64)

  # The clip's place on its video's continuous timeline (clips of a video follow each other).
  offset = spec.clip_in_video * (timeline.seconds + 1.0)
  times = speech.frame_times(timeline.seconds, config.fps) + offset
  stress = timeline.nucleus_start[timeline.stressed] + offset
  head_motion = motion.head_motion(identity.style, variation, times, stress, size)
  pose = pose_parameters(head_motion.angles, head_motion.translation, size)

  mesh = render_mesh_for(config.mesh_detail)
  front_all = frontal_points(identity, mesh.points, expression, size)
  posed_all = rigid.unfrontalize(front_all, pose)
  vertices = posed_all[:, :mesh.num_vertices]
  if texture is None:
    texture = appearance_lib.paint_texture(identity.look, config.texture_size)
  frames = render_frames(vertices, texture, scene, config, noise_seed)

  front = front_all[:, mesh.num_vertices:]
  landmarks = posed_all[:, mesh.num_vertices:]
  neutral = frontal_points(identity, head.material_points(head.LANDMARK_U, head.LANDMARK_V),
                           np.zeros((1, 4)), size)[0]
  positions, mask = position_map(identity, size)
  ground_truth = {
      "landmarks": landmarks.astype(np.float32),
      "pose": pose.astype(np.float32),
      "front": front.astype(np.float32),
      "expression": expression.astype(np.float32),
      "expression_names": np.array(head.EXPRESSION_NAMES),
      "identity": identity.shape.astype(np.float32),
      "identity_names": np.array(head.SHAPE_NAMES),
      "appearance": identity.look.vector(),
      "appearance_names": np.array(appearance_lib.APPEARANCE_NAMES),
      "neutral": neutral.astype(np.float32),
      "canonical": canonical_face(size),
      "position_map": positions,
      "face_mask": mask,
      "landmark_uv": head.position_map_uv(head.LANDMARK_U, head.LANDMARK_V).astype(np.float32),
      "key_frame": np.array(int(np.argmin(np.abs(pose[:, :3]).sum(-1))), np.int32),
      "head_angles": head_motion.angles.astype(np.float32),
      "head_translation": head_motion.translation.astype(np.float32),
      "audio_envelope": mouth.envelope,
      "vowel": mouth.vowel,
      "stress": mouth.stress,
      "light_direction": scene.light_direction,
      "fps": np.array(config.fps, np.int32),
      "sample_rate": np.array(config.audio_rate, np.int32),
      "image_size": np.array(size, np.int32),
  }
  return Clip(frames=frames, audio=audio, ground_truth=ground_truth, video_name=name)


# --- Writing -----------------------------------------------------------------------------------


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
  """A compressed .npz that np.load reads, byte-identical for identical arrays (fixed zip
  timestamps, fixed order), written atomically."""
  with atomic_write_path(path) as temporary, \
      zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
    for name, value in arrays.items():
      info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
      info.compress_type = zipfile.ZIP_DEFLATED
      with archive.open(info, "w", force_zip64=True) as handle:
        np.lib.format.write_array(handle, np.asanyarray(value), allow_pickle=False)


def clip_path(out: pathlib.Path, identity: Identity, video: str, spec: ClipSpec) -> pathlib.Path:
  """OUT/{split}/mp4/idNNNNN/<video>/<NNNNN> (no suffix)."""
  return out / identity.split / "mp4" / identity.name / video / f"{spec.number:05d}"


def write_clip(path: pathlib.Path, clip: Clip, config: SynthConfig) -> None:
  from talkinghead_jax import media

  media.write_video(path.with_suffix(".mp4"), clip.frames, fps=config.fps, audio=clip.audio,
                    sample_rate=config.audio_rate, crf=config.crf, preset=config.preset)
  write_npz(path.with_suffix(".npz"), clip.ground_truth)


# Per-process cache of the last identity (its texture takes a moment to paint): clips are
# handed out identity by identity, so consecutive clips usually share it.
_IDENTITY_CACHE: dict[tuple, tuple[Identity, np.ndarray]] = {}


def _identity_with_texture(seed: int, index: int, config: SynthConfig):
  key = (seed, index, config.test_every, config.texture_size)
  if key not in _IDENTITY_CACHE:
    _IDENTITY_CACHE.clear()
    identity = make_identity(seed, index, config.test_every)
    _IDENTITY_CACHE[key] = (identity, appearance_lib.paint_texture(identity.look, config.texture_size))
  return _IDENTITY_CACHE[key]


def generate_clip(out: str | os.PathLike, seed: int, spec: ClipSpec, config: SynthConfig) -> dict:
  """Makes and writes one clip (skipped if both of its files exist); its manifest entry."""
  out = pathlib.Path(out)
  identity, texture = _identity_with_texture(seed, spec.identity, config)
  name = video_name_of(seed, identity, spec.video)
  path = clip_path(out, identity, name, spec)
  entry = {"split": identity.split, "identity": identity.name, "video": name,
           "clip": f"{spec.number:05d}", "path": str(path.relative_to(out)) + ".mp4",
           "frames": config.num_frames}
  if path.with_suffix(".mp4").exists() and path.with_suffix(".npz").exists():
    return dict(entry, skipped=True)
  clip = make_clip(seed, identity, spec, config, texture)
  write_clip(path, clip, config)
  return dict(entry, skipped=False)


def video_name_of(seed: int, identity: Identity, video: int) -> str:
  """The name `video_setup` gives, without painting the scene."""
  return video_name(_rng(seed, identity.index, 1, video))


def _manifest_parameters(seed: int, identities: int, clips_per_identity: int,
                         config: SynthConfig) -> dict:
  return {"generator": "synthtalk", "version": GENERATOR_VERSION, "seed": int(seed),
          "identities": int(identities), "clips_per_identity": int(clips_per_identity),
          **dataclasses.asdict(config)}


def _check_out(out: pathlib.Path, parameters: dict) -> None:
  manifest = out / MANIFEST_NAME
  if out.exists() and not out.is_dir():
    raise InputError(out, "exists and is not a folder")
  if not manifest.exists():
    return
  try:
    old = json.loads(manifest.read_text())
  except (OSError, ValueError) as error:
    raise InputError(manifest, f"unreadable SynthTalk manifest ({error})") from error
  # A set can be extended (more identities or clips) but not mixed with other settings.
  fixed = {k: v for k, v in parameters.items() if k not in ("identities", "clips_per_identity")}
  old_fixed = {k: old.get("parameters", {}).get(k) for k in fixed}
  if old_fixed != fixed:
    changed = sorted(k for k in fixed if old_fixed[k] != fixed[k])
    raise InputError(manifest, "holds a SynthTalk set made with other settings "
                     f"({', '.join(changed)}); use another --out or delete it")


def generate(out: str | os.PathLike, identities: int, clips_per_identity: int, seconds: float,
             image_size: int, seed: int, *, workers: int = 1, progress: bool = False,
             executor=None, **config_fields) -> dict:
  """Generates (or completes) a SynthTalk set in `out`; returns the manifest.

  workers > 1 renders clips in up to that many processes (each compiles the renderer once, so
  no more than one per FRAMES_PER_WORKER frames and per identity are started), unless an
  `executor` (concurrent.futures) is given. Clips whose files exist are kept (a run can be
  resumed or extended). The files do not depend on the number of workers.
  """
  if identities < 1 or clips_per_identity < 1:
    raise TalkingHeadError("need at least one identity and one clip per identity")
  if seed < 0:
    raise TalkingHeadError(f"seed must be >= 0, got {seed}")
  config = SynthConfig(image_size=image_size, seconds=seconds, **config_fields)
  out = pathlib.Path(out)
  parameters = _manifest_parameters(seed, identities, clips_per_identity, config)
  _check_out(out, parameters)
  out.mkdir(parents=True, exist_ok=True)
  np.save(out / CANONICAL_NAME, canonical_face(image_size))
  specs = [ClipSpec.of(i, c, config.clips_per_video)
           for i in range(identities) for c in range(clips_per_identity)]

  bar = None
  if progress:
    from tqdm import tqdm
    bar = tqdm(total=len(specs), unit="clip", desc="synth", dynamic_ncols=True)
  start = time.perf_counter()
  entries, frames_done = [], 0

  def record(entry):
    nonlocal frames_done
    entries.append(entry)
    if not entry["skipped"]:
      frames_done += entry["frames"]
    if bar is not None:
      elapsed = max(time.perf_counter() - start, 1e-9)
      bar.set_postfix(fps=f"{frames_done / elapsed:.0f}")
      bar.update(1)

  # A worker first spends seconds compiling the renderer: only start as many as have enough
  # to do (one per FRAMES_PER_WORKER frames, at most one per identity).
  workers = max(1, min(workers, identities, len(specs) * config.num_frames // FRAMES_PER_WORKER))
  try:
    if executor is None and workers <= 1:
      for spec in specs:
        record(generate_clip(out, seed, spec, config))
    else:
      own = executor is None
      if own:
        executor = make_executor(workers)
      try:
        task = functools.partial(generate_clip, out, seed, config=config)
        # One identity's clips in a row go to one worker (its texture is cached there).
        for entry in executor.map(_spec_task, [(task, spec) for spec in specs],
                                  chunksize=max(1, clips_per_identity)):
          record(entry)
      finally:
        if own:
          executor.shutdown(cancel_futures=True)
  finally:
    if bar is not None:
      bar.close()

  entries.sort(key=lambda e: (e["split"], e["identity"], e["video"], e["clip"]))
  manifest = {"parameters": parameters,
              "canonical_face": CANONICAL_NAME,
              "shape_names": list(head.SHAPE_NAMES),
              "expression_names": list(head.EXPRESSION_NAMES),
              "appearance_names": list(appearance_lib.APPEARANCE_NAMES),
              "clips": [{k: v for k, v in e.items() if k != "skipped"} for e in entries]}
  _merge_manifest(out, manifest)
  return manifest


def _spec_task(args):
  task, spec = args
  return task(spec)


def make_executor(workers: int):
  """A process pool for `generate` (spawned, as JAX must not be forked)."""
  import concurrent.futures
  import multiprocessing

  return concurrent.futures.ProcessPoolExecutor(
      max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def _merge_manifest(out: pathlib.Path, manifest: dict) -> None:
  """Writes the manifest, keeping clips listed by an earlier run on a larger set."""
  path = out / MANIFEST_NAME
  if path.exists():
    old = json.loads(path.read_text())
    known = {c["path"] for c in manifest["clips"]}
    extra = [c for c in old.get("clips", []) if c["path"] not in known]
    if extra:
      manifest["clips"] = sorted(manifest["clips"] + extra,
                                 key=lambda e: (e["split"], e["identity"], e["video"], e["clip"]))
      for key in ("identities", "clips_per_identity"):
        manifest["parameters"][key] = max(manifest["parameters"][key], old["parameters"][key])
  with atomic_write_path(path) as temporary:
    temporary.write_text(json.dumps(manifest, indent=1) + "\n")
