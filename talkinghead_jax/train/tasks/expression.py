"""Training Ψ, the facial-expression learner: MSE on PCA coefficients, noise mixed into the audio.

Batch (names shared with the data pipeline):
- `audio` (B, L, 7, S): per-frame raw-audio windows, S = sample_rate / fps;
- `expression_pca` (B, L, C): target PCA coefficients of the frontal landmarks (identity removed);
- `reference_pca` (B, C): the reference (closed-mouth) frame's coefficients;
- `noise` (B, (L + 6)·S): a noise segment per example, when noise mixing is on.

Each step mixes the noise into each example's audio at an SNR drawn from `augment.snr_db`
(paper: 6 to 30 dB in 3 dB steps) with probability `augment.noise_probability`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from talkinghead_jax.audio.windows import samples_per_frame
from talkinghead_jax.models.expression import ExpressionLearner
from talkinghead_jax.train import arrays, augment, plots
from talkinghead_jax.train.task import Task

AUDIO = "audio"
TARGET = "expression_pca"
REFERENCE = "reference_pca"
NOISE = arrays.NOISE


class ExpressionTask(Task):
  groups = ("model",)

  def __init__(self, config):
    super().__init__(config)
    m = config.model
    self.model = ExpressionLearner(
        num_coeffs=m.num_coeffs, audio_channels=tuple(m.audio_channels), kernel=m.kernel, stride=m.stride,
        audio_features=m.audio_features, reference_features=m.reference_features, dropout=m.dropout,
        bn_momentum=m.bn_momentum)
    self.snr_levels = tuple(float(level) for level in config.augment.snr_db)
    self.noise_probability = float(config.augment.noise_probability)
    self.mix_noise = bool(self.snr_levels) and self.noise_probability > 0

  @property
  def samples_per_frame(self) -> int:
    # The audio module's helper also rejects rates that the frame rate does not divide.
    return samples_per_frame(self.config.data.sample_rate, self.config.data.fps)

  def make_input(self, split, process_index, process_count):
    data = self.config.data
    length, chunks = data.sequence_length, data.context_frames
    noise_length = (length + chunks - 1) * self.samples_per_frame if self.mix_noise else 0
    return arrays.stage_input(
        self.config, "expression", split=split, process_index=process_index, process_count=process_count,
        frame_keys=(AUDIO, TARGET), sequence_keys=(REFERENCE,), window=length, noise_length=noise_length,
        frame_shapes={AUDIO: (chunks, self.samples_per_frame), TARGET: (self.config.model.num_coeffs,)})

  def init_variables(self, rng, batch_spec):
    audio = jnp.zeros((1,) + batch_spec[AUDIO].shape[1:], jnp.float32)
    reference = jnp.zeros((1,) + batch_spec[REFERENCE].shape[1:], jnp.float32)
    variables = self.model.init({"params": rng}, audio, reference, train=False)
    return {"model": variables["params"]}, {"batch_stats": variables["batch_stats"]}

  def loss_fn(self, group, params, collections, batch, rng, step):
    noise_key, dropout_key = jax.random.split(rng)
    audio = batch[AUDIO]
    metrics = {}
    if self.mix_noise:
      audio, snr = augment.random_snr_mix(noise_key, audio, batch[NOISE], self.snr_levels, self.noise_probability)
      metrics["mixed_fraction"] = jnp.mean(jnp.isfinite(snr).astype(jnp.float32))
    predicted, updates = self.model.apply(
        {"params": params["model"], **collections}, audio, batch[REFERENCE], train=True,
        rngs={"dropout": dropout_key}, mutable=["batch_stats"])
    mse = jnp.mean(jnp.square(predicted - batch[TARGET]))
    metrics["mse"] = mse
    return mse, (metrics, {**collections, **updates})

  def summary_outputs(self, params, collections, batch):
    predicted = self.model.apply({"params": params["model"], **collections}, batch[AUDIO][:1],
                                 batch[REFERENCE][:1], train=False)
    return {"predicted": predicted[0], "target": batch[TARGET][0]}

  def render_summaries(self, outputs):
    channels = min(4, outputs["target"].shape[-1])
    return {"expression_pca": plots.curves_image(np.asarray(outputs["target"])[:, :channels],
                                                 np.asarray(outputs["predicted"])[:, :channels])}
