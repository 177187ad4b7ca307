"""Θ's training task: host initialisation against Flax's initialisers, config variants, the
in-step 3D-aware image and crop_ref, every ablation variant's init + G+D step, and errors."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from generator_testdata import REPO, compile_all, compile_fast, generator_config, initial_state
from talkinghead_jax import config as config_lib
from talkinghead_jax.errors import ConfigError
from talkinghead_jax.geometry import landmarks as landmarks_lib
from talkinghead_jax.geometry import rigid
from talkinghead_jax.models import layers
from talkinghead_jax.train import host_init, loop, tasks

ABLATIONS = ("baseline", "no_3d", "no_attention", "linear", "no_warp", "k1", "k8", "k32", "merge_concat")


def _load_generator_configs_module():
  import importlib.util  # noqa: PLC0415

  spec = importlib.util.spec_from_file_location("generator_configs", REPO / "configs/generator.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


# --- Host initialisation ---------------------------------------------------------------------


class _UpstreamLayers(nn.Module):
  """One of each models/layers.py layer kind, big enough for the statistics to be tight."""

  @nn.compact
  def __call__(self, image, vector):
    a = layers.Conv(64, 3, name="conv")(image)
    layers.SNConv(64, 3, name="sn_conv")(image)
    layers.ConvTranspose(48, 3, name="conv_transpose")(image)
    layers.SNDense(256, name="sn_dense")(vector)
    layers.batch_norm(False, name="bn")(vector)
    return a


class _FlaxDefaults(nn.Module):
  """The Flax layers the unprojection net is made of, with their default initialisers."""

  @nn.compact
  def __call__(self, image, vector):
    nn.Conv(64, (4, 4), name="conv")(image)
    nn.ConvTranspose(48, (4, 4), name="conv_transpose")(image)
    nn.BatchNorm(use_running_average=True, name="bn")(vector)
    return image


@pytest.mark.parametrize("module, scheme", [(_UpstreamLayers(), "upstream"), (_FlaxDefaults(), "flax")])
def test_host_init_draws_what_the_flax_initialisers_draw(module, scheme):
  image, vector = jnp.zeros((1, 8, 8, 64)), jnp.zeros((1, 4096))
  flax_values = jax.device_get(jax.jit(module.init)(jax.random.key(0), image, vector))
  abstract = jax.eval_shape(module.init, jax.random.key(0), image, vector)
  host = host_init.initialize(abstract, scheme, seed=3)
  assert jax.tree.structure(host) == jax.tree.structure(flax_values)
  for (path, ours), theirs in zip(jax.tree_util.tree_flatten_with_path(host)[0], jax.tree.leaves(flax_values)):
    name = jax.tree_util.keystr(path)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, name
    if name.endswith("['u']"):  # spectral norm: a unit vector in a random direction
      assert np.linalg.norm(ours) == pytest.approx(1.0, rel=1e-5) and np.linalg.norm(theirs) == pytest.approx(1.0)
      continue
    if np.all(theirs == theirs.flat[0]):  # constants (biases, running statistics, flax scales)
      np.testing.assert_array_equal(ours, theirs, err_msg=name)
      continue
    # Random draws: the same distribution (mean, spread, and the truncation of LeCun normal).
    assert np.mean(ours) == pytest.approx(np.mean(theirs), abs=0.1 * np.std(theirs)), name
    assert np.std(ours) == pytest.approx(np.std(theirs), rel=0.05), name
  kernel = host["params"]["conv"]["kernel"]
  fan_in, fan_out = 3 * 3 * 64, 3 * 3 * 64
  if scheme == "upstream":  # xavier normal, gain 0.02
    assert np.std(kernel) == pytest.approx(0.02 * np.sqrt(2 / (fan_in + fan_out)), rel=0.03)
  else:  # LeCun truncated normal: variance 1/fan_in, nothing beyond 2σ of the untruncated normal
    fan_in = 4 * 4 * 64
    assert np.std(kernel) == pytest.approx(np.sqrt(1 / fan_in), rel=0.03)
    assert np.max(np.abs(kernel)) <= 2 * np.sqrt(1 / fan_in) / 0.87962566103423978


def test_host_init_depends_on_the_seed_and_the_path_only():
  abstract = {"params": {"a": {"kernel": jax.ShapeDtypeStruct((3, 4), jnp.float32)},
                         "b": {"kernel": jax.ShapeDtypeStruct((3, 4), jnp.float32)}}}
  first = host_init.initialize(abstract, "upstream", jax.random.key(5))
  again = host_init.initialize({"params": dict(reversed(list(abstract["params"].items())))}, "upstream",
                               jax.random.key(5))
  np.testing.assert_array_equal(first["params"]["a"]["kernel"], again["params"]["a"]["kernel"])
  assert not np.allclose(first["params"]["a"]["kernel"], first["params"]["b"]["kernel"])
  other = host_init.initialize(abstract, "upstream", jax.random.key(6))
  assert not np.allclose(first["params"]["a"]["kernel"], other["params"]["a"]["kernel"])
  with pytest.raises(ValueError, match="no rule"):
    host_init.initialize({"params": {"a": {"embedding": jax.ShapeDtypeStruct((3,), jnp.float32)}}}, "upstream", 0)


# --- Config variants ---------------------------------------------------------------------------


def test_variant_names_compose_a_base_and_switches():
  configs = _load_generator_configs_module()
  assert configs.parse_variant("synthtalk_tiny_no_3d") == configs.parse_variant("synthtalk_tiny,no_3d") == (
      "synthtalk_tiny", ["no_3d"])
  assert configs.parse_variant("no_3d") == ("vox_k8", ["no_3d"])
  assert configs.parse_variant("vox_k8,linear,bf16") == ("vox_k8", ["linear", "bf16"])
  with pytest.raises(ValueError):
    configs.parse_variant("synthtalk_tiny,no_such_switch")
  with pytest.raises(ValueError):
    configs.parse_variant("huge")
  vox = config_lib.load(str(REPO / "configs/generator.py:vox_k8"))
  assert (vox.data.image_size, vox.model.ngf, vox.data.num_references, vox.model.num_D) == (256, 32, 8, 1)
  assert (vox.optim.generator.lr, vox.optim.discriminator.lr, vox.optim.generator.b1) == (2e-4, 8e-4, 0.0)
  expected = {
      "baseline": dict(use_3d=False, use_attention=False, nonlinear_composition=False, use_warp=False),
      "no_3d": dict(use_3d=False), "no_attention": dict(use_attention=False),
      "linear": dict(nonlinear_composition=False), "no_warp": dict(use_warp=False),
      "merge_concat": dict(merge="concat", add_raw=False),
  }
  # synthtalk_tiny composes linearly; `nonlinear` gives the paper's Θ, and changes nothing else.
  tiny = config_lib.load(str(REPO / "configs/generator.py:synthtalk_tiny")).to_dict()
  tiny_paper = config_lib.load(str(REPO / "configs/generator.py:synthtalk_tiny,nonlinear")).to_dict()
  assert not tiny["model"]["nonlinear_composition"] and tiny_paper["model"]["nonlinear_composition"]
  assert {key for key in tiny["model"] if tiny["model"][key] != tiny_paper["model"][key]} == {"nonlinear_composition"}
  for base in ("vox_k8", "synthtalk_tiny,nonlinear"):
    reference = config_lib.load(str(REPO / f"configs/generator.py:{base}")).to_dict()
    for ablation in ABLATIONS:
      # The underscore form names a base and one switch (parse_variant's equivalence is tested above).
      for name in [f"{base},{ablation}"] + ([f"{base}_{ablation}"] if base == "vox_k8" else []):
        config = config_lib.load(str(REPO / f"configs/generator.py:{name}")).to_dict()
        changed = {key for key in reference["model"] if config["model"][key] != reference["model"][key]}
        if ablation.startswith("k"):
          assert config["data"]["num_references"] == int(ablation[1:]) and not changed, name
        else:
          assert changed == set(expected[ablation]), name
          assert all(config["model"][k] == v for k, v in expected[ablation].items()), name
  paper = config_lib.load(str(REPO / "configs/generator.py:vox_k8,paper_adam"))
  assert (paper.optim.generator.b1, paper.optim.discriminator.lr) == (0.5, 2e-4)


# --- The step's inputs: the 3D-aware image and crop_ref ---------------------------------------


def test_rendering_at_the_key_pose_gives_back_the_key_frame_and_crop_ref_blacks_out_the_mouth():
  config = generator_config("model.aware3d.grid_stride=1")
  task = tasks.get_task(config)
  original = next(task.make_input("train", 0, 1))
  size = config.data.image_size
  # The input's landmark image of the rendered face: the key frame's frontal landmarks at the target pose.
  points = rigid.unfrontalize(original["key_front"], original["tgt_pose"])
  np.testing.assert_array_equal(original["rendered_label"][..., 0], landmarks_lib.draw_landmark_images(points, size))
  batch = {**original, "tgt_pose": original["key_pose"]}  # render the key frame's mesh where it is
  inputs, extras = jax.device_get(jax.jit(task.prepare)(batch, {}))
  np.testing.assert_array_equal(inputs["rendered_label"], batch["rendered_label"])
  key = batch["key_image"].astype(np.float32) / 127.5 - 1
  mouth = batch["mouth_box"][..., 0] > 0.5
  # The synthetic key map is a plane through the pixel centres: inside SynthTalk's UV face mask
  # (away from its soft edge, the landmark dots and the blacked-out mouth) the rendered face is
  # the key image.
  dots = batch["key_image"][..., 1] == 255
  near_dots = np.zeros_like(dots)
  for dy in (-1, 0, 1):
    for dx in (-1, 0, 1):
      near_dots |= np.roll(dots, (dy, dx), axis=(1, 2))
  covered = (extras["coverage"] > 0.9) & ~mouth & ~near_dots
  assert covered.sum() > 100
  np.testing.assert_allclose(inputs["rendered"][covered], key[covered], atol=0.03)
  np.testing.assert_array_equal(inputs["rendered"][mouth], -1.0)
  target = batch["tgt_image"].astype(np.float32) / 127.5 - 1
  warping_ref = batch["warping_ref"].astype(np.float32) / 127.5 - 1
  np.testing.assert_array_equal(inputs["warping_ref"][mouth], -1.0)
  np.testing.assert_allclose(inputs["warping_ref"][~mouth], warping_ref[~mouth], atol=1e-6)
  np.testing.assert_allclose(extras["ref_warp_target"][~mouth], target[~mouth], atol=1e-6)
  # The cropped target: the target where the rendered face is, black elsewhere and in the mouth box.
  inside = (extras["coverage"] >= 0.5) & ~mouth
  np.testing.assert_allclose(extras["rendered_warp_target"][inside], target[inside], atol=1e-6)
  np.testing.assert_array_equal(extras["rendered_warp_target"][~inside], -1.0)
  assert inputs["ref_image"].shape == (2, 2, size, size, 3) and inputs["ref_image"].min() >= -1


# --- Every ablation variant: init and one G+D step ------------------------------------------


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_every_ablation_variant_initialises_and_takes_a_step(ablation):
  # Smaller still than the other tests: two levels, no VGG, hard rendering, and the D step on the
  # G step's fakes (one Θ forward fewer to compile; the default, regenerating, is tested in
  # test_generator_parity.py). One compile per variant, the bulk of the time.
  frames = max(12, int(ablation[1:]) + 8) if ablation[0] == "k" and ablation[1:].isdigit() else 12
  config = generator_config("loss.vgg=0", "loss.d_fakes=reuse", "model.aware3d.mode=hard", "model.n_downsample=2",
                            "model.n_downsample_A=1", "model.n_adaptive_layers=1", "model.n_sc_layers=1",
                            "loss.l1=5", f"data.synthetic_frames={frames}",
                            variant=f"synthtalk_tiny,nonlinear,{ablation}")
  task = tasks.get_task(config)
  data = task.make_input("train", 0, 1)
  batch = next(data)
  state, optimizers, schedules = initial_state(task, config, data.steps_per_epoch)
  before = jax.device_get(state.params)
  step = compile_fast(loop.make_train_step(task, optimizers, schedules), state, batch)
  state, metrics, flags = jax.device_get(step(state, batch))
  assert np.all(flags)
  assert np.isfinite(metrics["generator/loss"]) and np.isfinite(metrics["discriminator/loss"])
  m = config.model
  assert ("generator/warp_ref" in metrics) == m.use_warp
  assert ("generator/warp_rendered" in metrics) == (m.use_warp and m.use_3d)
  # The image L1 term is λ times the logged mean |final − target|.
  np.testing.assert_allclose(metrics["generator/l1"], 5 * metrics["generator/l1_final"], rtol=1e-5)
  assert "fakes" not in state.collections  # only passed from the G to the D update
  # Both groups moved; the parameter trees are the variant's.
  for group in ("generator", "discriminator"):
    moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before[group]),
                                                      jax.tree.leaves(state.params[group]))]
    assert np.mean(moved) > 0.5, group
  params = state.params["generator"]
  assert ("flow_network_ani" in params) == m.use_3d
  assert ("atten_gen" in params) == (m.use_attention and config.data.num_references > 1)
  assert batch["ref_image"].shape[1] == config.data.num_references
  assert ("bn_0_2" in params["up_0"]) == (m.use_3d and m.nonlinear_composition)


def test_bfloat16_compute_runs_in_bfloat16_and_matches_float32():
  small = ("model.n_downsample=2", "model.n_downsample_A=1", "model.n_adaptive_layers=1", "model.n_sc_layers=1")
  full, half = (tasks.get_task(generator_config(*small, "loss.vgg=0", f"model.compute_dtype={dtype}"))
                for dtype in ("float32", "bfloat16"))
  batch = next(full.make_input("train", 0, 1))
  state, _, _ = initial_state(full, full.config)
  collections = state.collections

  def forward(task):
    return lambda params, batch: task.generate(params, collections["generator"], task.prepare(batch, collections)[0])[0]

  args = (state.params["generator"], batch)
  compiled = compile_all((name, functools.partial(jax.jit(forward(task)).lower, *args))
                         for name, task in (("float32", full), ("bfloat16", half)))
  outputs = {name: jax.device_get(step(*args)) for name, step in compiled.items()}
  for key in ("image", "raw_image"):
    reference, low = outputs["float32"][key], outputs["bfloat16"][key]
    assert low.dtype == np.float32  # the losses see float32
    # bfloat16 keeps 8 bits: under 1/4 of a grey level on average, and the same picture.
    assert np.mean(np.abs(low - reference)) < 2e-3, key
    assert np.corrcoef(low.ravel(), reference.ravel())[0, 1] > 0.99, key
  # Θ's convolutions run on bfloat16 operands (parameters cast inside the step, kept float32).
  jaxpr = jax.make_jaxpr(forward(half))(*args)
  convolutions = [eqn for eqn in _equations(jaxpr.jaxpr) if eqn.primitive.name == "conv_general_dilated"]
  assert convolutions and all(eqn.invars[0].aval.dtype == jnp.bfloat16 for eqn in convolutions)
  assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(state.params))


def _equations(jaxpr):
  """Every equation of a jaxpr, including those of nested jaxprs (pjit, custom_vjp, …)."""
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      for sub in (value if isinstance(value, (list, tuple)) else [value]):
        inner = getattr(sub, "jaxpr", None)
        if inner is not None:
          yield from _equations(inner if hasattr(inner, "eqns") else sub)


# --- Configuration errors ----------------------------------------------------------------------


def test_configuration_errors_are_one_line_config_errors(tmp_path):
  with pytest.raises(ConfigError, match="unprojection_checkpoint"):
    tasks.get_task(generator_config("model.position_source=unprojection"))
  with pytest.raises(ConfigError, match="not a training workdir"):
    tasks.get_task(generator_config("model.position_source=unprojection",
                                    f"model.unprojection_checkpoint={tmp_path}")).frozen_variables()
  with pytest.raises(ConfigError, match="render_in_pipeline"):
    tasks.get_task(generator_config("data.render_in_pipeline=true"))
  with pytest.raises(ConfigError, match="add_raw"):
    tasks.get_task(generator_config("model.merge=concat"))
  with pytest.raises(ConfigError, match="compute_dtype"):
    tasks.get_task(generator_config("model.compute_dtype=float16"))
  task = tasks.get_task(generator_config())
  batch = next(task.make_input("train", 0, 1))
  batch.pop("key_position_map")  # an input without the stored map
  with pytest.raises(ConfigError, match="key_position_map"):
    jax.eval_shape(task.prepare, batch, {})
  with pytest.raises(ConfigError, match="array file"):
    tasks.get_task(generator_config("data.source=arrays")).make_input("train", 0, 1)
