"""Finding the clips of a downloaded data set in its manual folder.

Each data set keeps its own layout; this module turns it into a list of `ClipSource`s with the
project's split names ("train", "test") and clip ids. No TensorFlow here: the landmark pass and
its worker processes use it too.

    SynthTalk  OUT/synthtalk.json lists the clips (split dev → train, test → test); the
               ground truth `<clip>.npz` lies beside each `<clip>.mp4`.
    VoxCeleb2  DIR/{dev,test}/mp4/idXXXXX/<video>/<clip>.mp4; the audio of the video files, when
               they have none, in DIR/{dev,test}/aac/idXXXXX/<video>/<clip>.m4a.
    LRS3       DIR/{pretrain,trainval,test}/<video>/<clip>.mp4 with the audio inside;
               pretrain and trainval → train.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import tempfile
from typing import Callable, Iterator

from talkinghead_jax.errors import InputError

SPLITS = ("train", "test")
DATASETS = ("synthtalk", "voxceleb2", "lrs3")


@dataclasses.dataclass(frozen=True, order=True)
class ClipSource:
  """One clip of the manual folder.

  clip_id: "<a>/<b>/<clip>" (VoxCeleb2 and SynthTalk: identity/video/clip; LRS3:
      subset/video/clip, since pretrain and trainval reuse clip names), unique in the data set.
  identity: the person (VoxCeleb2, SynthTalk) or the talk (LRS3, one speaker per talk).
  video_path: the clip's video file.
  audio_path: a separate audio file for the clip (VoxCeleb2's .m4a), used when the video file
      has no audio stream; None when there is none.
  """

  split: str
  clip_id: str
  identity: str
  video_path: str
  audio_path: str | None = None

  @property
  def sidecar_path(self) -> str:
    """SynthTalk's ground-truth file beside the video."""
    return str(pathlib.Path(self.video_path).with_suffix(".npz"))


LAYOUT_HINTS = {
    "synthtalk": "a SynthTalk folder made by `talkinghead synth --out DIR` (DIR/synthtalk.json, "
                 "DIR/{dev,test}/mp4/idNNNNN/<video>/<clip>.mp4 with a .npz beside each)",
    "voxceleb2": "VoxCeleb2 unpacked as DIR/dev/mp4/idXXXXX/<video>/<clip>.mp4 and "
                 "DIR/test/mp4/... (with the audio in DIR/{dev,test}/aac/idXXXXX/<video>/<clip>.m4a "
                 "when the .mp4 files have none); see docs/data.md",
    "lrs3": "LRS3 unpacked as DIR/{pretrain,trainval,test}/<video>/<clip>.mp4; see docs/data.md",
}


def _check_dir(manual_dir: pathlib.Path, dataset: str) -> None:
  if not manual_dir.is_dir():
    raise InputError(manual_dir, f"no such folder; --manual-dir must hold {LAYOUT_HINTS[dataset]}")
  if not any(manual_dir.iterdir()):
    raise InputError(manual_dir, f"folder is empty; --manual-dir must hold {LAYOUT_HINTS[dataset]}")


def find_synthtalk(manual_dir: pathlib.Path) -> list[ClipSource]:
  """The clips that synthtalk.json lists and whose .mp4 exists."""
  from talkinghead_jax.data import synthetic

  manifest_path = manual_dir / synthetic.MANIFEST_NAME
  if not manifest_path.is_file():
    raise InputError(manifest_path, "missing; --manual-dir must hold "
                     + LAYOUT_HINTS["synthtalk"])
  try:
    manifest = json.loads(manifest_path.read_text())
    entries = manifest["clips"]
  except (OSError, ValueError, KeyError, TypeError) as error:
    raise InputError(manifest_path, f"unreadable SynthTalk manifest ({error})") from error
  clips = []
  for entry in entries:
    split = {"dev": "train", "test": "test"}.get(entry.get("split"))
    if split is None:
      raise InputError(manifest_path, f"clip {entry.get('path')!r} has split "
                       f"{entry.get('split')!r}, expected 'dev' or 'test'")
    video = manual_dir / entry["path"]
    # A clip listed but missing on disk (a set still being generated) is simply not there yet.
    if video.is_file():
      clips.append(ClipSource(split=split,
                              clip_id=f"{entry['identity']}/{entry['video']}/{entry['clip']}",
                              identity=entry["identity"], video_path=str(video)))
  return clips


def find_voxceleb2(manual_dir: pathlib.Path) -> list[ClipSource]:
  """DIR/{dev,test}/mp4/<id>/<video>/<clip>.mp4, with DIR/{dev,test}/aac/... beside."""
  clips = []
  for folder, split in (("dev", "train"), ("test", "test")):
    root = manual_dir / folder / "mp4"
    if not root.is_dir():
      continue
    for video in sorted(root.glob("*/*/*.mp4")):
      identity, video_name, clip = video.relative_to(root).with_suffix("").parts
      audio = manual_dir / folder / "aac" / identity / video_name / f"{clip}.m4a"
      clips.append(ClipSource(split=split, clip_id=f"{identity}/{video_name}/{clip}",
                              identity=identity, video_path=str(video),
                              audio_path=str(audio) if audio.is_file() else None))
  return clips


def find_lrs3(manual_dir: pathlib.Path) -> list[ClipSource]:
  """DIR/{pretrain,trainval,test}/<video>/<clip>.mp4."""
  clips = []
  for folder, split in (("pretrain", "train"), ("trainval", "train"), ("test", "test")):
    root = manual_dir / folder
    if not root.is_dir():
      continue
    for video in sorted(root.glob("*/*.mp4")):
      talk, clip = video.relative_to(root).with_suffix("").parts
      clips.append(ClipSource(split=split, clip_id=f"{folder}/{talk}/{clip}", identity=talk,
                              video_path=str(video)))
  return clips


_FINDERS: dict[str, Callable[[pathlib.Path], list[ClipSource]]] = {
    "synthtalk": find_synthtalk,
    "voxceleb2": find_voxceleb2,
    "lrs3": find_lrs3,
}


def remux(output: str | os.PathLike, video_from: str | os.PathLike | None,
          audio_from: str | os.PathLike | None) -> None:
  """Writes an mp4 with the first video stream of `video_from` and the first audio stream of
  `audio_from` (either may be None), copying packets (no re-encoding)."""
  import av

  inputs = [(path, kind) for path, kind in ((video_from, "video"), (audio_from, "audio"))
            if path is not None]
  containers = [av.open(os.fspath(path)) for path, _ in inputs]
  try:
    with av.open(os.fspath(output), "w", format="mp4") as out:
      pairs = []
      for container, (path, kind) in zip(containers, inputs):
        streams = getattr(container.streams, kind)
        if not streams:
          raise InputError(path, f"has no {kind} stream")
        pairs.append((container, streams[0], out.add_stream_from_template(streams[0])))
      for container, stream, target in pairs:
        for packet in container.demux(stream):
          if packet.dts is None:  # the demuxer's end-of-stream marker
            continue
          packet.stream = target
          out.mux(packet)
  finally:
    for container in containers:
      container.close()


@contextlib.contextmanager
def media_path(clip: ClipSource) -> Iterator[str]:
  """The path preprocessing should read for `clip`: its video file, or — when that has no
  audio stream and the clip has a separate audio file (VoxCeleb2's .m4a) — a temporary mp4
  with the video's and the audio file's streams. The temporary file keeps the clip's name and
  a link to its .npz sidecar, so detectors that read one beside the video still find it."""
  if clip.audio_path is None:
    yield clip.video_path
    return
  from talkinghead_jax import media

  try:
    has_audio = media.probe_video(clip.video_path).has_audio
  except InputError:
    has_audio = True  # unreadable: let preprocessing reject it with its own reason
  if has_audio:
    yield clip.video_path
    return
  with tempfile.TemporaryDirectory(prefix="talkinghead-mux-") as folder:
    video = pathlib.Path(clip.video_path)
    muxed = pathlib.Path(folder) / video.name
    remux(muxed, video, clip.audio_path)
    sidecar = pathlib.Path(clip.sidecar_path)
    if sidecar.is_file():
      (pathlib.Path(folder) / sidecar.name).symlink_to(sidecar.resolve())
    yield str(muxed)


def find_clips(dataset: str, manual_dir: str | os.PathLike,
               max_clips_per_split: int | None = None) -> list[ClipSource]:
  """The clips of `dataset` in `manual_dir`, sorted by (split, clip_id).

  max_clips_per_split keeps the first N of each split (in that order). Raises InputError,
  naming the folder and the layout it should have, when it is missing, empty or holds no clip.
  """
  if dataset not in _FINDERS:
    raise ValueError(f"unknown data set {dataset!r}; known: {', '.join(DATASETS)}")
  manual_dir = pathlib.Path(manual_dir)
  _check_dir(manual_dir, dataset)
  clips = sorted(_FINDERS[dataset](manual_dir))
  if not clips:
    raise InputError(manual_dir, f"no clips found; --manual-dir must hold {LAYOUT_HINTS[dataset]}")
  if max_clips_per_split is not None:
    kept = []
    for split in SPLITS:
      kept += [c for c in clips if c.split == split][:max_clips_per_split]
    clips = sorted(kept)
  return clips
