"""The one train loop every stage uses (big_vision style): `train(config, workdir)`.

config → mesh → input → state initialised straight into its shardings (`jax.eval_shape`, then
a jitted init with `out_shardings`) or restored from the workdir's latest checkpoint → one
`jax.jit` step with explicit in/out shardings and a donated state → checkpoints, TensorBoard
and a progress line. The stage (model, losses, input) is a `Task` (`task.py`). A task that has
`host_init_variables(key, batch_spec)` (numpy values of the same tree as `init_variables`) is
initialised from those instead: each leaf is placed straight into its sharding and only the
optimizers' init is compiled (a big model's jitted init compiles one random kernel per
parameter: a minute on CPU for Θ; `host_init.py`).

Inside the step every parameter group (`task.groups`) is updated in turn with its own optimizer,
and the loss and every gradient leaf are checked for NaN/Inf (one bool each, returned with
the metrics). The host reads them one step late, so the device is never left idle, and always
before a checkpoint is written: a non-finite value stops the run with `NonFiniteError` naming
the step and the tensors, and no checkpoint of a bad state is ever written, so the last one on
disk is good. SIGTERM/SIGINT make the loop save at the next step boundary and return
(`TrainResult.stopped_by_signal`); running the same command again resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import signal
import threading
from typing import Any, TextIO

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from talkinghead_jax import config as config_lib
from talkinghead_jax.data import device_prefetch
from talkinghead_jax.errors import ConfigError, TalkingHeadError
from talkinghead_jax.train import checkpoint as checkpoint_lib
from talkinghead_jax.train import distributed, mesh as mesh_lib, sharding, state as state_lib, tasks
from talkinghead_jax.train.reporting import Reporter

NAN_REPORT = "nonfinite.json"


class NonFiniteError(TalkingHeadError):
  """The loss or a gradient became NaN/Inf; the run stopped without saving the bad state."""

  def __init__(self, step: int, names: list[str], last_checkpoint: int | None, directory: pathlib.Path):
    self.step, self.names, self.last_checkpoint = step, names, last_checkpoint
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    kept = (f"last good checkpoint: step {last_checkpoint} in {directory}" if last_checkpoint is not None
            else "no checkpoint was written before it")
    super().__init__(f"step {step}: non-finite values in {shown}; stopped ({kept})")


@dataclasses.dataclass
class TrainResult:
  final_step: int
  stopped_by_signal: bool
  last_checkpoint: int | None
  metrics: dict[str, float]  # the last report's averages
  history: list[dict[str, float]]  # every report of this call: {"step": …, metric: average, …}


class _StopRequest:
  """SIGTERM/SIGINT set a flag the loop reads at step boundaries; a second SIGINT interrupts."""

  def __init__(self):
    self.signal_number: int | None = None
    self._previous: dict[int, Any] = {}

  def _handle(self, signum, frame):
    if self.signal_number is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signal_number = signum

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for signum in (signal.SIGTERM, signal.SIGINT):
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    return False


def _agreed_stop(local_flag: bool) -> bool:
  """True if any host was asked to stop (a collective: every host calls it at the same steps)."""
  if jax.process_count() == 1:
    return local_flag
  from jax.experimental import multihost_utils  # noqa: PLC0415

  return bool(np.any(multihost_utils.process_allgather(np.int32(local_flag))))


def make_train_step(task, optimizers, schedules):
  """The step `(state, batch) -> (state, metrics, finite_flags)` (to be jitted)."""

  def train_step(state: state_lib.TrainState, batch):
    rng = state.step_key()
    params, opt_state = dict(state.params), dict(state.opt_state)
    collections = state.collections
    metrics, flags = {}, []
    for group in task.groups:
      def group_loss(group_params, group=group, params=dict(params), collections=collections):
        return task.loss_fn(group, {**params, group: group_params}, collections, batch, rng, state.step)

      (loss, (group_metrics, new_collections)), grads = jax.value_and_grad(group_loss, has_aux=True)(params[group])
      updates, opt_state[group] = optimizers[group].update(grads, opt_state[group], params[group])
      params[group] = optax.apply_updates(params[group], updates)
      if new_collections is not None:
        collections = new_collections
      metrics[f"{group}/loss"] = loss
      metrics.update({f"{group}/{name}": value for name, value in group_metrics.items()})
      metrics[f"{group}/grad_norm"] = optax.tree.norm(grads)
      metrics[f"{group}/lr"] = jnp.asarray(schedules[group](state.step), jnp.float32)
      flags.append(jnp.isfinite(loss))
      flags.extend(jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(grads))
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, collections=collections)
    return new_state, metrics, jnp.stack(flags)

  return train_step


def finite_flag_names(task, abstract_params) -> list[str]:
  """Names for the step's finite flags, in order: each group's loss, then its gradient leaves."""
  names = []
  for group in task.groups:
    names.append(f"{group}/loss")
    names.extend(f"grads/{group}/{name}" for name, _ in sharding.named_leaves(abstract_params[group]))
  return names


def _compile_init(init_state, state_shardings):
  """The jitted init, compiled straight into the state's shardings.

  It runs once, so on CPU it is compiled without LLVM optimisation: its dozens of threefry
  kernels (one per initializer) otherwise take seconds to optimise for milliseconds of work.
  """
  lowered = jax.jit(init_state, out_shardings=state_shardings).lower()
  if jax.default_backend() == "cpu":
    return lowered.compile(compiler_options={"xla_backend_optimization_level": 0})
  return lowered.compile()


def _host_init_state(task, init_key, global_spec, optimizers, run_key, abstract_state, state_shardings):
  """The step-0 state from the task's numpy variables, each leaf put straight into its sharding
  (every host builds the same values and hands over only its devices' slices)."""
  params, collections = task.host_init_variables(init_key, global_spec)
  targets = sharding.with_shardings(abstract_state, state_shardings)

  def place(path, value, target):
    value = np.asarray(value)
    if value.shape != target.shape or value.dtype != target.dtype:
      raise TalkingHeadError(f"host_init_variables gives {sharding.path_name(path)} as {value.dtype}{value.shape}; "
                             f"init_variables as {target.dtype}{target.shape}")
    return jax.make_array_from_callback(value.shape, target.sharding, lambda index: value[index])

  try:
    params = jax.tree_util.tree_map_with_path(place, params, targets.params)
    collections = jax.tree_util.tree_map_with_path(place, collections, targets.collections)
  except ValueError as error:  # different trees
    raise TalkingHeadError(f"host_init_variables and init_variables give different trees: {error}") from error
  create = lambda params, collections: state_lib.create_state(params, collections, optimizers, run_key)  # noqa: E731
  lowered = jax.jit(create, out_shardings=state_shardings, donate_argnums=(0, 1)).lower(params, collections)
  options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
  return lowered.compile(compiler_options=options)(params, collections)


@dataclasses.dataclass(frozen=True)
class StatePlan:
  """What a run's state will be, before any of it exists: the optimizers, the abstract state
  and its shardings (shared by `train` and `talkinghead bench train`)."""

  task: Any
  optimizers: dict[str, Any]
  schedules: dict[str, Any]
  init_key: jax.Array
  run_key: jax.Array
  global_spec: dict[str, jax.ShapeDtypeStruct]
  abstract_state: Any
  state_shardings: Any

  def _init_state(self):
    params, collections = self.task.init_variables(self.init_key, self.global_spec)
    return state_lib.create_state(params, collections, self.optimizers, self.run_key)

  def initial_state(self):
    """The step-0 state in its shardings: the task's numpy values placed leaf by leaf when it
    has `host_init_variables`, else the jitted init."""
    if hasattr(self.task, "host_init_variables"):
      return _host_init_state(self.task, self.init_key, self.global_spec, self.optimizers, self.run_key,
                              self.abstract_state, self.state_shardings)
    return _compile_init(self._init_state, self.state_shardings)()

  def jit_step(self, batch_sharding, replicated):
    """The train step with explicit in/out shardings and the state donated."""
    return jax.jit(make_train_step(self.task, self.optimizers, self.schedules),
                   in_shardings=(self.state_shardings, batch_sharding),
                   out_shardings=(self.state_shardings, replicated, replicated),
                   donate_argnums=(0,))


def plan_state(task, config: ml_collections.ConfigDict, global_spec: dict[str, jax.ShapeDtypeStruct],
               steps_per_epoch: int, mesh) -> StatePlan:
  """The `StatePlan` of `task` for batches of `global_spec` on `mesh` (one key per run, from
  `config.seed`: init and the step keys)."""
  optimizers, schedules = state_lib.make_optimizers(config.optim, task.groups, steps_per_epoch)
  init_key, run_key = jax.random.split(jax.random.key(config.seed))
  partial = StatePlan(task, optimizers, schedules, init_key, run_key, global_spec, None, None)
  abstract_state = jax.eval_shape(partial._init_state)  # noqa: SLF001
  state_shardings = sharding.tree_shardings(abstract_state, config.sharding.rules, mesh,
                                            config.sharding.fsdp_min_size)
  return dataclasses.replace(partial, abstract_state=abstract_state, state_shardings=state_shardings)


def _total_steps(config, steps_per_epoch: int) -> int:
  if config.get("total_steps", 0) > 0:
    return int(config.total_steps)
  if config.get("num_epochs", 0) > 0:
    return int(round(config.num_epochs * steps_per_epoch))
  raise ConfigError("set config.total_steps or config.num_epochs to a positive number")


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, task=None, *,
          stream: TextIO | None = None) -> TrainResult:
  """Trains `config.stage` in `workdir`, resuming from its latest checkpoint if there is one."""
  workdir = pathlib.Path(workdir)
  task = task if task is not None else tasks.get_task(config)
  process_index, process_count = jax.process_index(), jax.process_count()
  primary = process_index == 0

  mesh = mesh_lib.make_mesh(config.mesh)
  batch_sharding = sharding.batch_sharding(mesh)
  replicated = sharding.replicated(mesh)
  global_size = int(config.batch_size)
  if global_size % mesh_lib.batch_axis_size(mesh):
    raise ConfigError(f"batch_size {global_size} does not split over data×fsdp = "
                      f"{mesh_lib.batch_axis_size(mesh)} devices")
  if global_size % process_count:
    raise ConfigError(f"batch_size {global_size} does not split over {process_count} hosts")

  data = task.make_input("train", process_index, process_count)
  local_size = global_size // process_count
  expected_rows = (process_index * local_size, (process_index + 1) * local_size)
  if distributed.host_rows(batch_sharding, global_size) != expected_rows:
    raise ConfigError(f"host {process_index} holds batch rows {distributed.host_rows(batch_sharding, global_size)}, "
                      f"its input reads {expected_rows}; put the hosts on the mesh's outer (data) axis")
  global_spec = {name: jax.ShapeDtypeStruct((global_size,) + tuple(spec.shape[1:]), spec.dtype)
                 for name, spec in data.element_spec.items()}

  total_steps = _total_steps(config, data.steps_per_epoch)
  plan = plan_state(task, config, global_spec, data.steps_per_epoch, mesh)
  abstract_state, state_shardings = plan.abstract_state, plan.state_shardings
  flag_names = finite_flag_names(task, abstract_state.params)

  reporter = Reporter(workdir, total_steps, primary=primary, stream=stream)
  checkpoints = checkpoint_lib.Checkpointer(workdir / "checkpoints", max_to_keep=config.checkpoint.max_to_keep,
                                            async_save=config.checkpoint.async_save)
  latest = checkpoints.latest_step()
  if latest is None:
    state = plan.initial_state()
  else:
    state, data_state, _ = checkpoints.restore(latest, sharding.with_shardings(abstract_state, state_shardings))
    data.set_state(data_state)
    reporter.message(f"resuming from step {latest} ({checkpoints.directory})")
  if primary:
    config_lib.write(config, workdir)

  train_step = plan.jit_step(batch_sharding, replicated)
  summaries = jax.jit(task.summary_outputs, out_shardings=replicated)

  # Batches are read and put on the devices ahead of the step; the state saved with a checkpoint
  # is the input's position after the last batch a step consumed (the prefetcher's get_state).
  batches = device_prefetch.DevicePrefetcher(
      data, lambda local: distributed.global_batch(local, batch_sharding, global_size),
      depth=int(config.data.get("device_prefetch", 2)))
  step = int(jax.device_get(state.step))
  last_saved = latest
  stopped = False
  last_metrics: dict[str, float] = {}
  history: list[dict[str, float]] = []
  log_every = max(int(config.log.every_steps), 1)
  images_every = int(config.log.images_every_steps)
  save_every = max(int(config.checkpoint.every_steps), 1)
  stop_check_every = max(int(config.checkpoint.stop_check_every), 1)

  def resolve(pending) -> None:
    """Reads a step's metrics on the host; stops on a non-finite loss or gradient."""
    pending_step, metrics, flags = pending
    metrics, flags = jax.device_get((metrics, flags))
    if not np.all(flags):
      bad = [name for name, ok in zip(flag_names, np.asarray(flags)) if not ok]
      if primary:
        report = {"step": pending_step, "nonfinite": bad, "last_checkpoint": last_saved}
        (workdir / NAN_REPORT).write_text(json.dumps(report, indent=2) + "\n")
      raise NonFiniteError(pending_step, bad, last_saved, checkpoints.directory)
    reporter.add(metrics)

  try:
    with _StopRequest() as stop_request:
      if step >= total_steps:
        reporter.message(f"already trained: step {step} of {total_steps}")
      pending = None
      while step < total_steps:
        batch = next(batches)
        state, metrics, flags = train_step(state, batch)
        step += 1
        if pending is not None:
          resolve(pending)
        pending = (step, metrics, flags)
        stop_now = False
        if process_count == 1 or step % stop_check_every == 0:
          stop_now = _agreed_stop(stop_request.signal_number is not None)
        save_now = stop_now or step % save_every == 0 or step == total_steps
        log_now = stop_now or step % log_every == 0 or step == total_steps
        if save_now or log_now:
          resolve(pending)
          pending = None
        if log_now:
          last_metrics = reporter.report(step)
          history.append({"step": step, **last_metrics})
        if images_every > 0 and (step % images_every == 0 or step == total_steps):
          outputs = jax.device_get(summaries(state.params, state.collections, batch))
          reporter.images(step, task.render_summaries(outputs))
        if save_now:
          checkpoints.save(step, state, batches.get_state(), config)
          last_saved = step
        if stop_now:
          stopped = True
          reporter.message(f"stopping on signal: saved checkpoint at step {step}; run the same command "
                           "again to resume")
          break
  finally:
    batches.close()
    with contextlib.suppress(Exception):
      reporter.close()
    checkpoints.close()
  return TrainResult(final_step=step, stopped_by_signal=stopped, last_checkpoint=last_saved, metrics=last_metrics,
                     history=history)


def load_checkpoint(workdir: str | pathlib.Path, step: int | None = None) -> dict[str, Any]:
  """A run's checkpoint (default: the latest) as numpy: `{"step", "params", "opt_state",
  "collections", "rng", "data", "config"}`; params are keyed by group (`params["model"]`)."""
  checkpoints = checkpoint_lib.Checkpointer(pathlib.Path(workdir) / "checkpoints", async_save=False)
  try:
    step = checkpoints.latest_step() if step is None else step
    if step is None:
      raise TalkingHeadError(f"{checkpoints.directory}: no checkpoint")
    state, data_state, config_dict = checkpoints.restore_arrays(step)
  finally:
    checkpoints.close()
  return {**state, "step": int(state["step"]), "data": data_state, "config": config_dict}
