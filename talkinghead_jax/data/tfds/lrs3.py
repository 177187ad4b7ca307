"""The `lrs3` tfds builder: LRS3-TED clips, cropped and prepared (no ground truth).

LRS3 (Afouras, Chung, Zisserman, 2018) needs a licence request on its site; download and
unpack it by hand (docs/data.md), then pass the folder as the manual folder.
"""

from __future__ import annotations

from talkinghead_jax.data.tfds import builder as builder_lib


class Lrs3(builder_lib.TalkingHeadBuilder):
  """LRS3's pretrain and trainval → train, its test → test."""

  SOURCE = "lrs3"
  HOMEPAGE = "https://www.robots.ox.ac.uk/~vgg/data/lip_reading/lrs3.html"
  DESCRIPTION = ("LRS3-TED talking-head clips prepared for talkinghead-jax: upstream's face "
                 "crop, 3D landmarks, head pose, frontal landmarks, key frame and audio.")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Request access on the LRS3 site, download the pretrain, trainval and test archives and "
      "unpack them as DIR/pretrain/<video>/<clip>.mp4, DIR/trainval/..., DIR/test/...; then "
      "pass DIR as --manual-dir (docs/data.md).")
