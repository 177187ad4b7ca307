"""Shared pieces of the Θ and unprojection task tests: tiny test configs, fast one-off compiles,
host-initialised states and an unprojection checkpoint made without training.

(A plain module with a unique name, imported by the tests.)
"""

import concurrent.futures
import pathlib

import jax

from talkinghead_jax import config as config_lib
from talkinghead_jax.train import checkpoint as checkpoint_lib
from talkinghead_jax.train import state as state_lib
from talkinghead_jax.train import tasks

REPO = pathlib.Path(__file__).resolve().parents[2]

# Θ at test size: S = 32, ngf 8, K = 2, three levels, narrow flow nets and D; synthetic batches
# without augmentation (so they carry the key frame's stored position map).
GENERATOR_TEST_OVERRIDES = [
    "data.source=synthetic", "data.image_size=32", "data.augment=false", "data.synthetic_clips=4",
    "data.synthetic_frames=12", "data.samples_per_clip=2", "model.position_source=ground_truth", "model.ngf=8",
    "model.max_channels=32", "model.n_downsample=3", "model.n_adaptive_layers=2", "model.n_fc_layers=1", "model.nff=8",
    "model.n_downsample_F=1", "model.n_blocks_F=1", "model.ndf=8", "model.n_layers_D=2", "model.aware3d.grid_stride=2",
    "batch_size=2", "log.every_steps=1", "log.images_every_steps=0", "checkpoint.every_steps=1000",
    "checkpoint.stop_check_every=1",
]
UNPROJECTION_TEST_OVERRIDES = [
    "data.source=synthetic", "data.image_size=32", "data.synthetic_clips=4", "data.synthetic_frames=8",
    "model.features=4", "model.num_downsamples=3", "batch_size=4",
]
# XLA options that make one-off CPU compiles several times faster (test speed only; the same as
# tests/models/test_generator.py). As XLA_FLAGS for subprocesses.
FAST_COMPILE = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0,
                "xla_llvm_disable_expensive_passes": True}
FAST_COMPILE_FLAGS = ("--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=0 "
                      "--xla_llvm_disable_expensive_passes=true")


def generator_config(*overrides, variant="synthtalk_tiny,nonlinear"):
  """A tiny test config; by default the paper's Θ (non-linear composition)."""
  return config_lib.load(str(REPO / f"configs/generator.py:{variant}"), [*GENERATOR_TEST_OVERRIDES, *overrides])


def unprojection_config(*overrides):
  return config_lib.load(str(REPO / "configs/unprojection.py:synthtalk_tiny"),
                         [*UNPROJECTION_TEST_OVERRIDES, *overrides])


def compile_lowered(lowered):
  try:
    return lowered.compile(compiler_options=FAST_COMPILE)
  except Exception:  # an XLA without these options: compile normally  # noqa: BLE001
    return lowered.compile()


def compile_fast(fn, *args, **jit_options):
  return compile_lowered(jax.jit(fn, **jit_options).lower(*args))


def compile_all(programs, workers: int = 2) -> dict:
  """{name: compiled} for an iterable of (name, thunk → lowered program): each program is lowered
  (traced, in this thread) while earlier ones compile in `workers` threads (XLA's CPU compile of
  one program runs on one core and releases the GIL)."""
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    futures = {name: pool.submit(compile_lowered, lower()) for name, lower in programs}
    return {name: future.result() for name, future in futures.items()}


def initial_state(task, config, steps_per_epoch=4, seed=0):
  """The task's host-initialised step-0 state (numpy-backed), its optimizers and schedules."""
  optimizers, schedules = state_lib.make_optimizers(config.optim, task.groups, steps_per_epoch)
  params, collections = task.host_init_variables(jax.random.key(seed), {})
  state = state_lib.create_state(params, collections, optimizers, jax.random.key(seed + 1))
  return state, optimizers, schedules


def write_unprojection_checkpoint(workdir, size=16, features=4, num_downsamples=2):
  """A workdir holding an (untrained, host-initialised) unprojection net, as a run writes it."""
  config = unprojection_config(f"data.image_size={size}", f"model.features={features}",
                               f"model.num_downsamples={num_downsamples}")
  task = tasks.get_task(config)
  state, _, _ = initial_state(task, config)
  checkpoints = checkpoint_lib.Checkpointer(pathlib.Path(workdir) / "checkpoints", async_save=False)
  try:
    checkpoints.save(0, jax.device_put(state), {"epoch": 0, "position": 0}, config)
  finally:
    checkpoints.close()
  return workdir
