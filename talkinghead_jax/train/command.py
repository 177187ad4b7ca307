"""`talkinghead train --config configs/<stage>.py:<variant> --workdir DIR [--set key=value ...]`.

A workdir that holds a checkpoint resumes from it; `--config` may then be left out, and the
run's own `config.json` is used (with any `--set` on top). Exit status: 0 when the run reached
its last step; `EXIT_STOPPED` (75, "temporary failure, try again") when SIGTERM/SIGINT stopped it
after saving a checkpoint, so a scheduler script can requeue it; 1 for a user error.
Multi-host: see `distributed.py` and `launch/`.
"""

from __future__ import annotations

import pathlib

from talkinghead_jax import cli

EXIT_STOPPED = 75  # sysexits.h EX_TEMPFAIL: stopped early on a signal, checkpoint saved


@cli.register("train", "Train a stage (expression, head_motion, ...) from a config; resumes a workdir.")
def _configure(parser):
  parser.add_argument("--config", help="configs/<stage>.py:<variant> (default: the workdir's config.json)")
  parser.add_argument("--workdir", required=True, help="checkpoints, TensorBoard events and config.json go here")
  parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config field (repeatable), e.g. --set batch_size=8")
  group = parser.add_argument_group("multi-host (default: from the environment, see docs/training.md)")
  group.add_argument("--coordinator-address", help="HOST:PORT of process 0's coordinator")
  group.add_argument("--num-processes", type=int, help="number of processes (hosts) in the run")
  group.add_argument("--process-id", type=int, help="this process's index, 0 … num-processes-1")
  group.add_argument("--multihost", action="store_true",
                     help="let JAX detect the cluster (TPU VM pods, SLURM, Open MPI) and initialize")

  def run(args) -> int:
    from talkinghead_jax import config as config_lib  # noqa: PLC0415 (keep --help fast)
    from talkinghead_jax.errors import ConfigError  # noqa: PLC0415
    from talkinghead_jax.train import distributed  # noqa: PLC0415

    distributed.maybe_initialize(args.coordinator_address, args.num_processes, args.process_id,
                                 auto=args.multihost)
    from talkinghead_jax.train import loop  # noqa: PLC0415

    workdir = pathlib.Path(args.workdir)
    if args.config:
      config = config_lib.load(args.config, args.overrides)
    elif (workdir / config_lib.RESOLVED_NAME).is_file():
      config = config_lib.load_resolved(workdir)
      config_lib.apply_overrides(config, args.overrides, source=str(workdir / config_lib.RESOLVED_NAME))
    else:
      raise ConfigError(f"{workdir}: no config.json to resume from; pass --config configs/<stage>.py:<variant>")
    result = loop.train(config, workdir)
    return EXIT_STOPPED if result.stopped_by_signal else 0

  return run
