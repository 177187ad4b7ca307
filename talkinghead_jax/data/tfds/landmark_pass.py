"""Pass 1 of `talkinghead prepare`: landmarks of every clip, saved as ClipLandmarks files.

For each clip without a landmark file (and not already rejected), `preprocess.detect_clip`
decodes the video, finds the face in every frame, fixes the crop box and fills gaps; the
result is saved atomically under artifacts/landmarks/<split>/<clip_id>.npz, so a run that
stops part-way resumes where it was. A clip that is rejected — or fails in any other way —
is recorded in rejects.jsonl and the pass goes on.

Runs in this process, in a pool of processes, or as an Apache Beam pipeline. No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import pathlib
import pickle
from typing import Any, Iterable, Sequence

from talkinghead_jax.data.tfds import artifacts as artifacts_lib
from talkinghead_jax.data.tfds import pool
from talkinghead_jax.data.tfds import sources


@dataclasses.dataclass(frozen=True)
class LandmarkResult:
  clip_id: str
  split: str
  reason: str | None  # None: landmarks saved; otherwise the reject reason
  frames: int = 0


# One detector per process and setting: loading a landmark model takes seconds.
_DETECTORS: dict[bytes, Any] = {}


def _detector(name: str, options: tuple[tuple[str, Any], ...]):
  from talkinghead_jax.data import detectors

  key = pickle.dumps((name, options))  # options may hold arrays (dlib's canonical face)
  if key not in _DETECTORS:
    _DETECTORS.clear()
    _DETECTORS[key] = detectors.get_detector(name, **dict(options))
  return _DETECTORS[key]


@dataclasses.dataclass(frozen=True)
class LandmarkJob:
  """Clip → LandmarkResult, saving the landmarks or recording the reject. Picklable."""

  artifacts_root: str
  detector: str
  size: int
  audio_rates: tuple[int, ...]
  detector_options: tuple[tuple[str, Any], ...] = ()

  def __call__(self, clip: sources.ClipSource) -> LandmarkResult:
    from talkinghead_jax.data import preprocess
    from talkinghead_jax.data.tfds import examples

    artifacts = artifacts_lib.Artifacts(pathlib.Path(self.artifacts_root))
    options = preprocess.PrepareOptions(size=self.size, audio_rates=self.audio_rates)
    # Outside the try: a detector that cannot load is no fault of the clip, and stops the run.
    detector = _detector(self.detector, self.detector_options)
    try:
      with sources.media_path(clip) as path:
        landmarks = preprocess.detect_clip(path, detector, options)
      landmarks.save(artifacts.landmarks(clip.split, clip.clip_id))
    except Exception as error:  # pylint: disable=broad-except (one clip never stops the pass)
      reason = examples.record_reject(str(artifacts.rejects), clip, error)
      return LandmarkResult(clip.clip_id, clip.split, reason)
    return LandmarkResult(clip.clip_id, clip.split, None, int(landmarks.num_frames))


def pending(clips: Iterable[sources.ClipSource],
            artifacts: artifacts_lib.Artifacts) -> list[sources.ClipSource]:
  """The clips with neither a landmark file nor a reject record."""
  from talkinghead_jax.data import rejects

  rejected = {r["clip"] for r in rejects.RejectsManifest(artifacts.rejects).records()}
  return [c for c in clips if c.clip_id not in rejected
          and not artifacts.landmarks(c.split, c.clip_id).is_file()]


def run_local(clips: Sequence[sources.ClipSource], job: LandmarkJob, workers: int = 1,
              progress: bool = True) -> list[LandmarkResult]:
  """The pass in this process (workers <= 1) or a process pool."""
  from tqdm import tqdm

  results, rejected = [], 0
  with tqdm(total=len(clips), unit="clip", desc="landmarks", dynamic_ncols=True,
            disable=not progress) as bar:
    for result in pool.ordered_map(job, clips, min(workers, len(clips))):
      results.append(result)
      rejected += result.reason is not None
      bar.set_postfix(rejected=rejected, refresh=False)
      bar.update(1)
  return results


def run_beam(clips: Sequence[sources.ClipSource], job: LandmarkJob, runner,
             options) -> None:
  """The pass as a Beam pipeline (the results are the files it writes)."""
  import apache_beam as beam

  with beam.Pipeline(runner=runner, options=options) as pipeline:
    _ = (pipeline
         | "Clips" >> beam.Create(list(clips))
         | "DetectLandmarks" >> beam.Map(job))
