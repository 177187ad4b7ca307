"""The `synthtalk` tfds builder: prepared SynthTalk clips plus their ground truth in crop space
(`synthtalk_truth` says how the truth is re-expressed)."""

from __future__ import annotations

import json
import pathlib

from talkinghead_jax.data.tfds import builder as builder_lib
from talkinghead_jax.data.tfds.synthtalk_truth import GroundTruth
from talkinghead_jax.errors import InputError


class Synthtalk(builder_lib.TalkingHeadBuilder):
  """SynthTalk (`talkinghead synth`), with crop-space ground truth."""

  SOURCE = "synthtalk"
  DESCRIPTION = ("SynthTalk, the project's procedural talking heads, prepared like VoxCeleb2 "
                 "(cropped, landmarks, pose, audio) with ground-truth landmarks, pose and "
                 "posed position maps in crop coordinates.")
  MANUAL_DOWNLOAD_INSTRUCTIONS = ("Generate a set with `talkinghead synth --out DIR` and pass "
                                  "DIR as the manual folder.")

  @property
  def has_ground_truth(self) -> bool:
    return True

  def _extra_features(self, manual_dir: pathlib.Path) -> GroundTruth:
    from talkinghead_jax.data import synthetic

    manifest = manual_dir / synthetic.MANIFEST_NAME
    try:
      parameters = json.loads(manifest.read_text())["parameters"]
      seed, test_every = int(parameters["seed"]), int(parameters["test_every"])
    except (OSError, ValueError, KeyError, TypeError) as error:
      raise InputError(manifest, f"unreadable SynthTalk manifest ({error})") from error
    config = self.builder_config
    return GroundTruth(seed=seed, test_every=test_every, size=int(config.size),
                       unprojection_frames=int(config.unprojection_frames))
