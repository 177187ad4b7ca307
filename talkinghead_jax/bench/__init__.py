"""`talkinghead bench <target>`: speed measurements, never timed tests.

A target registers itself with `register_target`, like a CLI command, and measures with
`measure` (warm-up excluded, median of repeats). Every report carries the device and the
library versions and is written as JSON, so numbers in docs/benchmarks.md can be traced
to a run.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from typing import Any, Callable

from talkinghead_jax import cli

# Modules that register bench targets when imported. Later issues append to this list.
TARGET_MODULES: tuple[str, ...] = ("talkinghead_jax.bench.synth", "talkinghead_jax.bench.render",
                                   "talkinghead_jax.bench.train", "talkinghead_jax.bench.input",
                                   "talkinghead_jax.bench.generate")

_TARGETS: dict[str, tuple[str, cli.ConfigureFn]] = {}


def register_target(name: str, help: str):
  """Decorator: registers `configure(parser) -> run` as `talkinghead bench <name>`."""

  def decorator(configure):
    _TARGETS[name] = (help, configure)
    return configure

  return decorator


def targets() -> dict[str, tuple[str, cli.ConfigureFn]]:
  for module in TARGET_MODULES:
    importlib.import_module(module)
  return dict(_TARGETS)


def _block(value):
  """Waits for asynchronous JAX results, if the value holds any."""
  if "jax" in sys.modules:
    import jax

    return jax.block_until_ready(value)
  return value


def measure(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5) -> dict[str, Any]:
  """Runs `fn` `warmup` times untimed, then `repeats` times timed; seconds per call."""
  if repeats < 1:
    raise ValueError("repeats must be >= 1")
  for _ in range(warmup):
    _block(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    _block(fn())
    times.append(time.perf_counter() - start)
  return {
      "median_s": statistics.median(times),
      "min_s": min(times),
      "max_s": max(times),
      "repeats": repeats,
      "warmup": warmup,
      "times_s": times,
  }


def environment() -> dict[str, Any]:
  """Where a measurement was taken: device, versions, date."""
  info: dict[str, Any] = {
      "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
      "python": platform.python_version(),
      "machine": platform.machine(),
      "cpu_count": os.cpu_count(),
  }
  try:
    import jax
    import jaxlib

    devices = jax.devices()
    info.update(
        jax=jax.__version__,
        jaxlib=jaxlib.__version__,
        backend=jax.default_backend(),
        device_kind=devices[0].device_kind,
        device_count=len(devices),
    )
  except ImportError:
    pass
  for name in ("flax", "numpy", "torch"):
    module = sys.modules.get(name)
    if module is not None:
      info[name] = getattr(module, "__version__", "?")
  return info


def report(target: str, results: dict[str, Any], json_path: str | None) -> dict[str, Any]:
  """Prints `results` with the environment and writes them as JSON if asked."""
  payload = {"target": target, "environment": environment(), "results": results}
  env = payload["environment"]
  print(f"bench {target} on {env.get('device_kind', env['machine'])} "
        f"({env.get('backend', '?')}, {env['cpu_count']} cpus), jax {env.get('jax', '-')}, {env['date']}")
  for key, value in results.items():
    if isinstance(value, dict) and "median_s" in value:
      print(f"  {key:40s} median {value['median_s'] * 1e3:10.2f} ms  (min {value['min_s'] * 1e3:.2f}, n={value['repeats']})")
    else:
      print(f"  {key:40s} {value}")
  if json_path:
    path = pathlib.Path(json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"  written to {path}")
  return payload


@cli.register("bench", "Measure speed (warm-up excluded, median of repeats); writes JSON.")
def _configure_command(parser):
  sub = parser.add_subparsers(dest="target", metavar="<target>", parser_class=cli.OneLineErrorParser)
  for name, (help_text, configure) in sorted(targets().items()):
    target_parser = sub.add_parser(name, help=help_text, description=help_text)
    target_parser.add_argument("--json", help="write the report to this JSON file")
    target_parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    target_parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up calls")
    target_parser.set_defaults(_bench_run=configure(target_parser))

  def run(args) -> int:
    if getattr(args, "target", None) is None:
      parser.print_help(sys.stderr)
      return 2
    return args._bench_run(args)

  return run
