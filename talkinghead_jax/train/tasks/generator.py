"""Training Θ, the 3D-aware generator, and its discriminator in one jitted GAN step.

Batch (data/schema.py "generator"; uint8 images, float landmark images): the K references
and their landmark images, the target frame, its landmark image, pose and landmarks, the
matched reference (`warping_ref`, chosen by the pipeline's motion matcher: the train rule on
the train split), the clip's key frame with its pose and frontal landmarks, the target's mouth
box, and with `data.flow_gt` the DIS flow target ← warping_ref and its confidence.

Each step, for the batch (UPSTREAM_NOTES §2.4, §2.13, §2.14):

1. Images to [-1, 1]. The 3D-aware image (`model.use_3d`): the key frame's position map —
   `model.position_source` "unprojection" (the frozen unprojection net of
   `model.unprojection_checkpoint` on the key image) or "ground_truth" (the batch's
   `key_position_map`, SynthTalk's stored map of the key frame, moved with the frame's
   augmentation) — becomes a mesh cut by SynthTalk's face mask (fixed in its UV layout, which
   is also the layout the unprojection net learnt), coloured by the key image, re-posed to the
   target pose and rendered (models/aware3d.py). Its landmark image comes with the batch
   (`rendered_label`: the key frame's frontal landmarks at the target pose, drawn by the input
   pipeline as upstream's dataset did; drawing it in the step would need a host callback, which
   would also keep the step out of JAX's persistent compilation cache). Rendering happens here,
   inside the step, and only here (`data.render_in_pipeline` must be off). Upstream's
   `--crop_ref` (`model.crop_ref`): the target's mouth box is blacked out in the matched
   reference, the rendered face and the warp targets.
2. Group `generator` (first, as upstream): Θ forward (training mode: batch statistics, one
   spectral-norm power iteration); per output — the final image, the raw landmark-only image
   (`add_raw` / linear composition), the intermediate `ani_image` (linear composition) —
   hinge G loss, feature matching ×10/num_D and VGG perceptual ×10; flow L1 ×10 of the
   reference flow against `flow_ref` masked by its confidence (`data.flow_gt`); warp L1 ×10 of
   the warped reference against the target and of the warped render against the target cut to
   the rendered face (`aware3d.crop_to_render`).
3. Group `discriminator`: fakes regenerated with the just-updated Θ under `stop_gradient`
   (upstream regenerates them under `no_grad`; `loss.d_fakes="reuse"` takes the generator
   step's fakes instead, as pix2pixHD does: one Θ forward and one rendering fewer per step),
   hinge D loss on real vs each of the final and raw images. D sees 8 channels: matched
   reference landmark + image, target landmark, image.

Frozen networks — the perceptual VGG and the unprojection net — live in the state's
collections (`perceptual`, `unprojection`): they enter the jitted step as arguments, never as
closed-over constants, and are saved with each checkpoint (so a resumed run uses the same ones).

`model.compute_dtype = "bfloat16"`: parameters stay float32; Θ, D and the VGG run with their
parameters and inputs cast to bfloat16 (the layers compute in their input's dtype; batch-norm
statistics, spectral-norm vectors and flow-warp coordinates stay float32), and every loss is
computed in float32 on outputs cast back.
"""

from __future__ import annotations

import functools
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from talkinghead_jax.data import schema
from talkinghead_jax.errors import ConfigError
from talkinghead_jax.models import aware3d as aware3d_lib
from talkinghead_jax.models.discriminator import MultiscaleDiscriminator
from talkinghead_jax.models.generator import Generator
from talkinghead_jax.models.unprojection import UnprojectionNet
from talkinghead_jax.train import arrays, host_init, losses
from talkinghead_jax.train.task import Task

POSITION_SOURCES = ("unprojection", "ground_truth")
D_FAKES = ("regenerate", "reuse")
FAKES = "fakes"  # a collection that lives only between the two groups' updates (loss.d_fakes="reuse")
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
GENERATOR_FIELDS = ("ngf", "n_downsample", "max_channels", "n_downsample_A", "n_adaptive_layers", "n_fc_layers",
                    "n_sc_layers", "nff", "n_downsample_F", "n_blocks_F", "flow_multiplier", "use_3d",
                    "use_attention", "nonlinear_composition", "use_warp", "merge", "add_raw")
MUTABLE = ["batch_stats", "spectral"]
SUMMARY_SAMPLES = 2  # rows of the TensorBoard image grid
SUMMARY_REFERENCES = 4  # references shown per row


def to_unit_range(images: jax.Array) -> jax.Array:
  """uint8 [0, 255] → float32 [-1, 1]."""
  return images.astype(jnp.float32) / 127.5 - 1.0


def _cast(tree, dtype):
  return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


@functools.lru_cache(maxsize=8)
def synthtalk_uv_face_mask(size: int) -> np.ndarray:
  """SynthTalk's face mask (size, size) bool: fixed in its position maps' UV layout, so it cuts
  any map in that layout (what the unprojection net, trained on SynthTalk, predicts)."""
  from talkinghead_jax.data import synthtalk_head  # noqa: PLC0415 (numpy only)

  u, v = synthtalk_head.position_map_material(int(size))
  return np.asarray(synthtalk_head.face_mask_material(u, v), bool).reshape(size, size)


def load_unprojection(workdir: str) -> tuple[UnprojectionNet, int, dict[str, Any]]:
  """The trained unprojection net of a workdir: (module, its image size, {"params", "batch_stats"})."""
  from talkinghead_jax.train import loop  # noqa: PLC0415 (loop imports the task registry)

  path = pathlib.Path(workdir)
  if not (path / "checkpoints").is_dir():
    raise ConfigError(f"{path}: model.unprojection_checkpoint is not a training workdir (no checkpoints/); "
                      "train one with `talkinghead train --config configs/unprojection.py:<variant>`")
  checkpoint = loop.load_checkpoint(path)
  config = checkpoint["config"]
  if config.get("stage") != "unprojection":
    raise ConfigError(f"{path}: model.unprojection_checkpoint holds a {config.get('stage')!r} run, not unprojection")
  m = config["model"]
  net = UnprojectionNet(features=int(m["features"]), num_downsamples=int(m["num_downsamples"]),
                        kernel_size=int(m["kernel_size"]))
  variables = {"params": checkpoint["params"]["model"], "batch_stats": checkpoint["collections"]["batch_stats"]}
  return net, int(config["data"]["image_size"]), variables


def unproject_key_frame(net: UnprojectionNet, net_size: int, variables, key_image: jax.Array,
                        size: int) -> jax.Array:
  """The unprojection net's position map (B, P, P, 3) of key images (B, size, size, 3) in [-1, 1],
  in crop pixels of a `size` crop (P = net_size: the image is resized to the net's size)."""
  image = key_image
  if net_size != size:
    image = jax.image.resize(image, (image.shape[0], net_size, net_size, 3), "linear")
  return net.apply(variables, image, train=False) * (size / net_size)


class GeneratorTask(Task):
  groups = ("generator", "discriminator")  # upstream: the G step, then the D step

  def __init__(self, config):
    super().__init__(config)
    m, data = config.model, config.data
    self.size = int(data.image_size)
    self.num_refs = int(data.num_references)
    self.generator = Generator(**{name: m[name] for name in GENERATOR_FIELDS}, num_refs=self.num_refs)
    self.generator.check_config()
    self.discriminator = MultiscaleDiscriminator(num_D=int(m.num_D), ndf=int(m.ndf), n_layers=int(m.n_layers_D))
    if m.compute_dtype not in COMPUTE_DTYPES:
      raise ConfigError(f"model.compute_dtype must be one of {sorted(COMPUTE_DTYPES)}, got {m.compute_dtype!r}")
    self.compute_dtype = COMPUTE_DTYPES[m.compute_dtype]
    if data.get("render_in_pipeline", False):
      raise ConfigError("data.render_in_pipeline: the 3D-aware image is rendered inside the training step only; "
                        "set it to false")
    self.use_3d = bool(m.use_3d)
    self.position_source = str(m.position_source)
    if self.position_source not in POSITION_SOURCES:
      raise ConfigError(f"model.position_source must be one of {POSITION_SOURCES}, got {self.position_source!r}")
    self.crop_ref = bool(m.crop_ref)
    self.d_fakes = str(config.loss.get("d_fakes", "regenerate"))
    if self.d_fakes not in D_FAKES:
      raise ConfigError(f"loss.d_fakes must be one of {D_FAKES}, got {self.d_fakes!r}")
    self.flow_gt = bool(data.get("flow_gt", False))
    r = m.aware3d
    self.aware3d = aware3d_lib.Aware3D(
        image_size=self.size, mode=r.mode, softras_sigma=float(r.softras_sigma), gamma=float(r.gamma),
        faces_per_pixel=int(r.faces_per_pixel), grid_stride=int(r.grid_stride), tile_size=int(r.tile_size),
        tile_capacity=int(r.tile_capacity), warn_on_overflow=bool(r.warn_on_overflow), draw_landmarks=False)
    w = config.loss
    self.weights = {name: float(w[name]) for name in ("gan", "feat", "vgg", "flow", "warp")}
    self.weights["l1"] = float(w.get("l1", 0.0))  # runs saved before `loss.l1` existed had none
    self.unprojection_checkpoint = str(m.get("unprojection_checkpoint", ""))
    if self.use_3d and self.position_source == "unprojection" and not self.unprojection_checkpoint:
      raise ConfigError("model.position_source='unprojection' needs model.unprojection_checkpoint (the workdir of "
                        "a `talkinghead train --config configs/unprojection.py:…` run), or set "
                        "model.position_source=ground_truth")
    self._frozen: dict[str, Any] | None = None
    self._unprojection: tuple[UnprojectionNet, int] | None = None
    self._perceptual = None

  # --- Input and variables -----------------------------------------------------------------

  def make_input(self, split, process_index, process_count):
    if self.config.data.source == "arrays":
      raise ConfigError("the generator trains on a prepared data set (data.source=tfds) or on synthetic batches "
                        "(data.source=synthetic), not on an array file")
    ground_truth = self.use_3d and self.position_source == "ground_truth"
    keys = schema.names("generator", {schema.FLOW_REF: self.flow_gt, schema.FLOW_REF_CONFIDENCE: self.flow_gt,
                                      schema.KEY_POSITION_MAP: ground_truth})
    return arrays.stage_input(self.config, "generator", split=split, process_index=process_index,
                              process_count=process_count, frame_keys=keys, window=1)

  def frozen_variables(self) -> dict[str, Any]:
    """The frozen networks' numpy variables, loaded once: {"perceptual": …, "unprojection": …}."""
    if self._frozen is None:
      frozen: dict[str, Any] = {}
      if self.weights["vgg"] > 0:
        from talkinghead_jax.models import vgg  # noqa: PLC0415

        p = self.config.perceptual
        self._perceptual, params = vgg.perceptual_network(p.network, p.get("weights_path") or None)
        frozen["perceptual"] = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
      if self.use_3d and self.position_source == "unprojection":
        net, size, variables = load_unprojection(self.unprojection_checkpoint)
        self._unprojection = (net, size)
        frozen["unprojection"] = jax.tree.map(lambda x: np.asarray(x, np.float32), variables)
      self._frozen = frozen
    return self._frozen

  def _dummy_inputs(self) -> tuple[dict[str, jax.Array], jax.Array]:
    s, k = self.size, self.num_refs
    zeros = lambda *shape: jnp.zeros(shape, jnp.float32)  # noqa: E731
    batch = dict(tgt_label=zeros(1, s, s, 1), ref_image=zeros(1, k, s, s, 3), ref_label=zeros(1, k, s, s, 1),
                 warping_ref=zeros(1, s, s, 3), warping_ref_label=zeros(1, s, s, 1))
    if self.use_3d:
      batch.update(rendered=zeros(1, s, s, 3), rendered_label=zeros(1, s, s, 1))
    return batch, zeros(1, s, s, 8)

  def _assemble(self, g_variables, d_variables):
    params = {"generator": g_variables["params"], "discriminator": d_variables["params"]}
    collections = {"generator": {name: g_variables[name] for name in g_variables if name != "params"},
                   "discriminator": {name: d_variables[name] for name in d_variables if name != "params"},
                   **self.frozen_variables()}
    return params, collections

  def init_variables(self, rng, batch_spec):
    g_key, d_key = jax.random.split(rng)
    g_batch, d_input = self._dummy_inputs()
    return self._assemble(self.generator.init(g_key, g_batch), self.discriminator.init(d_key, d_input))

  def host_init_variables(self, rng, batch_spec):
    """numpy values of `init_variables`' tree (upstream's initialisers, `host_init.py`): the loop
    places them without compiling an init program."""
    g_batch, d_input = self._dummy_inputs()
    key = jax.random.key(0)
    g_abstract = jax.eval_shape(self.generator.init, key, g_batch)
    d_abstract = jax.eval_shape(self.discriminator.init, key, d_input)
    return self._assemble(host_init.initialize(g_abstract, "upstream", rng, prefix="generator"),
                          host_init.initialize(d_abstract, "upstream", rng, prefix="discriminator"))

  # --- The step ------------------------------------------------------------------------------

  def _key_position_map(self, batch, collections, key_image):
    """(position map (B, P, P, 3) crop px at the generator's size, face mask (B|1, P, P))."""
    if self.position_source == "ground_truth":
      if schema.KEY_POSITION_MAP not in batch:
        raise ConfigError(f"model.position_source='ground_truth' needs {schema.KEY_POSITION_MAP!r} in the batch "
                          f"(the input gives {sorted(batch)}); use model.position_source=unprojection")
      position_map = batch[schema.KEY_POSITION_MAP]
    else:
      self.frozen_variables()
      net, net_size = self._unprojection
      position_map = unproject_key_frame(net, net_size, collections["unprojection"], key_image, self.size)
    return jax.lax.stop_gradient(position_map), jnp.asarray(synthtalk_uv_face_mask(position_map.shape[1]))[None]

  def prepare(self, batch, collections, render: bool = True) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """(Θ's input dict, extras: target, the warp targets, the rendered face's coverage); without
    `render`, no 3D-aware image (what the discriminator sees needs none)."""
    target = to_unit_range(batch[schema.TGT_IMAGE])
    warping_ref = to_unit_range(batch[schema.WARPING_REF])
    mouth = batch[schema.MOUTH_BOX][..., 0] > 0.5
    inputs = {"tgt_label": batch[schema.TGT_LABEL], "ref_image": to_unit_range(batch[schema.REF_IMAGE]),
              "ref_label": batch[schema.REF_LABEL], "warping_ref_label": batch[schema.WARPING_REF_LABEL],
              "warping_ref": aware3d_lib.black_out(warping_ref, mouth) if self.crop_ref else warping_ref}
    # Upstream's tgt_mask_images: with crop_ref the warp of a blacked-out box is compared with
    # the target blacked out the same way.
    extras = {"target": target, "ref_warp_target": aware3d_lib.black_out(target, mouth) if self.crop_ref else target}
    if self.use_3d and render:
      key_image = to_unit_range(batch[schema.KEY_IMAGE])
      position_map, face_mask = self._key_position_map(batch, collections, key_image)
      face = self.aware3d(position_map, face_mask, key_image, batch[schema.KEY_POSE], batch[schema.TGT_POSE],
                          batch[schema.KEY_FRONT])
      rendered = jax.lax.stop_gradient(face.image)
      cropped = aware3d_lib.crop_to_render(target, jax.lax.stop_gradient(face.mask))
      if self.crop_ref:
        rendered, cropped = aware3d_lib.black_out(rendered, mouth), aware3d_lib.black_out(cropped, mouth)
      inputs.update(rendered=rendered, rendered_label=batch[schema.RENDERED_LABEL])
      extras.update(rendered_warp_target=cropped, coverage=face.mask)
    return inputs, extras

  def generate(self, g_params, g_collections, inputs, train: bool = True):
    """Θ in the compute dtype; outputs back in float32. Returns (outputs, updated collections)."""
    dtype = self.compute_dtype
    variables = {"params": _cast(g_params, dtype), **g_collections}
    out, updates = self.generator.apply(variables, _cast(inputs, dtype), train=train, mutable=MUTABLE)
    return _cast(out, jnp.float32), updates

  @staticmethod
  def _fake_outputs(out, with_ani: bool) -> list[jax.Array]:
    names = ["image", "raw_image"] + (["ani_image"] if with_ani else [])
    return [out[name] for name in names if name in out]

  def _discriminate(self, d_params, d_collections, inputs, images):
    """D on [condition, image] for each image, in one batch; returns per-image feature lists
    (float32) and D's updated collections."""
    condition = jnp.concatenate([inputs["warping_ref_label"], inputs["warping_ref"], inputs["tgt_label"]], axis=-1)
    stacked = jnp.concatenate([jnp.concatenate([condition, image], axis=-1) for image in images], axis=0)
    dtype = self.compute_dtype
    features, updates = self.discriminator.apply({"params": _cast(d_params, dtype), **d_collections},
                                                 stacked.astype(dtype), train=True, mutable=["spectral"])
    count = len(images)
    parts = [[jnp.split(layer.astype(jnp.float32), count, axis=0) for layer in scale] for scale in features]
    return [[[layer[i] for layer in scale] for scale in parts] for i in range(count)], updates

  def _perceptual_features(self, collections, images):
    dtype = self.compute_dtype
    stacked = jnp.concatenate(images, axis=0).astype(dtype)
    features = self._perceptual.apply({"params": _cast(collections["perceptual"], dtype)}, stacked)
    parts = [jnp.split(layer, len(images), axis=0) for layer in features]
    return [[layer[i] for layer in parts] for i in range(len(images))]

  def loss_fn(self, group, params, collections, batch, rng, step):
    self.frozen_variables()
    reuse = self.d_fakes == "reuse"
    # The discriminator step needs the rendered face only to regenerate the fakes.
    inputs, extras = self.prepare(batch, collections, render=group == "generator" or not reuse)
    target = extras["target"]
    if group == "generator":
      out, g_updates = self.generate(params["generator"], collections["generator"], inputs)
      fakes = self._fake_outputs(out, with_ani=True)
      d_features, _ = self._discriminate(params["discriminator"], collections["discriminator"], inputs,
                                         [target, *fakes])
      real_features, fake_features = d_features[0], d_features[1:]
      w = self.weights
      gan = sum(losses.hinge_g_loss(f) for f in fake_features)
      feat = sum(losses.feature_matching_loss(real_features, f, weight=w["feat"]) for f in fake_features)
      metrics = {"gan": gan, "feat": feat}
      loss = w["gan"] * gan + feat
      if w["vgg"] > 0:
        vgg_features = self._perceptual_features(collections, [target, *fakes])
        vgg = w["vgg"] * sum(losses.perceptual_loss_from_features(f, vgg_features[0]) for f in vgg_features[1:])
        metrics["vgg"] = vgg
        loss = loss + vgg
      if w["l1"] > 0:
        metrics["l1"] = losses.l1_loss(out["image"], target, weight=w["l1"])
        loss = loss + metrics["l1"]
      if self.flow_gt:
        flow = losses.flow_loss(out["flows"]["ref"], batch[schema.FLOW_REF],
                                batch[schema.FLOW_REF_CONFIDENCE][..., 0], weight=w["flow"])
        metrics["flow"] = flow
        loss = loss + flow
      if self.generator.use_warp:
        metrics["warp_ref"] = losses.warp_loss(out["warped"]["ref"], extras["ref_warp_target"], weight=w["warp"])
        loss = loss + metrics["warp_ref"]
        if self.use_3d:
          metrics["warp_rendered"] = losses.warp_loss(out["warped"]["rendered"], extras["rendered_warp_target"],
                                                      weight=w["warp"])
          loss = loss + metrics["warp_rendered"]
      metrics["l1_final"] = jnp.mean(jnp.abs(out["image"] - target))
      updated = {**collections, "generator": g_updates}
      if reuse:  # handed to the discriminator step (which removes them) through the collections
        updated[FAKES] = [jax.lax.stop_gradient(image) for image in self._fake_outputs(out, with_ani=False)]
      return loss, (metrics, updated)
    if group != "discriminator":
      raise ValueError(f"unknown parameter group {group!r}")
    if reuse:
      collections = dict(collections)
      fakes = collections.pop(FAKES)
    else:
      # The fakes of the just-updated generator (training mode, as upstream's netG.train()); its
      # batch-norm and spectral-norm updates were kept in the generator step.
      out, _ = self.generate(jax.lax.stop_gradient(params["generator"]), collections["generator"], inputs)
      fakes = [jax.lax.stop_gradient(image) for image in self._fake_outputs(out, with_ani=False)]
    d_features, d_updates = self._discriminate(params["discriminator"], collections["discriminator"], inputs,
                                               [target, *fakes])
    real_terms, fake_terms = zip(*(losses.hinge_d_loss(d_features[0], f) for f in d_features[1:]))
    real, fake = sum(real_terms), sum(fake_terms)
    logits = lambda features: jnp.mean(jnp.stack([jnp.mean(scale[-1]) for scale in features]))  # noqa: E731
    metrics = {"real": real, "fake": fake, "logit_real": logits(d_features[0]), "logit_fake": logits(d_features[1])}
    return real + fake, (metrics, {**collections, "discriminator": d_updates})

  # --- TensorBoard ---------------------------------------------------------------------------

  def summary_outputs(self, params, collections, batch):
    """The first rows' references, matched reference, rendered face, warped images, outputs and
    target (a training-mode forward over the whole batch: batch statistics, as in training)."""
    self.frozen_variables()
    inputs, extras = self.prepare(batch, collections)
    out, _ = self.generate(params["generator"], collections["generator"], inputs)
    n = SUMMARY_SAMPLES
    result = {"references": inputs["ref_image"][:n, :SUMMARY_REFERENCES], "warping_ref": inputs["warping_ref"][:n],
              "warped_ref": out["warped"]["ref"][:n], "output": out["image"][:n], "target": extras["target"][:n],
              "target_label": inputs["tgt_label"][:n]}
    if "raw_image" in out:
      result["raw"] = out["raw_image"][:n]
    if self.use_3d:
      result.update(rendered=inputs["rendered"][:n], rendered_label=inputs["rendered_label"][:n],
                    warped_rendered=out["warped"]["rendered"][:n])
    return result

  def render_summaries(self, outputs):
    """One grid: a row per sample of references | matched ref, warped | render, its landmarks,
    warped | raw | output | target, its landmarks."""
    def rgb(image):
      image = np.asarray(image, np.float32)
      if image.shape[-1] == 1:  # landmark images are [0, 1]
        return np.repeat(image, 3, axis=-1) * 2.0 - 1.0
      return image

    order = ["warping_ref", "warped_ref", "rendered", "rendered_label", "warped_rendered", "raw", "output", "target",
             "target_label"]
    rows = []
    for i in range(np.asarray(outputs["output"]).shape[0]):
      tiles = [rgb(ref) for ref in np.asarray(outputs["references"])[i]]
      tiles += [rgb(np.asarray(outputs[name])[i]) for name in order if name in outputs]
      rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    return {"generator": np.clip(np.round((grid + 1.0) * 127.5), 0, 255).astype(np.uint8)}
