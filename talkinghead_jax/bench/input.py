"""`talkinghead bench input`: how many training samples per second a host's input pipeline makes.

The pipeline (`data.pipelines`) reads a prepared tfds set by index, decodes the frames a sample
uses and builds it (for Θ: K references, target, key frame, landmark images, augmentation);
samples/s per host and per core are what an accelerator step has to be fed with. The set is
either a prepared one (`--data-dir`, e.g. a SynthTalk set made with `talkinghead prepare`) or,
by default, synthetic clips written on the fly as tfrecord shards with the prepared-data
features (`data.input_synthetic`: textured frames, JPEG quality 95 4:4:4).

Measured (warm-up excluded, median of repeats): the whole pipeline with its default
parallelism (`--batches` batches per repeat), and the sampler alone on one thread.
"""

from __future__ import annotations

import os
import tempfile

from talkinghead_jax import bench

STAGES = ("generator", "unprojection", "expression", "head_motion")


def _cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def _config(args):
  import ml_collections  # noqa: PLC0415

  from talkinghead_jax import config as config_lib  # noqa: PLC0415

  if args.stage in ("expression", "head_motion"):
    config = config_lib.load(f"configs/{args.stage}.py:vox", [f"batch_size={args.batch_size}"])
    if args.stage == "head_motion":
      config.data.pose_mean, config.data.pose_std = (), ()  # statistics of the set at hand
    return config
  return ml_collections.ConfigDict(dict(seed=0, batch_size=args.batch_size, data=dict(
      source="tfds", dataset="synthtalk", num_references=args.k, ref_ratio=0.25, augment=True,
      flip_prob=0.5, crop_scale=(0.8, 1.2), crop_shift=0.2, flow_gt=args.flow_gt, image_size=0, shuffle=True,
      samples_per_clip=1)))


@bench.register_target("input", "Input pipeline: decoded training samples/s per host and per core.")
def _configure(parser):
  parser.add_argument("--stage", choices=STAGES, default="generator")
  parser.add_argument("--size", type=int, default=256, help="frame size of the synthetic set")
  parser.add_argument("--k", type=int, default=8, help="references per sample (generator)")
  parser.add_argument("--batch-size", type=int, default=8, help="this host's batch")
  parser.add_argument("--batches", type=int, default=8, help="batches per timed repeat")
  parser.add_argument("--clips", type=int, default=16, help="clips in the synthetic set")
  parser.add_argument("--frames", type=int, default=100, help="frames per synthetic clip (at least the stage's window)")
  parser.add_argument("--flow-gt", action="store_true", help="generator: also compute ground-truth flow (DIS)")
  parser.add_argument("--data-dir", help="read this prepared set instead of a synthetic one")
  parser.add_argument("--dataset", default="synthtalk", help="with --data-dir")
  parser.add_argument("--builder-config", default="", help="with --data-dir, e.g. sidecar_256")

  def run(args) -> int:
    from talkinghead_jax.data import input_common, input_synthetic, pipelines  # noqa: PLC0415

    config = _config(args)
    scratch = None
    if args.data_dir:
      config.data.data_dir, config.data.dataset, config.data.builder_config = (args.data_dir, args.dataset,
                                                                              args.builder_config)
      prepared = pipelines.open_prepared(config)
      set_name = f"{args.dataset} {prepared.info['size']} px from {args.data_dir}"
    else:
      frames = args.frames
      if args.stage == "head_motion":
        frames = max(frames, int(config.data.observed_frames[1]) + int(config.data.predicted_frames[1]) + 8)
      if args.stage == "expression":
        frames = max(frames, int(config.data.sequence_length) + 8)
      rates = sorted({16000, int(config.data.get("sample_rate", 16000))})
      clips = input_synthetic.make_clips(args.clips, frames=frames, size=args.size, audio_rates=rates,
                                         unprojection_frames=4)
      scratch = tempfile.TemporaryDirectory(prefix="bench_input_")
      builder = input_synthetic.write_tfds(scratch.name, clips, train_count=len(clips))
      canonical = input_synthetic.canonical_face(args.size)
      prepared = type("SyntheticSet", (), dict(builder=builder, canonical=canonical, pca=input_synthetic.pca_of(clips),
                                               info={"size": args.size, "audio_rates": tuple(rates), "fps": 25}))()
      shard_bytes = sum(os.path.getsize(i.filename) for i in builder.info.splits["train"].file_instructions)
      set_name = (f"synthetic, {args.clips} clips × {frames} frames at {args.size} px, "
                  f"{shard_bytes / args.clips / frames / 1024:.1f} KiB per frame in the shards")
    source = pipelines.record_source(prepared, "train")
    artifacts = pipelines.artifacts_of(prepared)
    sampler = pipelines.make_sampler(config, args.stage, "train", artifacts, source)
    data = pipelines.StageInput(source, sampler, global_batch_size=args.batch_size, seed=0,
                                samples_per_clip=max(1, -(-args.batch_size // source.num_clips)))
    samples = args.batch_size * args.batches

    def batches():
      for _ in range(args.batches):
        next(data)

    results = {"stage": args.stage, "set": set_name, "batch": args.batch_size, "cores": _cores()}
    results["pipeline"] = bench.measure(batches, warmup=args.warmup, repeats=args.repeats)
    per_host = samples / results["pipeline"]["median_s"]
    results["samples/s per host"] = round(per_host, 1)
    results["samples/s per core"] = round(per_host / _cores(), 1)

    # The sampler alone, one thread: what a core spends per sample, reading and decoding included.
    clip = next(source.read_clips([0], list(sampler.input_features), decode_frames=False))
    noise = next(source.read_clips([1 % source.num_clips], list(sampler.noise_features))) \
        if sampler.noise_features else None
    counter = iter(range(10**9))
    results["sampler, 1 thread"] = bench.measure(
        lambda: sampler.sample(clip, input_common.sample_rng(0, 0, next(counter), sampler.salt), noise),
        warmup=2, repeats=max(args.repeats, 10))
    results["samples/s, sampler on 1 thread"] = round(1.0 / results["sampler, 1 thread"]["median_s"], 1)
    data.close()
    bench.report("input", results, args.json)
    if scratch is not None:
      scratch.cleanup()
    return 0

  return run
