"""`talkinghead export`: trained runs → one checkpoint set directory for `talkinghead generate`."""

from __future__ import annotations

import argparse

from talkinghead_jax import cli


@cli.register("export", "Collect the trained stages into a checkpoint set for `talkinghead generate`.")
def _configure(parser: argparse.ArgumentParser):
  parser.add_argument("--out", required=True, metavar="DIR", help="the set directory to write")
  parser.add_argument("--expression", required=True, metavar="RUN",
                      help="Ψ's run: its workdir (latest checkpoint) or <workdir>/checkpoints/<step>")
  parser.add_argument("--head-motion", required=True, metavar="RUN", help="Φ's run (workdir or step directory)")
  parser.add_argument("--generator", required=True, metavar="RUN", help="Θ's run (workdir or step directory)")
  parser.add_argument("--unprojection", metavar="RUN",
                      help="the unprojection net's run (default: Θ's model.unprojection_checkpoint)")
  parser.add_argument("--data-dir", required=True, metavar="DIR",
                      help="the prepared data set the runs trained on (`talkinghead prepare --data-dir`)")
  parser.add_argument("--builder-config", default="", metavar="C",
                      help="its builder config, e.g. sidecar_64 (default: the only one prepared there)")
  parser.add_argument("--force", action="store_true", help="replace --out if it exists")
  return run


def run(args: argparse.Namespace) -> int:
  from talkinghead_jax.infer import checkpoint_set  # noqa: PLC0415 (JAX, and TensorFlow for the data set)

  out = checkpoint_set.export_checkpoint_set(
      args.out, expression=args.expression, head_motion=args.head_motion, generator=args.generator,
      unprojection=args.unprojection, data_dir=args.data_dir, builder_config=args.builder_config,
      overwrite=args.force)
  print(checkpoint_set.describe(checkpoint_set.load_checkpoint_set(out)))
  return 0
