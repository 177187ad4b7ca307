"""Training Φ, the head-motion learner, with its mean/std discriminator in the same step.

Batch (names shared with the data pipeline):
- `audio` (B, W, 7, S): per-frame raw-audio windows (16 kHz, S = 640 as upstream);
- `pose` (B, W, 6): normalised, smoothed head poses [rotation vector, translation];
with W = max observed + max predicted frames (`data.observed_frames`, `data.predicted_frames`).

Each step draws the number of observed frames τ and of predicted frames P (one pair per
batch, as upstream) and updates two parameter groups one after the other, as upstream:

1. `discriminator`: BCE(D(real future), 1) + BCE(D(predicted future), 0), the prediction
   held fixed;
2. `model` (Φ): MSE between predicted and real future poses, plus
   `loss.gan_weight`·BCE(D(predicted), 1) when `model.use_discriminator_loss` is on (the
   paper). Off reproduces upstream, whose generator loss was the MSE alone (the
   discriminator still trains, and its numbers are logged).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from talkinghead_jax.errors import ConfigError
from talkinghead_jax.models.head_motion import DT_Discriminator, HeadMotionLearner, POSE_DIM, take_future
from talkinghead_jax.train import arrays, plots
from talkinghead_jax.train.task import Task

AUDIO = "audio"
POSE = "pose"


class HeadMotionTask(Task):
  groups = ("discriminator", "model")

  def __init__(self, config):
    super().__init__(config)
    m = config.model
    self.model = HeadMotionLearner(
        audio_conv_channels=tuple(m.audio_conv_channels), audio_hidden=m.audio_hidden,
        audio_features=m.audio_features, pose_hidden=m.pose_hidden, pose_features=m.pose_features,
        encoder_channels=m.encoder_channels, encoder_kernel=m.encoder_kernel, encoder_stride=m.encoder_stride,
        dropout=m.dropout, bn_momentum=m.bn_momentum, few_shot=bool(m.get("few_shot", True)),
        residual_base=str(m.get("residual_base", "none")),
        future_time_constants=tuple(float(c) for c in m.get("future_time_constants", ())),
        extrapolation_frames=int(m.get("extrapolation_frames", 4)),
        extrapolation_gap=int(m.get("extrapolation_gap", 5)), extrapolation_order=int(m.get("extrapolation_order", 2)),
        extrapolation_unit=float(m.get("extrapolation_unit", 16.0)),
        decoder_time_features=bool(m.get("decoder_time_features", False)),
        generated_dropout=float(m.get("generated_dropout", 0.0)))
    self.discriminator = DT_Discriminator()
    self.use_discriminator_loss = bool(m.use_discriminator_loss)
    self.gan_weight = float(config.loss.gan_weight)
    self.observed_range = tuple(int(n) for n in config.data.observed_frames)
    self.predicted_range = tuple(int(n) for n in config.data.predicted_frames)
    low_obs, high_obs = self.observed_range
    low_pred, high_pred = self.predicted_range
    if not self.model.min_observed() <= low_obs <= high_obs:
      raise ConfigError(f"data.observed_frames {self.observed_range}: need "
                        f"{self.model.min_observed()} <= min <= max (the encoder's strided convs; the "
                        "extrapolation's gap and frames)")
    if not 3 <= low_pred <= high_pred:
      raise ConfigError(f"data.predicted_frames {self.predicted_range}: need 3 <= min <= max "
                        "(the discriminator's std of velocities needs 2 differences)")

  @property
  def max_observed(self) -> int:
    return self.observed_range[1]

  @property
  def max_predicted(self) -> int:
    return self.predicted_range[1]

  def make_input(self, split, process_index, process_count):
    data = self.config.data
    return arrays.stage_input(
        self.config, "head_motion", split=split, process_index=process_index, process_count=process_count,
        frame_keys=(AUDIO, POSE), window=self.max_observed + self.max_predicted,
        frame_shapes={AUDIO: (data.context_frames, data.sample_rate // data.fps), POSE: (POSE_DIM,)})

  def init_variables(self, rng, batch_spec):
    model_key, discriminator_key = jax.random.split(rng)
    audio = jnp.zeros((1,) + batch_spec[AUDIO].shape[1:], jnp.float32)
    pose = jnp.zeros((1,) + batch_spec[POSE].shape[1:], jnp.float32)
    lengths = jnp.array([self.max_observed]), jnp.array([self.max_predicted])
    variables = self.model.init({"params": model_key}, audio, pose, *lengths, max_observed=self.max_observed,
                                train=False)
    future = jnp.zeros((1, self.max_predicted, pose.shape[-1]), jnp.float32)
    d_variables = self.discriminator.init(discriminator_key, future, jnp.ones((1, self.max_predicted), bool))
    return ({"discriminator": d_variables["params"], "model": variables["params"]},
            {"batch_stats": variables["batch_stats"]})

  def sample_lengths(self, rng, batch: int) -> tuple[jax.Array, jax.Array]:
    """τ and P for this step, one draw for the whole batch (as upstream), broadcast to (B,)."""
    observed_key, predicted_key = jax.random.split(jax.random.fold_in(rng, 0))
    observed = jax.random.randint(observed_key, (), self.observed_range[0], self.observed_range[1] + 1)
    predicted = jax.random.randint(predicted_key, (), self.predicted_range[0], self.predicted_range[1] + 1)
    return jnp.full((batch,), observed, jnp.int32), jnp.full((batch,), predicted, jnp.int32)

  def _predict(self, params, collections, batch, observed, predicted, dropout_key):
    (poses, mask), updates = self.model.apply(
        {"params": params["model"], **collections}, batch[AUDIO], batch[POSE], observed, predicted,
        max_observed=self.max_observed, train=True, rngs={"dropout": dropout_key}, mutable=["batch_stats"])
    return poses, mask, updates

  def loss_fn(self, group, params, collections, batch, rng, step):
    observed, predicted = self.sample_lengths(rng, batch[POSE].shape[0])
    dropout_key = jax.random.fold_in(rng, 1 + self.groups.index(group))
    fake, mask, updates = self._predict(params, collections, batch, observed, predicted, dropout_key)
    real = take_future(batch[POSE], observed, self.max_predicted)
    discriminate = lambda sequence: self.discriminator.apply({"params": params["discriminator"]}, sequence, mask)
    if group == "discriminator":
      fake = jax.lax.stop_gradient(fake)
      real_logit, fake_logit = discriminate(real), discriminate(fake)
      loss = (jnp.mean(optax.sigmoid_binary_cross_entropy(real_logit, jnp.ones_like(real_logit)))
              + jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logit, jnp.zeros_like(fake_logit))))
      metrics = {"d_loss": loss, "d_real_prob": jnp.mean(jax.nn.sigmoid(real_logit)),
                 "d_fake_prob": jnp.mean(jax.nn.sigmoid(fake_logit))}
      return loss, (metrics, None)  # the generator's batch statistics move in its own update
    if group != "model":
      raise ValueError(f"unknown parameter group {group!r}")
    weights = mask[..., None].astype(fake.dtype)
    mse = jnp.sum(weights * jnp.square(fake - real)) / (jnp.sum(weights) * fake.shape[-1])
    fake_logit = discriminate(fake)
    gan = jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logit, jnp.ones_like(fake_logit)))
    loss = mse + self.gan_weight * gan if self.use_discriminator_loss else mse
    metrics = {"mse": mse, "g_gan": gan, "observed_frames": observed[0].astype(jnp.float32),
               "predicted_frames": predicted[0].astype(jnp.float32)}
    return loss, (metrics, {**collections, **updates})

  def summary_outputs(self, params, collections, batch):
    observed = jnp.array([self.max_observed])
    predicted = jnp.array([self.max_predicted])
    poses, _ = self.model.apply({"params": params["model"], **collections}, batch[AUDIO][:1], batch[POSE][:1],
                                observed, predicted, max_observed=self.max_observed, train=False)
    return {"predicted": poses[0], "target": batch[POSE][0, self.max_observed:]}

  def render_summaries(self, outputs):
    return {"future_pose": plots.curves_image(np.asarray(outputs["target"]), np.asarray(outputs["predicted"]))}
