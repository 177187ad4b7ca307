"""Shardings from rules written as data (big_vision style).

A rule is `(regex, kind)`. The regex is searched in a leaf's path, written with `/` between
keys: `params/model/audio_encode/audio_l_0/kernel`, or for Adam's first moment of the same
weight `opt_state/model/0/mu/audio_encode/audio_l_0/kernel`, so one rule covers a weight and
its optimizer statistics. The first matching rule wins; a leaf no rule matches is replicated.
Kinds:

- `"replicate"`: a full copy on every device;
- `"fsdp"`: split the largest dimension that the `fsdp` axis size divides over `fsdp`
  (replicated if none does, if the axis has size 1, or if the leaf has fewer than
  `fsdp_min_size` elements: splitting a bias costs more in communication than it saves);
- a tuple, one entry per dimension, each `None`, an axis name or a tuple of axis names:
  an explicit `PartitionSpec`, e.g. `(None, "model")`.

Batches are split along their leading axis over (`data`, `fsdp`).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from talkinghead_jax.errors import ConfigError

BATCH_AXES = ("data", "fsdp")


def path_name(path: Sequence[Any]) -> str:
  """A pytree key path as `a/b/0/c` (dict keys, attribute names and list indices)."""
  parts = []
  for key in path:
    if isinstance(key, jax.tree_util.DictKey):
      parts.append(str(key.key))
    elif isinstance(key, jax.tree_util.GetAttrKey):
      parts.append(key.name)
    elif isinstance(key, jax.tree_util.SequenceKey):
      parts.append(str(key.idx))
    elif isinstance(key, jax.tree_util.FlattenedIndexKey):
      parts.append(str(key.key))
    else:
      parts.append(str(key))
  return "/".join(parts)


def named_leaves(tree) -> list[tuple[str, Any]]:
  """`(path_name, leaf)` for every leaf, in `jax.tree.leaves` order."""
  return [(path_name(path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _axis_size(mesh: Mesh, axes) -> int:
  if axes is None:
    return 1
  names = (axes,) if isinstance(axes, str) else tuple(axes)
  size = 1
  for name in names:
    if name not in mesh.shape:
      raise ConfigError(f"sharding rule names mesh axis {name!r}; the mesh has {tuple(mesh.shape)}")
    size *= mesh.shape[name]
  return size


def _fsdp_spec(shape: Sequence[int], mesh: Mesh, min_size: int) -> PartitionSpec:
  ways = mesh.shape["fsdp"]
  size = 1
  for dim in shape:
    size *= dim
  if ways == 1 or size < min_size:
    return PartitionSpec()
  candidates = [i for i, dim in enumerate(shape) if dim % ways == 0]
  if not candidates:
    return PartitionSpec()
  # The largest dimension; on a tie the last one (for a kernel: the output features).
  best = max(candidates, key=lambda i: (shape[i], i))
  spec = [None] * len(shape)
  spec[best] = "fsdp"
  return PartitionSpec(*spec)


def spec_for(name: str, shape: Sequence[int], rules: Iterable, mesh: Mesh,
             fsdp_min_size: int = 0) -> PartitionSpec:
  """The `PartitionSpec` the first matching rule gives a leaf of `shape` at path `name`."""
  for rule in rules:
    if len(rule) != 2:
      raise ConfigError(f"sharding rule {rule!r} is not (regex, kind)")
    pattern, kind = rule
    try:
      matched = re.search(pattern, name)
    except re.error as error:
      raise ConfigError(f"sharding rule {pattern!r}: bad regex: {error}") from error
    if not matched:
      continue
    if kind == "replicate":
      return PartitionSpec()
    if kind == "fsdp":
      return _fsdp_spec(shape, mesh, fsdp_min_size)
    if isinstance(kind, (tuple, list)):
      if len(kind) != len(shape):
        raise ConfigError(f"sharding rule {pattern!r} gives {len(kind)} axes to {name} of shape "
                          f"{tuple(shape)}")
      for dim, axes in zip(shape, kind):
        if dim % _axis_size(mesh, axes):
          raise ConfigError(f"sharding rule {pattern!r}: dimension {dim} of {name} does not divide "
                            f"by mesh axes {axes!r}")
      return PartitionSpec(*[tuple(a) if isinstance(a, list) else a for a in kind])
    raise ConfigError(f"sharding rule {pattern!r}: unknown kind {kind!r} "
                      "(use 'replicate', 'fsdp' or a tuple of mesh axes)")
  return PartitionSpec()


def tree_shardings(tree, rules: Iterable, mesh: Mesh, fsdp_min_size: int = 0):
  """A `NamedSharding` for every leaf of `tree` (arrays or `ShapeDtypeStruct`s)."""
  rules = list(rules)

  def one(path, leaf):
    spec = spec_for(path_name(path), getattr(leaf, "shape", ()), rules, mesh, fsdp_min_size)
    return NamedSharding(mesh, spec)

  return jax.tree_util.tree_map_with_path(one, tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data` and `fsdp`; the other axes whole."""
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def with_shardings(abstract_tree, shardings):
  """`ShapeDtypeStruct`s that carry their target sharding (for init and restore)."""
  return jax.tree.map(lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
                      abstract_tree, shardings)
