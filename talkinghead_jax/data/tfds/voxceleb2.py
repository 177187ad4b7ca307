"""The `voxceleb2` tfds builder: VoxCeleb2 clips, cropped and prepared (no ground truth).

VoxCeleb2 (Chung, Nagrani, Zisserman, 2018) needs a licence request on its site; download and
unpack it by hand (docs/data.md), then pass the folder as the manual folder.
"""

from __future__ import annotations

from talkinghead_jax.data.tfds import builder as builder_lib


class Voxceleb2(builder_lib.TalkingHeadBuilder):
  """VoxCeleb2's dev split → train, its test split → test."""

  SOURCE = "voxceleb2"
  HOMEPAGE = "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/vox2.html"
  DESCRIPTION = ("VoxCeleb2 talking-head clips prepared for talkinghead-jax: upstream's face "
                 "crop, 3D landmarks, head pose, frontal landmarks, key frame and audio.")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Request access on the VoxCeleb2 site, download the dev and test video (mp4) and audio "
      "(aac) archives and unpack them as DIR/dev/mp4/idXXXXX/<video>/<clip>.mp4, "
      "DIR/dev/aac/idXXXXX/<video>/<clip>.m4a, DIR/test/mp4/..., DIR/test/aac/...; then pass "
      "DIR as --manual-dir (docs/data.md).")
