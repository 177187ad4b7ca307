"""Θ: its parameter tree against upstream's state dict, and a jitted training forward +
backward at tiny size for the default and every ablation switch."""

import functools

import generator_numpy_reference as ref
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import upstream_param_map as upstream

from talkinghead_jax.errors import ConfigError
from talkinghead_jax.models.generator import Generator

UPSTREAM_G = 107_920_769  # K = 8, mean merge (UPSTREAM_NOTES §10, upstream_params.txt)
UPSTREAM_G_CONCAT = 108_197_249
UPSTREAM_G_K1 = 104_493_441
UPSTREAM_G_K32 = 114_998_657


def _abstract_batch(batch, k, size, rendered=True):
  spec = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)  # noqa: E731
  out = dict(tgt_label=spec(batch, size, size, 1), ref_image=spec(batch, k, size, size, 3),
             ref_label=spec(batch, k, size, size, 1), warping_ref=spec(batch, size, size, 3),
             warping_ref_label=spec(batch, size, size, 1))
  if rendered:
    out.update(rendered=spec(batch, size, size, 3), rendered_label=spec(batch, size, size, 1))
  return out


def _abstract_variables(generator, size=256):
  batch = _abstract_batch(1, generator.num_refs, size)
  return jax.eval_shape(lambda b: generator.init(jax.random.key(0), b), batch)


def _param_count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


@pytest.fixture(scope="module")
def listing():
  return upstream.read_listing()


def test_parameter_tree_maps_exactly_onto_upstreams_state_dict(listing):
  variables = _abstract_variables(Generator())  # upstream's size: S 256, ngf 32, K 8, mean merge
  mismatched, extra, missing, dead_built = upstream.compare(listing["G"], variables)
  assert not mismatched and not extra and not missing and not dead_built, (
      mismatched[:5], extra[:5], missing[:5], dead_built[:5])
  dead = upstream.count(listing["G"], lambda key: bool(upstream.DEAD.match(key)))
  assert upstream.count(listing["G"]) == UPSTREAM_G
  assert dead == 12_626_816  # 11.7% of upstream's G
  assert _param_count(variables["params"]) == UPSTREAM_G - dead == 95_293_953
  # Per part, ours equals upstream's live parameters of the same module.
  for part, tree in variables["params"].items():
    prefix = ("warp." if part.startswith("flow_network") else
              "" if part.startswith("img_") else "netG.") + part + "."
    live = upstream.count(listing["G"], lambda key: key.startswith(prefix) and not upstream.DEAD.match(key))
    assert _param_count(tree) == live, part


def test_concat_merge_and_other_k_match_upstreams_counts(listing):
  concat_listing = {**listing["G"], **listing["G concat"]}
  concat = _abstract_variables(Generator(merge="concat", add_raw=False))
  assert upstream.compare(concat_listing, concat) == ([], [], [], [])
  dead = upstream.count(listing["G"], lambda key: bool(upstream.DEAD.match(key)))
  assert upstream.count(concat_listing) == UPSTREAM_G_CONCAT
  assert _param_count(concat["params"]) == UPSTREAM_G_CONCAT - dead == 95_570_433

  k32 = _abstract_variables(Generator(num_refs=32))
  assert k32["params"]["encoder"]["atten1"]["conv"]["kernel"].shape == (3, 3, 128 * 32, 128)
  assert _param_count(k32["params"]) == UPSTREAM_G_K32 - dead == 102_371_841
  # K = 1: no information exchange (as upstream), and no attention generator either (a softmax
  # over one reference is constant, so upstream's is dead weight there).
  k1 = _abstract_variables(Generator(num_refs=1))
  atten_gen = upstream.count(listing["G"], lambda key: key.startswith("netG.atten_gen."))
  assert "atten_gen" not in k1["params"] and "fusion" not in k1["params"]["encoder"]
  assert _param_count(k1["params"]) == UPSTREAM_G_K1 - dead - atten_gen == 91_680_385


# --- Tiny jitted training steps -------------------------------------------------------------

SIZE, BATCH, REFS = 32, 2, 2
DEFAULT = dict(ngf=8, max_channels=64, n_downsample=4, n_adaptive_layers=3, n_downsample_A=2,
               nff=8, n_downsample_F=2, n_blocks_F=1, num_refs=REFS)
SMALL = dict(ngf=8, max_channels=32, n_downsample=3, n_adaptive_layers=2, n_downsample_A=2, n_fc_layers=1,
             nff=8, n_downsample_F=1, n_blocks_F=1, num_refs=REFS)
VARIANTS = {
    "default": DEFAULT,
    "no_3d": dict(SMALL, use_3d=False),
    "no_attention": dict(SMALL, use_attention=False),
    "linear": dict(SMALL, nonlinear_composition=False),
    "no_warp": dict(SMALL, use_warp=False),
    "concat": dict(SMALL, merge="concat", add_raw=False),
}
# XLA options that make these one-off CPU compiles several times faster (test speed only).
FAST_COMPILE = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0,
                "xla_llvm_disable_expensive_passes": True}
MUTABLE = ["batch_stats", "spectral"]


def _batch(rendered=True):
  rng = np.random.default_rng(0)
  u = lambda low, *shape: rng.uniform(low, 1, size=shape).astype(np.float32)  # noqa: E731
  out = dict(tgt_label=u(0, BATCH, SIZE, SIZE, 1), ref_image=u(-1, BATCH, REFS, SIZE, SIZE, 3),
             ref_label=u(0, BATCH, REFS, SIZE, SIZE, 1), warping_ref=u(-1, BATCH, SIZE, SIZE, 3),
             warping_ref_label=u(0, BATCH, SIZE, SIZE, 1))
  if rendered:
    out.update(rendered=u(-1, BATCH, SIZE, SIZE, 3), rendered_label=u(0, BATCH, SIZE, SIZE, 1))
  return out


def _compile(fn, *args):
  lowered = jax.jit(fn).lower(*args)
  try:
    return lowered.compile(compiler_options=FAST_COMPILE)
  except Exception:  # an XLA without these options: compile normally  # noqa: BLE001
    return lowered.compile()


@functools.lru_cache(maxsize=None)
def _training_step(name):
  """(batch, variables, outputs, gradients, updated collections) of one jitted training
  forward + backward of the named variant."""
  generator = Generator(**VARIANTS[name])
  batch = _batch(rendered=generator.use_3d)
  variables = ref.init_variables(generator, batch)

  def loss(params, state, batch):
    out, updated = generator.apply({"params": params, **state}, batch, train=True, mutable=MUTABLE)
    total = jnp.mean(jnp.square(out["image"])) + jnp.mean(jnp.square(out.get("raw_image", 0.0)))
    return total, (out, updated)

  params = variables["params"]
  state = {c: variables[c] for c in MUTABLE}
  step = _compile(jax.value_and_grad(loss, has_aux=True), params, state, batch)
  (_, (outputs, updated)), grads = step(params, state, batch)
  return batch, variables, *jax.device_get((outputs, grads, updated))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_training_forward_backward_is_finite_with_the_right_shapes(name):
  batch, variables, out, grads, updated = _training_step(name)
  config = VARIANTS[name]
  sources = ["ref"] if config.get("use_3d") is False else ["ref", "rendered"]
  assert out["image"].shape == (BATCH, SIZE, SIZE, 3)
  assert ("raw_image" in out) == (config.get("add_raw", True) or config.get("nonlinear_composition") is False)
  for key in sources:
    assert out["flows"][key].shape == (BATCH, SIZE, SIZE, 2)
    assert out["weights"][key].shape == (BATCH, SIZE, SIZE, 1)
    assert out["warped"][key].shape == (BATCH, SIZE, SIZE, 3)
  assert sorted(out["flows"]) == sorted(sources)
  attention_size = SIZE // 2 ** config["n_downsample_A"]
  assert out["attention"].shape == (BATCH, REFS, attention_size, attention_size)
  np.testing.assert_allclose(np.asarray(out["attention"]).sum(1), 1.0, rtol=1e-5)
  assert out["ref_idx"].shape == (BATCH,) and out["ref_idx"].dtype == jnp.int32
  assert np.all((np.asarray(out["ref_idx"]) >= 0) & (np.asarray(out["ref_idx"]) < REFS))
  for leaf in jax.tree_util.tree_leaves((out, grads)):
    assert np.all(np.isfinite(np.asarray(leaf)))
  assert np.all(np.abs(np.asarray(out["image"])) < 1)
  # Every part of the network receives a gradient (the wiring is connected end to end).
  for part, tree in grads.items():
    assert sum(np.abs(np.asarray(g)).sum() for g in jax.tree_util.tree_leaves(tree)) > 0, part
  # Training mode advanced the spectral-norm vectors and the batch-norm statistics.
  u_before = variables["spectral"]["up_0"]["conv_0"]["u"]
  assert not np.allclose(updated["spectral"]["up_0"]["conv_0"]["u"], u_before)
  assert not np.allclose(updated["batch_stats"]["encoder"]["conv1"]["bn"]["mean"],
                         variables["batch_stats"]["encoder"]["conv1"]["bn"]["mean"])


def test_linear_composition_blends_raw_render_and_reference_as_upstream():
  _, _, out, _, _ = _training_step("linear")
  w_ani, w_ref = np.asarray(out["weights"]["rendered"]), np.asarray(out["weights"]["ref"])
  ani = np.asarray(out["raw_image"]) * w_ani + np.asarray(out["warped"]["rendered"]) * (1 - w_ani)
  np.testing.assert_allclose(out["ani_image"], ani, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["image"], ani * w_ref + np.asarray(out["warped"]["ref"]) * (1 - w_ref),
                             rtol=1e-5, atol=1e-6)


def test_without_warping_the_composition_sees_the_unwarped_images():
  batch, _, out, _, _ = _training_step("no_warp")
  np.testing.assert_array_equal(out["warped"]["ref"], batch["warping_ref"])
  np.testing.assert_array_equal(out["warped"]["rendered"], batch["rendered"])


def test_without_attention_the_attention_is_uniform_and_not_built():
  _, variables, out, _, _ = _training_step("no_attention")
  np.testing.assert_allclose(out["attention"], 1.0 / REFS)
  assert "atten_gen" not in variables["params"]
  assert not {"fusion", "atten1", "atten2"} & set(variables["params"]["encoder"])


def test_without_the_3d_branch_nothing_of_it_is_built():
  _, variables, out, _, _ = _training_step("no_3d")
  params = variables["params"]
  assert "flow_network_ani" not in params and "img_ani_embedding" not in params
  assert "bn_0_2" not in params["up_0"] and "mlp_gamma3" not in params["up_0"]["bn_s"]
  assert "rendered" not in out["warped"]


def test_inconsistent_configs_and_batches_are_refused():
  batch = _abstract_batch(1, 2, 32)
  with pytest.raises(ConfigError, match="concat"):
    jax.eval_shape(lambda b: Generator(**SMALL, merge="concat").init(jax.random.key(0), b), batch)
  with pytest.raises(ConfigError, match="merge"):
    jax.eval_shape(lambda b: Generator(**SMALL, merge="sum").init(jax.random.key(0), b), batch)
  with pytest.raises(ValueError, match="K=3"):
    jax.eval_shape(lambda b: Generator(**dict(SMALL, num_refs=3)).init(jax.random.key(0), b), batch)
  with pytest.raises(ValueError, match="lacks"):
    jax.eval_shape(lambda b: Generator(**SMALL).init(jax.random.key(0), b), _abstract_batch(1, 2, 32, False))
