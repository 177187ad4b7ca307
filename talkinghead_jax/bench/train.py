"""`talkinghead bench train --config configs/<stage>.py:<variant>`: one training step, timed.

The step is the trainer's own (`train.loop.make_train_step`), built from the config the way
`train.loop.train` builds it: the task, the device mesh, the state initialised straight into
its shardings, one `jax.jit` with explicit in/out shardings and a donated state. Only the input
differs: a synthetic batch with the stage's schema shapes (`data/schema.py`), random values in
each field's range, made once and kept on the devices. So the bench needs no prepared data and
no TensorFlow, and runs on machines that have neither; it measures the step, not the input.

Reported: compile time; step time (median and p90 over `--steps` steps, each waited for, after
the warm-up); samples/s; FLOPs per step from XLA's cost analysis of the compiled step;
achieved FLOP/s and MFU against the device's datasheet peak (`bench/devices.py`; n/a where the
peak is unknown, e.g. on CPUs); parameters per group; memory. For the generator stage also
the G and D parameter counts next to upstream's (UPSTREAM_NOTES §10, docs/generator.md).
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any, Mapping

from talkinghead_jax import bench
from talkinghead_jax.errors import ConfigError, TalkingHeadError

# Schedules need an epoch length; a synthetic batch has none. It changes no FLOP of the step.
SYNTHETIC_STEPS_PER_EPOCH = 1000

# Upstream's generator and discriminator parameter counts (UPSTREAM_NOTES §10, counted from its
# state dict at upstream's size: ngf 32, 256², every part of the final model), by (K, merge).
UPSTREAM_G_PARAMS: dict[tuple[int, str], int] = {
    (8, "mean"): 107_920_769,
    (8, "concat"): 108_197_249,
    (1, "mean"): 104_493_441,
    (32, "mean"): 114_998_657,
}
UPSTREAM_D_PARAMS_PER_SCALE = 2_797_601  # one NLayerDiscriminator; upstream trained num_D = 1
# Parameters upstream holds but never uses, which we do not build (docs/generator.md).
DEAD_WEIGHT: dict[str, int] = {
    "warped-image embedders' levels 2-5 (img_ref_embedding, img_ani_embedding)": 2 * 6_268_800,
    "combination encoder's 32-channel level": 37_056,
    "previous-frame SPADE branches (up_1, up_0)": 41_600 + 10_560,
}
# Upstream builds the attention generator even at K = 1, where it has nothing to choose from.
UPSTREAM_ATTENTION_AT_K1 = 186_240


def _find_field(config, name: str, default: Any = None) -> Any:
  """The first field called `name` anywhere in the (nested) config, or `default`."""
  if not hasattr(config, "items"):
    return default
  if name in config:
    return config[name]
  for _, value in config.items():
    found = _find_field(value, name, _MISSING)
    if found is not _MISSING:
      return found
  return default


_MISSING = object()


def image_size(config) -> int:
  """The stage's image size S: `data.image_size`, else the `_<S>` suffix of `data.builder_config`."""
  data = config.data
  size = int(data.get("image_size", 0) or 0)
  if size > 0:
    return size
  match = re.search(r"_(\d+)$", str(data.get("builder_config", "")))
  if match:
    return int(match.group(1))
  raise ConfigError("the train bench needs the image size: set data.image_size (the pipeline takes it from "
                    "the prepared data set, which the bench does not read)")


def batch_sizes(config) -> tuple[dict[str, int], dict[str, bool]]:
  """The schema's symbol sizes and optional fields of `config.stage`, as its input would have them."""
  from talkinghead_jax.audio.windows import samples_per_frame  # noqa: PLC0415
  from talkinghead_jax.data import schema  # noqa: PLC0415

  stage, data = config.get("stage"), config.data
  if stage in ("expression", "head_motion"):
    chunks = int(data.get("context_frames", 7))
    samples = samples_per_frame(int(data.sample_rate), int(data.get("fps", 25)))
    if stage == "head_motion":
      return {"W": int(data.observed_frames[1]) + int(data.predicted_frames[1]), "C": chunks, "S_audio": samples}, {}
    length = int(data.sequence_length)
    augment = config.get("augment", {})
    mix_noise = bool(tuple(augment.get("snr_db", ()))) and float(augment.get("noise_probability", 0)) > 0
    sizes = {"L": length, "C": chunks, "S_audio": samples, "P": int(config.model.num_coeffs),
             "N": (length + chunks - 1) * samples}
    return sizes, {schema.NOISE: mix_noise}
  if stage == "unprojection":
    return {"S": image_size(config)}, {}
  if stage == "generator":
    flow = bool(data.get("flow_gt", False))
    return ({"S": image_size(config), "K": int(data.get("num_references", 8))},
            {schema.FLOW_REF: flow, schema.FLOW_REF_CONFIDENCE: flow})
  raise ConfigError(f"config.stage is {stage!r}; the train bench knows {schema.STAGES}")


# The generator task's optional batch key with the key frame's ground-truth position map
# (train/tasks/generator.py), read when model.position_source = "ground_truth".
KEY_POSITION_MAP = "key_position_map"


def extra_fields(config, batch: int, sizes: Mapping[str, int]) -> dict[str, tuple[tuple[int, ...], Any]]:
  """Batch keys outside the schema that the stage's task reads under this config."""
  import numpy as np  # noqa: PLC0415

  if config.get("stage") == "generator" and str(config.model.get("position_source", "")) == "ground_truth":
    return {KEY_POSITION_MAP: ((batch, sizes["S"], sizes["S"], 3), np.dtype(np.float32))}
  return {}


def synthetic_batch(stage: str, shapes: Mapping[str, tuple[tuple[int, ...], Any]], image_size: int = 0,
                    seed: int = 0) -> dict[str, Any]:
  """Random arrays of the given shapes, each in its field's range (DESIGN.md §2 conventions)."""
  import numpy as np  # noqa: PLC0415

  from talkinghead_jax.data import schema  # noqa: PLC0415

  rng = np.random.default_rng(seed)
  size = float(image_size or 64)
  batch = {}
  for name, (shape, dtype) in shapes.items():
    if np.dtype(dtype) == np.uint8:
      value = rng.integers(0, 256, shape)
    elif name in (schema.TGT_LANDMARKS, schema.KEY_FRONT):
      # Points on the middle of the crop, depth on the same scale.
      value = np.concatenate([rng.uniform(0.25 * size, 0.75 * size, shape[:-1] + (2,)),
                              rng.normal(0, 0.05 * size, shape[:-1] + (1,))], -1)
    elif name == schema.POSE and stage == "head_motion":
      value = rng.normal(size=shape)  # normalised poses
    elif name in (schema.POSE, schema.REF_POSE, schema.TGT_POSE, schema.KEY_POSE):
      value = np.concatenate([rng.normal(0, 0.1, shape[:-1] + (3,)), np.zeros(shape[:-1] + (3,))], -1)
    elif name in (schema.AUDIO, schema.NOISE):
      value = rng.uniform(-0.5, 0.5, shape)
    elif name == KEY_POSITION_MAP:
      # A face-like cap (the render bench's mesh), so the rendered face covers what a face does.
      from talkinghead_jax.bench.render import face_position_map  # noqa: PLC0415

      value = np.broadcast_to(face_position_map(shape[1], shape[1])[0], shape)
    elif name == schema.POSITION_MAP:
      value = rng.uniform(0, size, shape)
    elif name == schema.FLOW_REF:
      value = rng.normal(0, 2.0, shape)
    elif name in (schema.FACE_MASK, schema.MOUTH_BOX, schema.FLOW_REF_CONFIDENCE):
      value = rng.random(shape) < 0.5
    elif name.endswith("label"):
      value = rng.random(shape) < 0.05  # landmark images: thin bright lines on black
    else:
      value = rng.normal(size=shape)  # PCA coefficients
    batch[name] = np.asarray(value, dtype)
  return batch


def compiled_flops(compiled) -> float | None:
  """FLOPs of one call of a compiled program, per device, from XLA's cost analysis.

  For a program partitioned over several devices XLA analyses the per-device program, so this
  is one device's share. Older JAX returns a list (one entry per program); some backends return
  None or no "flops" entry.
  """
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # noqa: BLE001 - a backend without cost analysis raises its own error types
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  flops = float(analysis["flops"])
  return flops if flops > 0 else None


def count_float_loops(compiled) -> int:
  """The while loops of the compiled program that carry floating-point values.

  XLA's cost analysis counts a loop body's FLOPs once, whatever the trip count, so these make
  the FLOPs an undercount. Loops that carry only integers (threefry's rounds, which the CPU
  backend keeps rolled) do no floating-point work and are not counted.
  """
  try:
    text = compiled.as_text() or ""
  except Exception:  # noqa: BLE001
    return 0
  loops = 0
  for line in text.splitlines():
    head, found, _ = line.partition(" while(")
    if found and re.search(r"\b(f8\w*|f16|bf16|f32|f64)\[", head):
      loops += 1
  return loops


def param_count(tree) -> int:
  import jax  # noqa: PLC0415

  return sum(int(leaf.size) for leaf in jax.tree.leaves(tree))


def generator_groups(groups) -> tuple[str | None, str | None]:
  """(G group, D group) of a GAN task: the discriminator's name says so, the other is G."""
  discriminators = [g for g in groups if "disc" in g.lower() or g in ("D", "netD", "d")]
  generators = [g for g in groups if g not in discriminators]
  if len(discriminators) != 1 or len(generators) != 1:
    return None, None
  return generators[0], discriminators[0]


def upstream_comparison(config, g_params: int, d_params: int) -> dict[str, str]:
  """G and D parameter counts next to upstream's, with the difference explained."""
  k = int(_find_field(config.get("model", {}), "num_refs", config.data.get("num_references", 8)))
  merge = str(_find_field(config.get("model", {}), "merge", "mean"))
  num_d = int(_find_field(config, "num_D", 1))
  lines = {}
  upstream = UPSTREAM_G_PARAMS.get((k, merge))
  if upstream is None:
    known = ", ".join(f"K={kk} {mm}" for kk, mm in UPSTREAM_G_PARAMS)
    lines["G vs upstream"] = f"ours {g_params:,}; upstream was measured at {known} only (this is K={k} {merge})"
  else:
    dead = sum(DEAD_WEIGHT.values()) + (UPSTREAM_ATTENTION_AT_K1 if k == 1 else 0)
    difference = upstream - g_params
    rest = difference - dead
    parts = "; ".join(f"{name} {count:,}" for name, count in DEAD_WEIGHT.items())
    if k == 1:
      parts += f"; attention generator at K = 1 {UPSTREAM_ATTENTION_AT_K1:,}"
    verdict = ("exactly the dead weight we do not build" if rest == 0 else
               f"the dead weight we do not build ({dead:,}) and {rest:+,} more: this variant is not upstream's "
               "architecture (narrower ngf, another image size's widths, or an ablation switch)")
    lines["G vs upstream"] = (f"ours {g_params:,}, upstream {upstream:,} (K={k}, {merge} merge): "
                              f"upstream has {difference:,} more = {verdict}")
    lines["upstream dead weight"] = f"{dead:,} = {parts}"
  upstream_d = UPSTREAM_D_PARAMS_PER_SCALE * num_d
  same = ("equal" if upstream_d == d_params else
          f"differ by {d_params - upstream_d:+,}: not upstream's discriminator (ndf, n_layers_D or the input size)")
  lines["D vs upstream"] = (f"ours {d_params:,}, upstream {upstream_d:,} ({num_d} × {UPSTREAM_D_PARAMS_PER_SCALE:,} "
                            f"per scale, num_D={num_d}): {same}")
  return lines


@dataclasses.dataclass
class StepBench:
  """A compiled training step with its state and a synthetic batch on the devices."""

  config: Any
  task: Any
  mesh: Any
  compiled: Any
  state: Any
  batch: dict[str, Any]
  batch_size: int
  shapes: dict[str, tuple[tuple[int, ...], Any]]
  params: dict[str, int]  # parameters per group
  collections: int  # non-trainable state (batch statistics, spectral-norm vectors, …)
  init_s: float
  compile_s: float
  last_flags: Any = None

  @property
  def num_devices(self) -> int:
    return int(self.mesh.devices.size)

  def step(self):
    """One training step (the state is donated and replaced); returns the step's outputs."""
    self.state, metrics, flags = self.compiled(self.state, self.batch)
    self.last_flags = flags
    return self.state, metrics, flags


def prepare(config, task=None, batch_size: int | None = None, seed: int = 0) -> StepBench:
  """Builds the stage's step as `train.loop.train` does, on a synthetic batch, and compiles it."""
  import jax  # noqa: PLC0415

  from talkinghead_jax.data import schema  # noqa: PLC0415
  from talkinghead_jax.train import distributed, loop, sharding, tasks  # noqa: PLC0415
  from talkinghead_jax.train import mesh as mesh_lib  # noqa: PLC0415

  task = task if task is not None else tasks.get_task(config)
  mesh = mesh_lib.make_mesh(config.mesh)
  batch_sharding = sharding.batch_sharding(mesh)
  replicated = sharding.replicated(mesh)
  global_size = int(batch_size or config.batch_size)
  if global_size < 1 or global_size % mesh_lib.batch_axis_size(mesh):
    raise ConfigError(f"batch size {global_size} does not split over data×fsdp = "
                      f"{mesh_lib.batch_axis_size(mesh)} devices")

  sizes, optional = batch_sizes(config)
  stage = str(config.stage)
  shapes = schema.batch_shapes(stage, global_size, optional, **sizes)
  shapes.update(extra_fields(config, global_size, sizes))
  global_spec = {name: jax.ShapeDtypeStruct(shape, dtype) for name, (shape, dtype) in shapes.items()}
  # Every host makes the same global batch and hands its rows to the mesh, as the loop does.
  full = synthetic_batch(stage, shapes, sizes.get("S", 0), seed)
  start, stop = distributed.host_rows(batch_sharding, global_size)
  batch = distributed.global_batch({name: value[start:stop] for name, value in full.items()}, batch_sharding,
                                   global_size)

  plan = loop.plan_state(task, config, global_spec, SYNTHETIC_STEPS_PER_EPOCH, mesh)
  abstract_state = plan.abstract_state
  started = time.perf_counter()
  state = jax.block_until_ready(plan.initial_state())  # the loop's own init
  init_s = time.perf_counter() - started

  train_step = plan.jit_step(batch_sharding, replicated)
  started = time.perf_counter()
  compiled = train_step.lower(state, batch).compile()
  compile_s = time.perf_counter() - started
  return StepBench(
      config=config, task=task, mesh=mesh, compiled=compiled, state=state, batch=batch, batch_size=global_size,
      shapes=shapes, params={group: param_count(abstract_state.params[group]) for group in task.groups},
      collections=param_count(abstract_state.collections), init_s=init_s, compile_s=compile_s)


def _significant(value: float, digits: int = 4) -> float:
  return float(f"{value:.{digits}g}")


def _percentile(values, q: float) -> float:
  import numpy as np  # noqa: PLC0415

  return float(np.percentile(np.asarray(values, np.float64), q))


def _memory(prepared: StepBench) -> dict[str, Any]:
  """Compile-time buffer sizes per device, and the runtime peak where the backend reports one."""
  import jax  # noqa: PLC0415

  gib = 2.0**30
  out: dict[str, Any] = {}
  try:
    analysis = prepared.compiled.memory_analysis()
  except Exception:  # noqa: BLE001
    analysis = None
  if analysis is not None:
    out["compiled memory per device (GiB)"] = {
        name: round(getattr(analysis, f"{name}_size_in_bytes", 0) / gib, 3)
        for name in ("argument", "output", "alias", "temp")}
  peaks = []
  for device in prepared.mesh.devices.flat:
    if device.process_index != jax.process_index():
      continue
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
      peaks.append(stats["peak_bytes_in_use"])
  out["peak memory per device (GiB)"] = (round(max(peaks) / gib, 3) if peaks else
                                         f"n/a ({jax.default_backend()} reports no memory statistics)")
  return out


def measure_step(prepared: StepBench, *, steps: int, warmup: int) -> dict[str, Any]:
  """Times `steps` steps (each waited for) after `warmup` untimed ones; the numbers to report."""
  import jax  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  from talkinghead_jax.bench import devices  # noqa: PLC0415

  timing = bench.measure(prepared.step, warmup=warmup, repeats=steps)
  median = timing["median_s"]
  per_device = compiled_flops(prepared.compiled)
  num_devices = prepared.num_devices
  total = per_device * num_devices if per_device is not None else None
  loops = count_float_loops(prepared.compiled)
  kind = prepared.mesh.devices.flat[0].device_kind
  peak = devices.peak_for(kind)

  results: dict[str, Any] = {
      "step": timing,
      "step time median (ms)": round(median * 1e3, 3),
      "step time p90 (ms)": round(_percentile(timing["times_s"], 90) * 1e3, 3),
      "samples/s": round(prepared.batch_size / median, 3),
      "compile time (s)": round(prepared.compile_s, 2),
      "init time (s)": round(prepared.init_s, 2),
  }
  if total is None:
    results["FLOPs per step"] = f"n/a ({jax.default_backend()}: the compiled step has no cost analysis)"
  else:
    results["FLOPs per step"] = int(total)
    results["FLOPs per step per device"] = int(per_device)
    note = f"XLA cost analysis of the compiled step: one device's program × {num_devices} devices"
    if loops:
      note += f"; {loops} floating-point while loop(s), each body counted once (an undercount)"
    results["FLOPs source"] = note
    results["achieved FLOP/s"] = _significant(total / median)
    results["achieved FLOP/s per device"] = _significant(total / median / num_devices)
  if peak is None:
    results["peak FLOP/s per device"] = f"n/a ({kind}: no datasheet peak in bench/devices.py)"
    results["MFU"] = "n/a"
  else:
    results["peak FLOP/s per device"] = {p: peak.get(p) for p in devices.PRECISIONS if peak.get(p)}
    results["peak source"] = f"{peak.name}, {peak.source} (dense, no sparsity)"
    results["MFU"] = {p: (f"{value:.1%}" if (value := devices.mfu(total, median, peak.get(p), num_devices)) is not None
                          else "n/a") for p in devices.PRECISIONS if peak.get(p)}
  results.update(_memory(prepared))
  if prepared.last_flags is not None:
    results["loss and gradients finite"] = bool(np.all(jax.device_get(prepared.last_flags)))
  return results


def describe(prepared: StepBench, spec: str, overrides) -> dict[str, Any]:
  """What ran: config, mesh, batch shapes, parameter counts (and upstream's, for Θ)."""
  mesh = prepared.mesh
  results: dict[str, Any] = {
      "config": spec,
      "overrides": list(overrides),
      "stage": str(prepared.config.stage),
      "mesh": ", ".join(f"{axis}={size}" for axis, size in mesh.shape.items())
              + f" ({prepared.num_devices} × {mesh.devices.flat[0].device_kind})",
      "batch (global)": prepared.batch_size,
      "batch shapes": {name: "×".join(str(d) for d in shape) + f" {dtype}"
                       for name, (shape, dtype) in prepared.shapes.items()},
      "parameters": {group: count for group, count in prepared.params.items()},
      "non-trainable state": prepared.collections,  # batch statistics, spectral norms, frozen networks
  }
  compute_dtype = _find_field(prepared.config.get("model", {}), "compute_dtype")
  if compute_dtype is not None:
    results["compute dtype (config)"] = str(compute_dtype)
  if str(prepared.config.stage) == "generator":
    g_group, d_group = generator_groups(prepared.task.groups)
    if g_group is not None:
      results["parameters"] = {f"G ({g_group})": prepared.params[g_group], f"D ({d_group})": prepared.params[d_group]}
      results.update(upstream_comparison(prepared.config, prepared.params[g_group], prepared.params[d_group]))
  return results


@bench.register_target("train", "One training step of any stage on synthetic batches: time, samples/s, FLOPs, MFU.")
def _configure(parser):
  parser.add_argument("--config", required=True, help="configs/<stage>.py:<variant>")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
  parser.add_argument("--batch-size", type=int, default=None, help="global batch (default: the config's)")
  parser.add_argument("--steps", type=int, default=None, help="timed steps (default: --repeats)")
  parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic batch")

  def run(args) -> int:
    from talkinghead_jax import config as config_lib  # noqa: PLC0415

    steps = args.steps if args.steps is not None else args.repeats
    if steps < 1:
      raise TalkingHeadError(f"--steps must be >= 1, got {steps}")
    config = config_lib.load(args.config, overrides=args.set)
    prepared = prepare(config, batch_size=args.batch_size, seed=args.seed)
    results = describe(prepared, args.config, args.set)
    results.update(measure_step(prepared, steps=steps, warmup=args.warmup))
    bench.report("train", results, args.json)
    return 0

  return run
