"""`talkinghead bench train`: synthetic batches shaped like the real inputs, the trainer's own
step, FLOPs from XLA's cost analysis (known answers), peaks and MFU, the generator's parameter
comparison with upstream."""

import json
import pathlib
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from talkinghead_jax import cli
from talkinghead_jax import config as config_lib
from talkinghead_jax.bench import devices
from talkinghead_jax.bench import train as bench_train
from talkinghead_jax.data import input_common, schema
from talkinghead_jax.errors import ConfigError
from talkinghead_jax.train.task import Task

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY_EXPRESSION = ["data.sample_rate=2000", "data.sequence_length=4", "model.audio_channels=(4, 8)",
                   "model.audio_features=8", "model.reference_features=8"]
TINY_HEAD_MOTION = ["data.sample_rate=2000", "data.observed_frames=(13, 14)", "data.predicted_frames=(3, 4)",
                    "model.audio_hidden=8", "model.audio_features=8", "model.pose_hidden=8", "model.pose_features=8",
                    "model.encoder_channels=8"]


def _no_batch_axis(shapes):
  return {name: (shape[1:], np.dtype(dtype)) for name, (shape, dtype) in shapes.items()}


def _artifacts(size, features):
  pca = types.SimpleNamespace(components_=np.zeros((20, 136), np.float32))
  return input_common.DatasetArtifacts(canonical=np.full((68, 3), size / 2, np.float32), pca=pca,
                                       info={"size": size, "fps": 25}, features=frozenset(features))


def test_synthetic_shapes_equal_the_input_pipelines():
  """The bench's batch has exactly the shapes and dtypes the real samplers produce."""
  from talkinghead_jax.data.input_expression import ExpressionSampler
  from talkinghead_jax.data.input_generator import GeneratorSampler
  from talkinghead_jax.data.input_head_motion import HeadMotionSampler
  from talkinghead_jax.data.input_unprojection import UnprojectionSampler

  audio = ["audio_16000", "front", "pose", "num_frames", "frames", "landmarks", "key_frame", "position_map",
           "position_frames", "face_mask"]
  expression = config_lib.load("configs/expression.py:synthtalk_tiny", TINY_EXPRESSION)
  head_motion = config_lib.load("configs/head_motion.py:synthtalk_tiny", TINY_HEAD_MOTION)
  samplers = [(expression, ExpressionSampler(expression, _artifacts(32, audio))),
              (head_motion, HeadMotionSampler(head_motion, _artifacts(32, audio), np.zeros(6), np.ones(6)))]
  for flow in (False, True):
    generator = ml_collections.ConfigDict({"stage": "generator", "data": {
        "num_references": 3, "image_size": 48, "flow_gt": flow}})
    samplers.append((generator, GeneratorSampler(generator, _artifacts(64, audio), "train")))
  unprojection = ml_collections.ConfigDict({"stage": "unprojection", "data": {"image_size": 0,
                                                                           "builder_config": "sidecar_40"}})
  samplers.append((unprojection, UnprojectionSampler(unprojection, _artifacts(40, audio))))

  for config, sampler in samplers:
    sizes, optional = bench_train.batch_sizes(config)
    shapes = schema.batch_shapes(config.stage, 3, optional, **sizes)
    expected = {name: (tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in sampler.output_spec().items()}
    assert _no_batch_axis(shapes) == expected, config.stage
    batch = bench_train.synthetic_batch(config.stage, shapes, sizes.get("S", 0))
    for name, (shape, dtype) in shapes.items():
      assert batch[name].shape == shape and batch[name].dtype == dtype
      assert np.all(np.isfinite(batch[name]))
  assert set(bench_train.batch_sizes(expression)[1].values()) == {True}  # the noise segment is in


def test_generator_ground_truth_position_map_is_added():
  config = ml_collections.ConfigDict({"stage": "generator", "data": {"image_size": 32, "num_references": 2},
                                      "model": {"position_source": "ground_truth"}})
  sizes, _ = bench_train.batch_sizes(config)
  extra = bench_train.extra_fields(config, 2, sizes)
  assert extra == {"key_position_map": ((2, 32, 32, 3), np.dtype(np.float32))}
  position_map = bench_train.synthetic_batch("generator", extra, 32)["key_position_map"]
  assert 0 <= position_map[..., :2].min() and position_map[..., :2].max() <= 32  # x, y inside the crop
  config.model.position_source = "unprojection"
  assert bench_train.extra_fields(config, 2, sizes) == {}


def test_image_size_is_required_for_image_stages():
  config = ml_collections.ConfigDict({"stage": "generator", "data": {"image_size": 0, "builder_config": ""}})
  with pytest.raises(ConfigError, match="image_size"):
    bench_train.batch_sizes(config)


def test_compiled_flops_are_2mnk_for_a_matmul_and_per_device_when_sharded():
  m, k, n = 64, 32, 16
  a, b = jax.ShapeDtypeStruct((m, k), jnp.float32), jax.ShapeDtypeStruct((k, n), jnp.float32)
  compiled = jax.jit(jnp.matmul).lower(a, b).compile()
  assert bench_train.compiled_flops(compiled) == 2 * m * n * k
  mesh = jax.make_mesh((8,), ("rows",))
  sharded = jax.jit(jnp.matmul, in_shardings=(NamedSharding(mesh, PartitionSpec("rows")),
                                              NamedSharding(mesh, PartitionSpec()))).lower(a, b).compile()
  assert bench_train.compiled_flops(sharded) * 8 == 2 * m * n * k  # one device's share
  # A loop's body is counted once; integer-only loops (threefry on CPU) are not float loops.
  loop = jax.jit(lambda x, w: jax.lax.fori_loop(0, 10, lambda i, y: y @ w, x)).lower(
      a, jax.ShapeDtypeStruct((k, k), jnp.float32)).compile()
  assert bench_train.count_float_loops(loop) == 1
  assert bench_train.compiled_flops(loop) < 2 * 2 * m * k * k
  assert bench_train.count_float_loops(jax.jit(lambda key: jax.random.normal(key, (9,))).lower(
      jax.random.key(0)).compile()) == 0
  assert bench_train.compiled_flops(types.SimpleNamespace(cost_analysis=lambda: None)) is None
  assert bench_train.compiled_flops(types.SimpleNamespace(cost_analysis=lambda: [{"flops": 6.0}])) == 6.0


def test_device_peaks_and_mfu():
  cases = {
      "NVIDIA H100 80GB HBM3": ("H100 SXM", 989.5e12, 67e12),
      "NVIDIA H100 PCIe": ("H100 PCIe", 756.5e12, 51e12),
      "NVIDIA H100 NVL": ("H100 NVL", 835.5e12, 60e12),
      "NVIDIA H200": ("H200 SXM", 989.5e12, 67e12),
      "NVIDIA H200 NVL": ("H200 NVL", 835.5e12, 60e12),
      "NVIDIA GH200 480GB": ("GH200 (Hopper GPU)", 989.5e12, 67e12),
      "NVIDIA A100-SXM4-80GB": ("A100", 312e12, 19.5e12),
      "TPU v4": ("TPU v4", 275e12, None),
      "TPU v5 lite": ("TPU v5e", 197e12, None),
      "TPU v5": ("TPU v5p", 459e12, None),
      "TPU v6 lite": ("TPU v6e", 918e12, None),
  }
  for kind, (name, bf16, fp32) in cases.items():
    peak = devices.peak_for(kind)
    assert (peak.name, peak.bf16, peak.fp32) == (name, bf16, fp32), kind
  assert devices.peak_for("NVIDIA H100 80GB HBM3").tf32 == 494.5e12
  assert devices.peak_for("cpu") is None
  assert devices.mfu(2e12, 0.5, 1e12, 8) == pytest.approx(0.5)
  assert devices.mfu(None, 0.5, 1e12, 8) is None and devices.mfu(1e12, 0.5, None, 8) is None


def test_upstream_comparison_explains_the_difference_by_dead_weight():
  """docs/generator.md's counts of our G (measured there with jax.eval_shape) are upstream's minus
  exactly the dead weight, at every K and merge upstream was measured at."""
  def config(k, merge, num_d=1):
    return ml_collections.ConfigDict({"data": {"num_references": k}, "model": {"num_refs": k, "merge": merge,
                                                                               "num_D": num_d}})

  for k, merge, ours in ((8, "mean", 95_293_953), (8, "concat", 95_570_433), (1, "mean", 91_680_385),
                         (32, "mean", 102_371_841)):
    lines = bench_train.upstream_comparison(config(k, merge), ours, 2_797_601)
    assert "exactly the dead weight" in lines["G vs upstream"], (k, merge)
    assert "equal" in lines["D vs upstream"]
  narrow = bench_train.upstream_comparison(config(8, "mean", 2), 95_293_953 - 1000, 2 * 2_797_601)
  assert "+1,000 more" in narrow["G vs upstream"] and "equal" in narrow["D vs upstream"]
  assert "measured at" in bench_train.upstream_comparison(config(4, "mean"), 5, 5)["G vs upstream"]


class _DenseGan(Task):
  """A stand-in GAN task on the generator's batch: G and D are one dense layer each on the
  flattened target landmark image, so the step's matmul FLOPs are known."""

  groups = ("generator", "discriminator")

  def make_input(self, split, process_index, process_count):
    raise AssertionError("the bench must not read data")

  def init_variables(self, rng, batch_spec):
    features = int(np.prod(batch_spec[schema.TGT_LABEL].shape[1:]))
    g_key, d_key = jax.random.split(rng)
    return ({"generator": {"kernel": jax.random.normal(g_key, (features, features)) * 0.01},
             "discriminator": {"kernel": jax.random.normal(d_key, (features, 1)) * 0.01}}, {})

  def loss_fn(self, group, params, collections, batch, rng, step):
    x = batch[schema.TGT_LABEL].reshape(batch[schema.TGT_LABEL].shape[0], -1)
    out = x @ params[group]["kernel"]
    return jnp.mean(out**2), ({}, None)


def test_generator_step_on_a_sharded_mesh_reports_flops_and_upstream_counts(capsys):
  config = config_lib.load("configs/expression.py:synthtalk_tiny",
                           ["mesh.data=1", "mesh.fsdp=8", "sharding.fsdp_min_size=0"])
  config.stage = "generator"
  config.data.image_size = 16
  config.data.num_references = 2
  config.optim = ml_collections.ConfigDict({"generator": config.optim.model, "discriminator": config.optim.model})
  batch, features = 32, 16 * 16
  prepared = bench_train.prepare(config, task=_DenseGan(config), batch_size=batch)
  assert prepared.num_devices == 8
  assert prepared.params == {"generator": features**2, "discriminator": features}
  results = bench_train.describe(prepared, "fake", [])
  results.update(bench_train.measure_step(prepared, steps=2, warmup=1))
  # Forward and weight gradient: 2 matmuls of 2·B·F·F' FLOPs per group; element-wise work
  # (loss, Adam) adds a little. The cost analysis is per device; the report multiplies by 8.
  # Fully sharded (fsdp = 8), no work is repeated on every device, so the sum over devices is
  # one device's whole step (with data = 8 the replicated Adam update would count 8 times).
  matmul_flops = 4 * batch * features * (features + 1)
  assert matmul_flops <= results["FLOPs per step"] <= 1.25 * matmul_flops
  assert results["FLOPs per step"] == 8 * results["FLOPs per step per device"]
  assert results["MFU"] == "n/a" and "no datasheet peak" in results["peak FLOP/s per device"]
  assert results["loss and gradients finite"] is True
  assert results["samples/s"] == pytest.approx(batch / results["step"]["median_s"], rel=1e-3)
  assert results["parameters"] == {"G (generator)": features**2, "D (discriminator)": features}
  assert "K=2" in results["G vs upstream"] and "measured at" in results["G vs upstream"]  # not upstream's K
  assert "ours 256, upstream 2,797,601" in results["D vs upstream"]


def test_cli_bench_train_writes_json(tmp_path, capsys):
  path = tmp_path / "train.json"
  args = ["bench", "train", "--config", "configs/expression.py:synthtalk_tiny", "--batch-size", "8",
          "--steps", "2", "--warmup", "1", "--json", str(path)]
  for override in TINY_EXPRESSION + ["mesh.data=4", "mesh.fsdp=2", "sharding.fsdp_min_size=0"]:
    args += ["--set", override]
  assert cli.main(args) == 0
  results = json.loads(path.read_text())["results"]
  assert results["stage"] == "expression" and results["batch (global)"] == 8
  assert results["batch shapes"]["audio"] == "8×4×7×80 float32"
  assert results["batch shapes"]["noise"] == f"8×{(4 + 6) * 80} float32"
  assert set(results["parameters"]) == {"model"}
  assert results["step"]["repeats"] == 2 and len(results["step"]["times_s"]) == 2
  assert results["FLOPs per step"] == 8 * results["FLOPs per step per device"] > 0
  assert results["mesh"].startswith("data=4, fsdp=2, model=1 (8 ×")
  assert "bench train on" in capsys.readouterr().out
  with pytest.raises(ConfigError, match="does not split"):
    bench_train.prepare(config_lib.load("configs/head_motion.py:synthtalk_tiny", TINY_HEAD_MOTION), batch_size=6)


def test_bench_imports_no_tensorflow():
  """GPU machines have no TensorFlow: nothing the bench imports may pull it in. (Everything
  `prepare` imports is imported here; compiling and running the step import no module.)"""
  code = (
      "import sys\n"
      "import jax\n"
      "from talkinghead_jax import config\n"
      "from talkinghead_jax.bench import train\n"
      "from talkinghead_jax.train import distributed, loop, mesh, sharding, state, tasks\n"
      "for spec in ('configs/expression.py:synthtalk_tiny', 'configs/head_motion.py:synthtalk_tiny'):\n"
      "  c = config.load(spec)\n"
      "  task = tasks.get_task(c)\n"
      "  sizes, optional = train.batch_sizes(c)\n"
      "  from talkinghead_jax.data import schema\n"
      "  shapes = schema.batch_shapes(c.stage, 2, optional, **sizes)\n"
      "  batch = train.synthetic_batch(c.stage, shapes)\n"
      "  spec_ = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}\n"
      "  jax.eval_shape(task.init_variables, jax.random.key(0), spec_)\n"
      "bad = [m for m in sys.modules if m.startswith('tensorflow')]\n"
      "assert not bad, bad\n")
  subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=REPO)
