"""`talkinghead synth`: generate a SynthTalk data set (see docs/data.md).

Kept apart from `synthetic` so that `talkinghead --help` does not import numpy, scipy or JAX.
"""

from __future__ import annotations

import os

from talkinghead_jax import cli


def _positive_int(text: str) -> int:
  value = int(text)
  if value < 1:
    raise ValueError(f"must be >= 1, got {value}")
  return value


@cli.register("synth", "Generate a SynthTalk data set (procedural talking heads with full "
              "ground truth) in VoxCeleb2's layout.")
def _configure(parser):
  parser.add_argument("--out", required=True, help="output folder (created; an existing set "
                      "made with the same settings is completed or extended)")
  parser.add_argument("--identities", type=_positive_int, default=4, help="number of people")
  parser.add_argument("--clips-per-identity", type=_positive_int, default=2,
                      help="clips per person")
  parser.add_argument("--seconds", type=float, default=4.0, help="length of every clip")
  parser.add_argument("--size", type=int, default=128, help="frame size in pixels (even, 32–512)")
  parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same files")
  parser.add_argument("--clips-per-video", type=_positive_int, default=2,
                      help="clips that share a video (background, light, motion variation)")
  parser.add_argument("--sample-rate", type=int, default=16000,
                      help="audio sample rate of the mp4s (a rate AAC cannot store, such as "
                      "50000, gives 48 kHz; resample when loading)")
  parser.add_argument("--test-every", type=int, default=5,
                      help="identity i goes to the test split when i %% N == 1")
  parser.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 4),
                      help="rendering processes (default: CPU count, at most 4)")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")

  def run(args) -> int:
    import time

    from talkinghead_jax.data import synthetic

    start = time.perf_counter()
    manifest = synthetic.generate(
        args.out, args.identities, args.clips_per_identity, args.seconds, args.size, args.seed,
        workers=args.workers, progress=not args.no_progress, clips_per_video=args.clips_per_video,
        sample_rate=args.sample_rate, test_every=args.test_every)
    clips = manifest["clips"]
    frames = sum(c["frames"] for c in clips)
    splits = {s: sum(c["split"] == s for c in clips) for s in ("dev", "test")}
    print(f"synth: {len(clips)} clips ({splits['dev']} dev, {splits['test']} test), {frames} frames "
          f"in {args.out} ({time.perf_counter() - start:.1f} s)")
    return 0

  return run
