"""The `talkinghead` command line.

Commands are registered by the modules that implement them, with `register`:

    @cli.register("synth", "Generate a SynthTalk data set.")
    def _synth(parser):            # add the command's flags ...
      parser.add_argument("--out", required=True)
      return run_synth             # ... and return the function that runs it: run(args) -> int

The modules that hold commands are listed in `COMMAND_MODULES`; `main` imports them, so a
module's heavy imports belong inside its run function, not at module level, to keep
`talkinghead --help` fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from typing import Callable, Sequence

from talkinghead_jax.errors import TalkingHeadError

# Modules that register commands when imported. Later issues append to this list.
COMMAND_MODULES = (
    "talkinghead_jax.config",
    "talkinghead_jax.bench",
    "talkinghead_jax.eval.command",
    "talkinghead_jax.data.synthtalk_command",
    "talkinghead_jax.data.prepare_command",
    "talkinghead_jax.train.command",
    "talkinghead_jax.infer.command",
    "talkinghead_jax.infer.demo",
    "talkinghead_jax.infer.export_command",
)

RunFn = Callable[[argparse.Namespace], "int | None"]
ConfigureFn = Callable[[argparse.ArgumentParser], RunFn]


@dataclasses.dataclass(frozen=True)
class Command:
  name: str
  help: str
  configure: ConfigureFn


_COMMANDS: dict[str, Command] = {}


def register(name: str, help: str) -> Callable[[ConfigureFn], ConfigureFn]:
  """Decorator: registers `configure(parser) -> run` as `talkinghead <name>`."""

  def decorator(configure: ConfigureFn) -> ConfigureFn:
    if name in _COMMANDS and _COMMANDS[name].configure is not configure:
      raise ValueError(f"command {name!r} is registered twice")
    _COMMANDS[name] = Command(name, help, configure)
    return configure

  return decorator


def commands() -> dict[str, Command]:
  """All registered commands, after importing the modules that define them."""
  for module in COMMAND_MODULES:
    importlib.import_module(module)
  return dict(_COMMANDS)


class OneLineErrorParser(argparse.ArgumentParser):
  """argparse with a single-line error (no usage dump) and exit status 2."""

  def error(self, message: str):  # noqa: D102 (argparse API)
    self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
  parser = OneLineErrorParser(
      prog="talkinghead",
      description="Talking-head generation with rhythmic head motion (JAX/Flax).",
  )
  sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=OneLineErrorParser)
  for name, command in sorted(commands().items()):
    command_parser = sub.add_parser(name, help=command.help, description=command.help)
    run = command.configure(command_parser)
    command_parser.set_defaults(_run=run)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.command is None:
    parser.print_help(sys.stderr)
    return 2
  try:
    status = args._run(args)
  except TalkingHeadError as error:
    print(f"talkinghead {args.command}: error: {error}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print(f"talkinghead {args.command}: interrupted", file=sys.stderr)
    return 130
  return 0 if status is None else int(status)


if __name__ == "__main__":
  sys.exit(main())
