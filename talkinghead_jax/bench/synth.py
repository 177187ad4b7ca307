"""`talkinghead bench synth`: SynthTalk generation speed in frames per second.

Measures (warm-up excluded, median of repeats):
- one clip made in this process, stage by stage (audio, geometry, rendering, encoding);
- a whole set written by `--workers` processes (each compiled during the warm-up), which is
  what `talkinghead synth` does.
"""

from __future__ import annotations

import tempfile

from talkinghead_jax import bench


@bench.register_target("synth", "SynthTalk generation: frames/s per stage and for a whole set.")
def _configure(parser):
  parser.add_argument("--size", type=int, default=128, help="frame size in pixels")
  parser.add_argument("--seconds", type=float, default=4.0, help="clip length")
  parser.add_argument("--workers", type=int, default=2, help="processes for the whole-set run")
  parser.add_argument("--identities", type=int, default=4, help="identities in the whole-set run")
  parser.add_argument("--clips-per-identity", type=int, default=2)

  def run(args) -> int:
    import pathlib

    import numpy as np

    from talkinghead_jax.data import synthetic
    from talkinghead_jax.data import synthtalk_appearance as appearance
    from talkinghead_jax.data import synthtalk_speech as speech
    from talkinghead_jax.geometry import rigid

    config = synthetic.SynthConfig(image_size=args.size, seconds=args.seconds)
    frames = config.num_frames
    identity = synthetic.make_identity(0, 0)
    texture = appearance.paint_texture(identity.look, config.texture_size)
    spec = synthetic.ClipSpec.of(0, 0, config.clips_per_video)
    results = {}
    scratch = tempfile.TemporaryDirectory(prefix="bench_synth_")
    counter = iter(range(10**6))

    def one_clip():
      clip = synthetic.make_clip(0, identity, spec, config, texture)
      synthetic.write_clip(pathlib.Path(scratch.name) / f"clip{next(counter)}", clip, config)

    results["clip (make + write), 1 process"] = bench.measure(one_clip, warmup=args.warmup,
                                                              repeats=args.repeats)
    results["frames/s, 1 process"] = round(frames / results["clip (make + write), 1 process"]["median_s"], 1)

    # Stages of the same clip.
    _, scene, variation = synthetic.video_setup(0, identity, spec.video, config.image_size)
    timeline, audio_seed, noise_seed, blink = synthetic.clip_timeline(0, identity, spec, config)
    results["stage: audio"] = bench.measure(
        lambda: speech.synthesize(timeline, identity.speaker, config.sample_rate,
                                  np.random.default_rng(audio_seed)), warmup=1, repeats=args.repeats)
    mesh = synthetic.render_mesh_for(config.mesh_detail)
    expression = np.zeros((frames, 4))
    pose = np.zeros((frames, 6))

    def geometry():
      front = synthetic.frontal_points(identity, mesh.points, expression, config.image_size)
      return rigid.unfrontalize(front, pose)

    results["stage: geometry"] = bench.measure(geometry, warmup=1, repeats=args.repeats)
    vertices = geometry()[:, :mesh.num_vertices]
    results["stage: render"] = bench.measure(
        lambda: synthetic.render_frames(vertices, texture, scene, config, noise_seed),
        warmup=1, repeats=args.repeats)
    results["stage: texture (once per identity)"] = bench.measure(
        lambda: appearance.paint_texture(identity.look, config.texture_size), warmup=0, repeats=1)

    # A whole set, as `talkinghead synth --workers N` writes it.
    total = args.identities * args.clips_per_identity * frames
    executor = synthetic.make_executor(args.workers) if args.workers > 1 else None
    try:
      def whole_set():
        out = pathlib.Path(scratch.name) / f"set{next(counter)}"
        synthetic.generate(out, args.identities, args.clips_per_identity, args.seconds, args.size,
                           seed=0, workers=args.workers, executor=executor)

      name = f"set of {args.identities}x{args.clips_per_identity} clips, {args.workers} workers"
      results[name] = bench.measure(whole_set, warmup=1, repeats=max(1, args.repeats // 2))
      results["frames/s, whole set"] = round(total / results[name]["median_s"], 1)
    finally:
      if executor is not None:
        executor.shutdown()
      scratch.cleanup()
    results["frames per clip"] = frames
    results["image size"] = args.size
    bench.report("synth", results, args.json)
    return 0

  return run
