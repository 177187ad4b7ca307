"""Batch names, shapes and dtypes of every training stage, in one place (DESIGN.md §2).

A batch is a flat dict of numpy arrays with a leading batch axis B (this host's rows). Shapes
are written with symbolic sizes, filled in by `batch_shapes(stage, batch, **sizes)`:

- `L` Ψ's sequence length (`data.sequence_length`); `C` frames per audio window
  (`data.context_frames`, 7: frames t−3 … t+3); `S_audio` samples per frame (sample rate / fps);
  `N` Ψ's noise segment, (L + C − 1)·S_audio samples; `P` PCA coefficients (`model.num_coeffs`);
- `W` Φ's window, max observed + max predicted frames;
- `S` image size in pixels; `K` references (`data.num_references`).

Conventions (DESIGN.md §2): images uint8 RGB in input batches (tasks convert to [-1, 1]);
landmark images and masks float32, one channel, values in [0, 1]; landmarks (…, 68, 3) float32
in crop pixels; poses (…, 6) = rotation vector + translation. Used by the input pipelines, the
tasks and the tests; it imports nothing but numpy.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

STAGES = ("expression", "head_motion", "unprojection", "generator")

# Ψ, the expression learner.
AUDIO = "audio"
EXPRESSION_PCA = "expression_pca"
REFERENCE_PCA = "reference_pca"
NOISE = "noise"
# Φ, the head-motion learner.
POSE = "pose"
# The unprojection net.
IMAGE = "image"
POSITION_MAP = "position_map"
FACE_MASK = "face_mask"
# Θ, the generator.
REF_IMAGE = "ref_image"
REF_LABEL = "ref_label"
REF_POSE = "ref_pose"
TGT_IMAGE = "tgt_image"
TGT_LABEL = "tgt_label"
TGT_POSE = "tgt_pose"
TGT_LANDMARKS = "tgt_landmarks"
WARPING_REF = "warping_ref"
WARPING_REF_LABEL = "warping_ref_label"
KEY_IMAGE = "key_image"
KEY_FRONT = "key_front"
KEY_POSE = "key_pose"
MOUTH_BOX = "mouth_box"
RENDERED_LABEL = "rendered_label"
KEY_POSITION_MAP = "key_position_map"
FLOW_REF = "flow_ref"
FLOW_REF_CONFIDENCE = "flow_ref_confidence"


@dataclasses.dataclass(frozen=True)
class Field:
  """One batch entry: per-example shape (symbols or ints), dtype and meaning."""

  name: str
  shape: tuple[str | int, ...]
  dtype: np.dtype
  doc: str
  optional: str = ""  # the config switch that adds it, "" if always present


_F32, _U8 = np.dtype(np.float32), np.dtype(np.uint8)

FIELDS: dict[str, tuple[Field, ...]] = {
    "expression": (
        Field(AUDIO, ("L", "C", "S_audio"), _F32, "per-frame raw-audio windows, float in [-1, 1]"),
        Field(EXPRESSION_PCA, ("L", "P"), _F32,
              "PCA coefficients of the frontal landmarks (x, y) minus the identity offset"),
        Field(REFERENCE_PCA, ("P",), _F32, "PCA coefficients of the clip's closed-mouth frontal landmarks"),
        Field(NOISE, ("N",), _F32, "a noise segment to mix into the window's audio",
              optional="augment.snr_db and augment.noise_probability > 0"),
    ),
    "head_motion": (
        Field(AUDIO, ("W", "C", "S_audio"), _F32, "per-frame raw-audio windows, smoothed over time (21 taps)"),
        Field(POSE, ("W", 6), _F32, "head poses, normalised with data.pose_mean/std, smoothed (11 taps)"),
    ),
    "unprojection": (
        Field(IMAGE, ("S", "S", 3), _U8, "the frame whose position map is stored"),
        Field(POSITION_MAP, ("S", "S", 3), _F32, "its posed, expressive position map, crop pixels"),
        Field(FACE_MASK, ("S", "S", 1), _F32, "1 on the texels that belong to the face"),
    ),
    "generator": (
        Field(REF_IMAGE, ("K", "S", "S", 3), _U8, "the K reference frames"),
        Field(REF_LABEL, ("K", "S", "S", 1), _F32, "their landmark images"),
        Field(REF_POSE, ("K", 6), _F32, "their head poses"),
        Field(TGT_IMAGE, ("S", "S", 3), _U8, "the target frame"),
        Field(TGT_LABEL, ("S", "S", 1), _F32, "its landmark image"),
        Field(TGT_POSE, (6,), _F32, "its head pose"),
        Field(TGT_LANDMARKS, (68, 3), _F32, "its landmarks"),
        Field(WARPING_REF, ("S", "S", 3), _U8, "the reference chosen by the motion matcher"),
        Field(WARPING_REF_LABEL, ("S", "S", 1), _F32, "its landmark image"),
        Field(KEY_IMAGE, ("S", "S", 3), _U8, "the clip's key (most frontal) frame, for the 3D face"),
        Field(KEY_FRONT, (68, 3), _F32, "the key frame's frontal landmarks"),
        Field(KEY_POSE, (6,), _F32, "the key frame's head pose"),
        Field(MOUTH_BOX, ("S", "S", 1), _F32, "1 inside the target's mouth box (±5 px at 256, points 48 50 51 54 57)"),
        Field(RENDERED_LABEL, ("S", "S", 1), _F32,
              "landmark image of the rendered 3D face: the key frame's frontal landmarks at the target pose"),
        Field(KEY_POSITION_MAP, ("S", "S", 3), _F32, "the key frame's stored position map (SynthTalk), crop pixels",
              optional="model.position_source=ground_truth or data.key_position_map"),
        Field(FLOW_REF, ("S", "S", 2), _F32, "ground-truth flow target ← warping_ref, pixels (x, y)",
              optional="data.flow_gt"),
        Field(FLOW_REF_CONFIDENCE, ("S", "S", 1), _F32, "1 where that flow warps well", optional="data.flow_gt"),
    ),
}


def fields(stage: str) -> tuple[Field, ...]:
  if stage not in FIELDS:
    raise ValueError(f"unknown stage {stage!r}; stages: {STAGES}")
  return FIELDS[stage]


def names(stage: str, optional: Mapping[str, bool] | None = None) -> tuple[str, ...]:
  """The batch keys of `stage`; optional ones only where `optional[name]` is true."""
  optional = optional or {}
  return tuple(f.name for f in fields(stage) if not f.optional or optional.get(f.name, False))


def batch_shapes(stage: str, batch: int, optional: Mapping[str, bool] | None = None,
                 **sizes: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """{name: (shape with the batch axis, dtype)} for the given symbol sizes."""
  keep = set(names(stage, optional))
  out = {}
  for field in fields(stage):
    if field.name not in keep:
      continue
    shape = []
    for dim in field.shape:
      if isinstance(dim, str):
        if dim not in sizes:
          raise ValueError(f"{stage}.{field.name} needs size {dim!r}; given {sorted(sizes)}")
        shape.append(int(sizes[dim]))
      else:
        shape.append(dim)
    out[field.name] = ((int(batch), *shape), field.dtype)
  return out
