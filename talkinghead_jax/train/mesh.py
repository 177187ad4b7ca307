"""The device mesh every training step runs on: named axes `data`, `fsdp`, `model`.

A config gives the mesh as `config.mesh = {data: 4, fsdp: 2, model: 1}`; one axis may be -1,
meaning "all the devices the other axes leave". Batches are split over (`data`, `fsdp`),
parameters over `fsdp` (and `model`) by the sharding rules (`sharding.py`).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
from jax.sharding import AxisType, Mesh

from talkinghead_jax.errors import ConfigError

AXES = ("data", "fsdp", "model")


def mesh_shape(spec: Mapping[str, int], device_count: int) -> tuple[int, ...]:
  """Resolves a `{axis: size}` spec (one size may be -1) to sizes for `AXES`."""
  unknown = set(spec) - set(AXES)
  if unknown:
    raise ConfigError(f"mesh: unknown axis {sorted(unknown)}; the axes are {AXES}")
  sizes = [int(spec.get(axis, 1)) for axis in AXES]
  free = [i for i, size in enumerate(sizes) if size == -1]
  if len(free) > 1:
    raise ConfigError(f"mesh: only one axis may be -1, got {dict(zip(AXES, sizes))}")
  if any(size == 0 or size < -1 for size in sizes):
    raise ConfigError(f"mesh: axis sizes must be positive or -1, got {dict(zip(AXES, sizes))}")
  fixed = math.prod(size for size in sizes if size != -1)
  if free:
    if device_count % fixed:
      raise ConfigError(f"mesh: {device_count} devices do not divide by the fixed axes "
                        f"{dict(zip(AXES, sizes))}")
    sizes[free[0]] = device_count // fixed
  if math.prod(sizes) != device_count:
    raise ConfigError(f"mesh: {dict(zip(AXES, sizes))} needs {math.prod(sizes)} devices, "
                      f"there are {device_count}")
  return tuple(sizes)


def make_mesh(spec: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh with axes (`data`, `fsdp`, `model`) over `devices` (default: all devices).

  With one axis -1 the mesh takes all the devices; with every size given it takes the first
  that many.

  `jax.make_mesh` orders devices for the hardware's topology (ICI rings on TPU). The axes
  are `Auto`: shardings are given explicitly at the jit boundary (MaxText style) and XLA
  propagates them inside.
  """
  devices = list(jax.devices() if devices is None else devices)
  if all(int(spec.get(axis, 1)) > 0 for axis in AXES):
    # Fully specified: use that many devices (e.g. a one-device run on a bigger machine).
    wanted = math.prod(int(spec.get(axis, 1)) for axis in AXES)
    if wanted > len(devices):
      raise ConfigError(f"mesh: {dict(spec)} needs {wanted} devices, there are {len(devices)}")
    devices = devices[:wanted]
  shape = mesh_shape(spec, len(devices))
  return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def batch_axis_size(mesh: Mesh) -> int:
  """How many ways a batch is split: the product of the `data` and `fsdp` axes."""
  return mesh.shape["data"] * mesh.shape["fsdp"]
