"""Training the unprojection net (paper Fig. 14, A.3): image → UV position map, on SynthTalk.

Batch (data/schema.py "unprojection"): `image` (B, S, S, 3) uint8, the frame; `position_map`
(B, S, S, 3) float32, its posed, expressive position map in crop pixels; `face_mask`
(B, S, S, 1) float32, 1 on the texels of the face (fixed in SynthTalk's UV layout).

Loss (paper A.3: MSE on the position map, PRNet-style texel weights): in the net's normalised
space (`models.unprojection.normalize_position_map`, so x, y and z weigh alike and the loss
does not grow with S),

    loss = Σ_texels w·‖n̂ − n‖² / (3·Σ w),   w = loss.face_weight on the face mask,
                                            loss.outside_weight elsewhere,

`losses.position_map_loss`. The face is what the 3D-aware module renders; a small weight
outside it keeps the rest of the map a smooth surface (PRNet weights its face region 3× its
other texels and the neck 0). Logged too: `face_rmse_px`, the root-mean-square 3-D error on the
face texels in crop pixels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from talkinghead_jax.data import schema
from talkinghead_jax.errors import ConfigError
from talkinghead_jax.models.unprojection import UnprojectionNet, normalize_position_map
from talkinghead_jax.train import arrays, host_init, losses
from talkinghead_jax.train.task import Task


def texel_weights(face_mask: jax.Array, face_weight: float, outside_weight: float) -> jax.Array:
  """(B, S, S, 1) mask in [0, 1] → (B, S, S) per-texel loss weights."""
  mask = face_mask[..., 0]
  return face_weight * mask + outside_weight * (1.0 - mask)


class UnprojectionTask(Task):
  groups = ("model",)

  def __init__(self, config):
    super().__init__(config)
    m = config.model
    self.size = int(config.data.image_size)
    self.model = UnprojectionNet(features=int(m.features), num_downsamples=int(m.num_downsamples),
                                 kernel_size=int(m.kernel_size), bn_momentum=float(m.bn_momentum))
    if self.size % 2 ** self.model.num_downsamples:
      raise ConfigError(f"data.image_size {self.size} must be divisible by 2^model.num_downsamples")
    self.face_weight = float(config.loss.face_weight)
    self.outside_weight = float(config.loss.outside_weight)
    if self.face_weight <= 0 or self.outside_weight < 0:
      raise ConfigError("loss.face_weight must be > 0 and loss.outside_weight >= 0")

  def make_input(self, split, process_index, process_count):
    if self.config.data.source == "arrays":
      raise ConfigError("the unprojection net trains on a prepared SynthTalk set (data.source=tfds) or on "
                        "synthetic batches (data.source=synthetic), not on an array file")
    return arrays.stage_input(
        self.config, "unprojection", split=split, process_index=process_index, process_count=process_count,
        frame_keys=(schema.IMAGE, schema.POSITION_MAP, schema.FACE_MASK), window=1)

  def _dummy_image(self):
    return jnp.zeros((1, self.size, self.size, 3), jnp.float32)

  def init_variables(self, rng, batch_spec):
    variables = self.model.init(rng, self._dummy_image())
    return {"model": variables["params"]}, {"batch_stats": variables["batch_stats"]}

  def host_init_variables(self, rng, batch_spec):
    """numpy values of `init_variables`' tree (Flax's default initialisers, `host_init.py`)."""
    abstract = jax.eval_shape(self.model.init, jax.random.key(0), self._dummy_image())
    variables = host_init.initialize(abstract, "flax", rng, prefix="unprojection")
    return {"model": variables["params"]}, {"batch_stats": variables["batch_stats"]}

  def _predict(self, params, collections, image, train: bool):
    """Normalised prediction (B, S, S, 3) and the updated batch statistics."""
    image = image.astype(jnp.float32) / 127.5 - 1.0
    if train:
      return self.model.apply({"params": params["model"], **collections}, image, train=True, return_normalized=True,
                              mutable=["batch_stats"])
    return self.model.apply({"params": params["model"], **collections}, image, return_normalized=True), None

  def loss_fn(self, group, params, collections, batch, rng, step):
    if group != "model":
      raise ValueError(f"unknown parameter group {group!r}")
    predicted, updates = self._predict(params, collections, batch[schema.IMAGE], train=True)
    target = normalize_position_map(batch[schema.POSITION_MAP], self.size)
    weights = texel_weights(batch[schema.FACE_MASK], self.face_weight, self.outside_weight)
    loss = losses.position_map_loss(predicted, target, weights)
    face = batch[schema.FACE_MASK][..., 0]
    # Back to crop pixels: the normalised space is the crop scaled by 1/(1.1·S).
    squared_px = jnp.sum(jnp.square(predicted - target), axis=-1) * (1.1 * self.size) ** 2
    face_rmse = jnp.sqrt(jnp.sum(face * squared_px) / jnp.maximum(jnp.sum(face), 1.0))
    return loss, ({"mse": loss, "face_rmse_px": face_rmse}, {**collections, **updates})

  def summary_outputs(self, params, collections, batch):
    predicted, _ = self._predict(params, collections, batch[schema.IMAGE][:2], train=False)
    return {"image": batch[schema.IMAGE][:2], "predicted": predicted,
            "target": normalize_position_map(batch[schema.POSITION_MAP][:2], self.size),
            "face_mask": batch[schema.FACE_MASK][:2]}

  def render_summaries(self, outputs):
    """Rows of [frame | predicted map | stored map | face mask], maps shown as RGB = (x, y, z)."""
    def as_rgb(normalized):
      return np.clip(np.round(np.asarray(normalized, np.float32) * 255.0), 0, 255).astype(np.uint8)

    rows = []
    for i in range(np.asarray(outputs["image"]).shape[0]):
      mask = np.repeat(np.asarray(outputs["face_mask"])[i], 3, axis=-1)
      rows.append(np.concatenate([np.asarray(outputs["image"])[i], as_rgb(outputs["predicted"][i]),
                                  as_rgb(outputs["target"][i]), as_rgb(mask)], axis=1))
    return {"position_map": np.concatenate(rows, axis=0)}
