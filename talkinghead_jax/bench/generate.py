"""`talkinghead bench generate`: how fast `talkinghead generate` makes frames, stage by stage.

Runs `infer.pipeline.generate` itself — the reference's preparation, Ψ, Φ, the 3D-aware
rendering, Θ and the H.264 encoding — on inputs made on the fly: one SynthTalk identity's two
clips of `--frames` frames (reference = the first, speech = the second's sound track, landmarks
from the sidecar, so no detector and no TensorFlow). The weights are fresh
(`infer.checkpoint_set.initialized_checkpoint_set`: speed does not depend on their values) at
the sizes of the configs `--size` picks, or a trained set (`--checkpoints`).

Each run's `GenerateReport.stage_seconds` gives the split; the warm-up runs (which compile) are
left out and each number is the median over the timed runs. "Θ + render" is the part the
H100 target counts (≥ 100 frames/s at 256 px, docs/benchmarks.md).
"""

from __future__ import annotations

import pathlib
import statistics

from talkinghead_jax import bench

# The configs each --size uses (stage → config spec): up to 64 px the synthtalk_tiny family,
# above it the 256-px family; other sizes than theirs override Θ's and the unprojection net's.
TINY_SIZE, FULL_SIZE = 64, 256
TINY_VARIANTS = {"expression": "synthtalk_tiny", "head_motion": "synthtalk_tiny", "unprojection": "synthtalk_tiny",
                 "generator": "synthtalk_tiny"}
FULL_VARIANTS = {"expression": "vox", "head_motion": "vox", "unprojection": "vox", "generator": "vox_k8"}
STAGE_LABELS = {"preprocess": "preprocess", "expression": "Ψ (expression)", "head_motion": "Φ (head motion)",
                "render": "render (3D-aware image)", "generator": "Θ (generator)", "encode": "encode (H.264)"}


def variants_for(size: int, given: list[str] | None) -> tuple[dict[str, str], dict[str, list[str]]]:
  """(stage → config spec, stage → overrides) for `--size` and any `--variants stage=spec`."""
  from talkinghead_jax.errors import ConfigError

  if size < 16 or size % 16:
    raise ConfigError(f"--size must be a multiple of 16 (Θ's and the unprojection net's downsampling), got {size}")
  tiny = size <= TINY_SIZE
  variants = dict(TINY_VARIANTS if tiny else FULL_VARIANTS)
  overrides = {}
  if size != (TINY_SIZE if tiny else FULL_SIZE):
    overrides = {"generator": [f"data.image_size={size}"], "unprojection": [f"data.image_size={size}"]}
  for item in given or []:
    stage, sep, spec = item.partition("=")
    if not sep or stage not in FULL_VARIANTS or not spec:
      raise ConfigError(f"--variants takes stage=config items (stages {', '.join(FULL_VARIANTS)}), got {item!r}")
    variants[stage] = spec
    overrides.pop(stage, None)
  return variants, overrides


def make_inputs(folder, frames: int, frame_size: int, seed: int = 0):
  """(reference video, speech file): the two clips of one SynthTalk identity, `frames` long."""
  from talkinghead_jax.data import synthetic

  manifest = synthetic.generate(folder, 1, 2, frames / 25.0, frame_size, seed, workers=1)
  paths = sorted(clip["path"] for clip in manifest["clips"])
  return pathlib.Path(folder) / paths[0], pathlib.Path(folder) / paths[1]


def summarize(reports, frames: int) -> dict:
  """The medians over the timed runs of each stage's seconds: a readable line per stage, the
  numbers under "stage seconds", and Θ + render in frames/s."""
  from talkinghead_jax.infer import pipeline

  seconds = {stage: statistics.median(report.stage_seconds.get(stage, 0.0) for report in reports)
             for stage in pipeline.STAGES}
  results = {}
  for stage, value in seconds.items():
    rate = f"{frames / value:.2f} frames/s" if value > 0 else "-"
    results[f"stage: {STAGE_LABELS[stage]}"] = f"{1e3 * value / frames:.3f} ms/frame, {rate} ({value:.3f} s)"
  results["stage seconds (median)"] = {stage: round(value, 6) for stage, value in seconds.items()}
  both = statistics.median(report.stage_seconds["render"] + report.stage_seconds["generator"] for report in reports)
  results["Θ + render, frames/s"] = round(frames / both, 2) if both > 0 else None
  return results


@bench.register_target("generate", "talkinghead generate: frames/s and seconds per stage (preprocess, Ψ, Φ, "
                       "render, Θ, encode) on SynthTalk inputs made on the fly.")
def _configure(parser):
  parser.add_argument("--size", type=int, default=256,
                      help="Θ's image size, a multiple of 16: up to 64 the synthtalk_tiny configs, above "
                      "the vox / vox_k8 configs (default 256; vox_k8 needs a multiple of 32)")
  parser.add_argument("--frames", type=int, default=100, help="frames of speech (and of the reference clip)")
  parser.add_argument("--batch-size", type=int, default=8, help="Θ's device batch (generate --batch-size)")
  source = parser.add_mutually_exclusive_group()
  source.add_argument("--checkpoints", help="a trained checkpoint set (default: fresh weights)")
  source.add_argument("--variants", nargs="+", metavar="STAGE=CONFIG",
                      help="configs for the fresh weights, e.g. generator=configs/generator.py:vox_k8,bf16 "
                      "(default: those of --size)")
  parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="STAGE:KEY=VALUE",
                      help="a config override for one stage's fresh weights, "
                      "e.g. generator:model.compute_dtype=bfloat16")

  def run(args) -> int:
    import tempfile

    from talkinghead_jax.errors import ConfigError
    from talkinghead_jax.infer import checkpoint_set, pipeline

    if args.frames < 2:
      raise ConfigError(f"--frames must be >= 2, got {args.frames}")
    if args.checkpoints:
      if args.overrides:
        raise ConfigError("--set changes fresh weights' configs; not with --checkpoints")
      checkpoints = checkpoint_set.load_checkpoint_set(args.checkpoints)
      described = f"checkpoint set {args.checkpoints}"
    else:
      variants, overrides = variants_for(args.size, args.variants)
      for item in args.overrides:
        stage, sep, override = item.partition(":")
        if not sep or stage not in FULL_VARIANTS or "=" not in override:
          raise ConfigError(f"--set takes STAGE:KEY=VALUE (stages {', '.join(FULL_VARIANTS)}), got {item!r}")
        overrides.setdefault(stage, []).append(override)
      checkpoints = checkpoint_set.initialized_checkpoint_set(variants, overrides=overrides)
      described = "fresh weights: " + ", ".join(f"{stage} {spec}" for stage, spec in variants.items())
    size = int(checkpoints.image_size)
    # The reference's frames at Θ's size (SynthTalk's sizes are even, 32–512).
    frame_size = min(max(size + size % 2, 32), 512)
    options = pipeline.GenerateOptions(batch_size=args.batch_size, progress=False)
    with tempfile.TemporaryDirectory(prefix="bench_generate_") as scratch:
      scratch = pathlib.Path(scratch)
      reference, speech = make_inputs(scratch / "synthtalk", args.frames, frame_size)
      reports = []

      def one_video():
        reports.append(pipeline.generate(reference, speech, scratch / "out.mp4", checkpoints, options))

      timing = bench.measure(one_video, warmup=args.warmup, repeats=args.repeats)
      timed = reports[args.warmup:]
    frames = timed[0].frames
    results = {
        "weights": described,
        "image size (Θ)": size,
        "K (references)": int(checkpoints.num_references),
        "frames per video": frames,
        "batch size": args.batch_size,
        "video (whole generate)": timing,
        "frames/s (whole generate)": round(frames / timing["median_s"], 2),
        **summarize(timed, frames),
    }
    bench.report("generate", results, args.json)
    return 0

  return run
