"""One loader for every command's config: `load("configs/x.py:variant", overrides=[...])`.

A config file defines `get_config(arg: str | None) -> ml_collections.ConfigDict`; `arg` picks
a variant (big_vision style). Overrides are `dotted.key=value` strings, parsed to the type
of the field they replace, so `--set model.ngf=16` stays an int and a typo is an error
instead of a silently added field. The resolved config of a run is written to its
workdir as `config.json` (`write`), and read back with `load_resolved`.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import os
import pathlib
import sys
from typing import Any, Iterable

import ml_collections

from talkinghead_jax import cli
from talkinghead_jax.errors import ConfigError
from talkinghead_jax.fileio import atomic_write_path

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
RESOLVED_NAME = "config.json"

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def resolve_path(path: str) -> pathlib.Path:
  """A config file path as given, else relative to the repository root."""
  candidate = pathlib.Path(path)
  if candidate.is_file():
    return candidate
  fallback = REPO_ROOT / path
  if not candidate.is_absolute() and fallback.is_file():
    return fallback
  raise ConfigError(f"{path}: config file not found")


def _import_file(path: pathlib.Path):
  name = f"_talkinghead_config_{abs(hash(str(path.resolve())))}"
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as error:  # A broken config file: name it and say why.
    raise ConfigError(f"{path}: cannot import config file: {type(error).__name__}: {error}") from error
  return module


def load(spec: str, overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
  """Loads `path.py[:variant]` and applies `key=value` overrides."""
  path_text, _, variant = spec.partition(":")
  path = resolve_path(path_text)
  module = _import_file(path)
  get_config = getattr(module, "get_config", None)
  if get_config is None:
    raise ConfigError(f"{path}: defines no get_config(arg)")
  try:
    config = get_config(variant) if variant else get_config()
  except TypeError as error:
    raise ConfigError(f"{path}: get_config needs a variant ('{path_text}:<variant>'): {error}") from error
  except (KeyError, ValueError) as error:
    raise ConfigError(f"{path}: bad variant {variant!r}: {error}") from error
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"{path}: get_config returned {type(config).__name__}, not a ConfigDict")
  config = ml_collections.ConfigDict(config)  # a copy, unlocked for overrides
  apply_overrides(config, overrides, source=spec)
  return config


def _all_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  keys = []
  for key, value in config.items():
    full = f"{prefix}{key}"
    keys.append(full)
    if isinstance(value, ml_collections.ConfigDict):
      keys.extend(_all_keys(value, full + "."))
  return keys


def _unknown_key(config, key: str, source: str) -> ConfigError:
  close = difflib.get_close_matches(key, _all_keys(config), n=1)
  hint = f" (did you mean {close[0]!r}?)" if close else ""
  return ConfigError(f"{source}: unknown config key {key!r}{hint}")


def parse_value(text: str, current: Any, key: str) -> Any:
  """Parses `text` to the type of `current` (the field's present value)."""
  try:
    if isinstance(current, bool):
      lowered = text.strip().lower()
      if lowered in _TRUE:
        return True
      if lowered in _FALSE:
        return False
      raise ValueError(f"expected true/false, got {text!r}")
    if isinstance(current, int):
      return int(text)
    if isinstance(current, float):
      return float(text)
    if isinstance(current, str):
      return text
    if isinstance(current, (tuple, list)):
      value = ast.literal_eval(text)
      if not isinstance(value, (tuple, list)):
        value = (value,)
      return type(current)(value)
    if isinstance(current, ml_collections.ConfigDict):
      raise ValueError("is a group of settings; set its fields one by one")
  except (ValueError, SyntaxError) as error:
    raise ConfigError(f"bad value for {key!r}: {error}") from error
  # None or another type: a Python literal if it is one, else the text itself.
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str], source: str = "config") -> None:
  for override in overrides:
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
      raise ConfigError(f"override {override!r} is not of the form key=value")
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        raise _unknown_key(config, key, source)
      node = node[part]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise _unknown_key(config, key, source)
    value = parse_value(text, node[leaf], key)
    try:
      node[leaf] = value
    except TypeError as error:
      raise ConfigError(f"bad value for {key!r}: {error}") from error


def to_json(config: ml_collections.ConfigDict) -> str:
  return config.to_json_best_effort(indent=2, sort_keys=True)


def write(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> pathlib.Path:
  """Writes the resolved config to `workdir/config.json` atomically."""
  target = pathlib.Path(workdir) / RESOLVED_NAME
  with atomic_write_path(target) as temporary:
    temporary.write_text(to_json(config) + "\n")
  return target


def load_resolved(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
  """Reads back the config a run wrote with `write`."""
  path = pathlib.Path(workdir) / RESOLVED_NAME
  if not path.is_file():
    raise ConfigError(f"{path}: no resolved config (not a run's workdir?)")
  try:
    data = json.loads(path.read_text())
  except json.JSONDecodeError as error:
    raise ConfigError(f"{path}: not valid JSON: {error}") from error
  return ml_collections.ConfigDict(data)


@cli.register("config", "Print a config after variant selection and overrides, as JSON.")
def _configure_command(parser):
  parser.add_argument("spec", help="configs/<stage>.py[:variant]")
  parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a field (repeatable), e.g. --set model.ngf=16")
  parser.add_argument("--workdir", help="also write the resolved config to WORKDIR/config.json")

  def run(args) -> int:
    config = load(args.spec, args.overrides)
    if args.workdir:
      write(config, args.workdir)
    sys.stdout.write(to_json(config) + "\n")
    return 0

  return run
