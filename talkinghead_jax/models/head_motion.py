"""Φ, the head-motion learner (paper §3.3 and Fig. 12; UPSTREAM_NOTES.md §2.2).

Upstream's selected configuration (`RotateAudio/`, `rt_encode=tc_no_lstm`, `audio_encode=se`,
`rt_decode=l2l`), module by module, with upstream's module names; a submodule `x_i` is
upstream's `x.i` (index in its `nn.Sequential`), so a PyTorch state dict maps by name:

- `SingleEmb` (audio encoder, per frame): each frame's 7×S raw-audio window as a 1-channel
  image → Conv2d(1→8, 3×3) → ReLU → Conv2d(8→16, 3×3) → flatten (16·(7-4)·(S-4) features,
  30528 at 16 kHz) → temporal Conv1d(→512, k3, pad 1) → BN → LeakyReLU(0.3) → Dropout →
  Conv1d(512→256, k3, pad 1) → BN → LeakyReLU(0.3): 256 features per frame.
- `TemporalConv_no_LSTM` (the observed-motion encoder f): per-frame pose (6) → Linear 128 →
  BN → LeakyReLU(0.3) → Linear 256; concatenated with the frame's audio feature (512) →
  [Conv1d(512→512, k5, stride 2) → BN → LeakyReLU → Dropout] × 2 → mean over time: the clip code.
- `L2LDecode` (the extrapolator's dynamic layer): Linear(512 → 256·6 + 6) gives each clip a
  256×6 weight matrix and a 6-d bias, applied to every future frame's audio feature
  (one einsum over the batch, no loop).
- `DT_Discriminator`: mean and (unbiased) standard deviation over time of the pose sequence
  and of its frame-to-frame differences, 24 features → Linear(24→1); a logit.

Lengths. Training draws the number of observed frames τ and of predicted frames P at random
(upstream: τ ∈ [32, 96], P ∈ [16, 96]). Shapes here are static: a batch holds windows of
`max_observed + max_predicted` frames and the lengths are arrays. Masks make the result equal
to running upstream's network on exactly τ + P frames: features of frames past τ + P are
zeroed before each temporal convolution (as zero padding at the clip's end would be),
batch-norm statistics use valid positions only, the encoder's strided convolutions keep the
outputs whose receptive field lies inside the τ observed frames, and its mean is over those.
As upstream, the audio of the whole clip is encoded at once and then split into the observed
part (for f) and the future part (for the extrapolator).

The "not few-shot" ablation (`few_shot=False`, issue #6's evaluation baseline): the same
network without the reference clip. The observed-motion encoder and the generated layer are
gone; a learned static linear layer (`static_decode`, features → 6) maps every future frame's
audio feature to its pose, whatever the clip. Observed poses are then ignored (the audio of the
observed frames still enters the audio encoder's temporal convolutions, as in the few-shot net).

Ours, off in upstream's configuration (`synthtalk_tiny` turns on all but `decoder_time_features`;
docs/training.md, "Φ: the residual base and time features"):
- `future_time_constants` (c_1 … c_I frames): the time features exp(−k / c_i) of each predicted
  frame's distance k ≥ 1 from the last observed frame. Upstream's decoder sees the audio feature
  only, so its output cannot depend on how far a frame lies from what was observed. The
  "extrapolation" base is built on them; `decoder_time_features` also appends them to each
  predicted frame's audio features before the decoder (generated or static).
- `residual_base`: what the decoder's output is added to. "none" (upstream): nothing;
  "observed_mean": the mean m of the observed poses; "extrapolation": m plus a learned linear
  continuation of the observed motion. Its inputs are the `extrapolation_frames` J observed
  poses h that end `extrapolation_gap` g frames before the last one, minus m; a least-squares
  polynomial of degree `extrapolation_order` n through them gives the motion's level, velocity,
  acceleration … at the newest of them, d_0 … d_n (derivatives per `extrapolation_unit` u frames,
  `taylor_features`). Predicted frame k gets Σ_i Σ_o exp(−k/c_i)·A[i, o]·d_o, A a learned I×(n+1)
  matrix shared by the 6 degrees of freedom, zeros at the start (an untrained net predicts m).
  Why derivatives rather than the J poses themselves: neighbouring poses are nearly equal, so
  the least-squares weights on them are large and of alternating sign (hundreds, measured on
  SynthTalk), out of reach of a short Adam run whose steps are about the learning rate; the same
  map on the derivatives per u = 16 frames has weights of order one. The gap is the pose
  smoothing's half-width: in training the last g observed poses are smoothed with future poses
  in their window, at inference without, so an extrapolation from them would learn to trust
  information it will not have.
- `generated_dropout` p: in training, the generated layer's output (the offset from the base) of
  a whole example is dropped with probability p (and the kept ones scaled by 1/(1 − p), as any
  dropout), like stochastic depth on a residual branch. On the dropped examples the base alone
  meets the loss, so it learns to predict well by itself instead of leaving the work to the
  generated layer, which can learn the training clips by heart.

Differences from upstream kept on purpose: flax's BatchNorm tracks the biased variance
(torch the unbiased one) in its running statistics; upstream's generator step observed a
fixed 64 frames whatever τ was drawn (a bug: `rt[:, :64]` in `G_train`), here the drawn τ is used.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

POSE_DIM = 6
RESIDUAL_BASES = ("none", "observed_mean", "extrapolation")


def _leaky(x: jax.Array) -> jax.Array:
  return nn.leaky_relu(x, negative_slope=0.3)


def conv_output_length(length, kernel: int, stride: int):
  """Valid ('no padding') convolution output length; 0 when the input is shorter than the kernel."""
  return jnp.maximum((length - kernel) // stride + 1, 0)


def take_future(x: jax.Array, observed_length: jax.Array, count: int) -> jax.Array:
  """`x[b, τ_b : τ_b + count]` for every example b: the frames after the observed ones."""
  return jax.vmap(lambda row, start: jax.lax.dynamic_slice_in_dim(row, start, count, axis=0))(
      x, observed_length)


def length_mask(length: jax.Array, size: int) -> jax.Array:
  """`(B, size)` bool, True for the first `length[b]` positions."""
  return jnp.arange(size)[None, :] < jnp.asarray(length)[:, None]


def time_features(count: int, time_constants: Sequence[float]) -> jax.Array:
  """(count, I): exp(−k / c_i) for the predicted frames' distances k = 1 … count from the last
  observed frame; near 1 just after it and near 0 far from it, at the rates `time_constants`."""
  distance = jnp.arange(1, count + 1, dtype=jnp.float32)[:, None]
  return jnp.exp(-distance / jnp.asarray(time_constants, jnp.float32)[None, :])


def observed_tail(x: jax.Array, observed_length: jax.Array, frames: int, gap: int) -> jax.Array:
  """(B, frames, D): `x[b, τ_b − gap − j]` for j = 1 … frames (nearest first), the observed frames
  ending `gap` frames before the last one (the caller makes sure τ_b ≥ gap + frames)."""
  starts = jnp.asarray(observed_length) - gap - frames
  tail = jax.vmap(lambda row, start: jax.lax.dynamic_slice_in_dim(row, start, frames, axis=0))(x, starts)
  return tail[:, ::-1]


def taylor_features(frames: int, order: int, unit: float) -> np.ndarray:
  """(order + 1, frames): the map from `frames` samples x_j = h(−j) (j = 0 … frames − 1, newest
  first) to the coefficients d of the least-squares polynomial Σ_o d_o (t / unit)^o through
  them: d_0 the level at t = 0, d_1 the velocity per `unit` frames, d_2 half the acceleration …"""
  if not 0 <= order < frames:
    raise ValueError(f"a polynomial of degree {order} through {frames} frames: need 0 <= degree < frames")
  times = -np.arange(frames, dtype=np.float64) / unit
  return np.linalg.pinv(np.vander(times, order + 1, increasing=True)).astype(np.float32)


class MotionExtrapolation(nn.Module):
  """Ours: a learned linear continuation of the observed motion (module docstring, "extrapolation").

  Takes the observed poses minus their mean (B, T, 6); returns the offsets (B, count, 6) of the
  predicted frames, Σ_i Σ_o exp(−k/c_i)·A[i, o]·d_o with d the `taylor_features` of the
  `observed_tail`.
  """

  time_constants: Sequence[float]
  frames: int = 4
  gap: int = 5
  order: int = 2
  unit: float = 16.0

  @nn.compact
  def __call__(self, centred: jax.Array, observed_length: jax.Array, count: int) -> jax.Array:
    # Zeros: training starts from the observed mean, the best constant guess.
    coefficients = self.param("coefficients", nn.initializers.zeros, (len(self.time_constants), self.order + 1))
    tail = observed_tail(centred, observed_length, self.frames, self.gap)
    derivatives = jnp.einsum("oj,bjd->bod", taylor_features(self.frames, self.order, self.unit), tail)
    return jnp.einsum("pi,io,bod->bpd", time_features(count, self.time_constants), coefficients, derivatives)


class SingleEmb(nn.Module):
  """Raw audio (B, W, 7, S) → per-frame features (B, W, features)."""

  conv_channels: Sequence[int] = (8, 16)
  hidden: int = 512
  features: int = 256
  dropout: float = 0.1
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, audio: jax.Array, frame_mask: jax.Array, train: bool) -> jax.Array:
    batch, frames, chunks, samples = audio.shape
    x = audio.reshape(batch * frames, chunks, samples, 1)
    x = nn.Conv(self.conv_channels[0], (3, 3), padding="VALID", name="conv_0")(x)
    x = nn.relu(x)
    x = nn.Conv(self.conv_channels[1], (3, 3), padding="VALID", name="conv_2")(x)
    # Flatten in torch's (channel, height, width) order so upstream's Conv1d weights map directly.
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(batch, frames, -1)
    mask = frame_mask[..., None].astype(x.dtype)
    norm = dict(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5)
    x = x * mask  # frames past the clip act as the temporal conv's zero padding
    x = nn.Conv(self.hidden, (3,), padding=((1, 1),), name="audio_l_0")(x)
    x = _leaky(nn.BatchNorm(**norm, name="audio_l_1")(x, mask=frame_mask[..., None]))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = x * mask
    x = nn.Conv(self.features, (3,), padding=((1, 1),), name="audio_l_4")(x)
    return _leaky(nn.BatchNorm(**norm, name="audio_l_5")(x, mask=frame_mask[..., None]))


class TemporalConv_no_LSTM(nn.Module):  # noqa: N801 (upstream's name)
  """Observed poses (B, T, 6) + their audio features (B, T, A) → clip code (B, channels)."""

  pose_hidden: int = 128
  pose_features: int = 256
  channels: int = 512
  kernel: int = 5
  stride: int = 2
  dropout: float = 0.1
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, pose: jax.Array, audio_features: jax.Array, observed_length: jax.Array,
               train: bool) -> jax.Array:
    norm = dict(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5)
    frames = pose.shape[1]
    mask = length_mask(observed_length, frames)[..., None]
    h = nn.Dense(self.pose_hidden, name="l_0")(pose)
    h = _leaky(nn.BatchNorm(**norm, name="l_1")(h, mask=mask))
    h = nn.Dense(self.pose_features, name="l_3")(h)
    x = jnp.concatenate([h, audio_features], axis=-1)
    valid = observed_length
    for conv_name, bn_name in (("backend_conv1_0", "backend_conv1_1"), ("backend_conv1_4", "backend_conv1_5")):
      x = nn.Conv(self.channels, (self.kernel,), strides=(self.stride,), padding="VALID", name=conv_name)(x)
      valid = conv_output_length(valid, self.kernel, self.stride)
      mask = length_mask(valid, x.shape[1])[..., None]
      x = _leaky(nn.BatchNorm(**norm, name=bn_name)(x, mask=mask))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    mask = mask.astype(x.dtype)
    return jnp.sum(x * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)


class L2LDecode(nn.Module):
  """Clip code (B, C) → a per-clip linear map, applied to future audio features (B, P, F)."""

  features: int = 256
  pose_dim: int = POSE_DIM

  @nn.compact
  def __call__(self, code: jax.Array, future_audio: jax.Array) -> jax.Array:
    weights_and_bias = nn.Dense(self.features * self.pose_dim + self.pose_dim, name="l")(code)
    weight, bias = generated_linear(weights_and_bias, self.features, self.pose_dim)
    return apply_generated_linear(future_audio, weight, bias)


def generated_linear(flat: jax.Array, features: int, outputs: int) -> tuple[jax.Array, jax.Array]:
  """Splits a generated vector (B, F·O + O) into a weight (B, F, O) and a bias (B, O) as upstream:
  the first F·O entries row-major as F×O, the last O the bias."""
  weight = flat[:, :features * outputs].reshape(-1, features, outputs)
  return weight, flat[:, features * outputs:]


def apply_generated_linear(x: jax.Array, weight: jax.Array, bias: jax.Array) -> jax.Array:
  """Per-sample `x[b] @ weight[b] + bias[b]` for x (B, T, F): upstream's `torch.bmm`."""
  return jnp.einsum("btf,bfo->bto", x, weight) + bias[:, None, :]


def motion_statistics(sequence: jax.Array, mask: jax.Array) -> jax.Array:
  """The discriminator's 24 features of (B, T, 6) sequences whose first `mask`-true frames count:
  mean and unbiased std over time of the poses, then of their frame-to-frame differences."""
  mask = mask.astype(sequence.dtype)[..., None]
  velocity = sequence[:, 1:] - sequence[:, :-1]
  velocity_mask = mask[:, 1:] * mask[:, :-1]

  def mean_std(x, m):
    count = jnp.sum(m, axis=1)
    mean = jnp.sum(x * m, axis=1) / jnp.maximum(count, 1.0)
    variance = jnp.sum(m * jnp.square(x - mean[:, None]), axis=1) / jnp.maximum(count - 1.0, 1.0)
    # The tiny floor keeps the gradient finite for a constant sequence (torch's std gives NaN there).
    return mean, jnp.sqrt(variance + 1e-12)

  pose_mean, pose_std = mean_std(sequence, mask)
  velocity_mean, velocity_std = mean_std(velocity, velocity_mask)
  return jnp.concatenate([pose_mean, pose_std, velocity_mean, velocity_std], axis=-1)


class DT_Discriminator(nn.Module):  # noqa: N801 (upstream's name)
  """Mean/std real-or-fake score of pose sequences: a logit per sequence."""

  @nn.compact
  def __call__(self, sequence: jax.Array, mask: jax.Array) -> jax.Array:
    return nn.Dense(1, name="l_0")(motion_statistics(sequence, mask))[..., 0]


class HeadMotionLearner(nn.Module):
  """Φ: audio windows (B, W, 7, S) and poses (B, W, 6) → predicted future poses.

  The first `observed_length[b]` frames of example b are observed (poses and audio), the next
  `predicted_length[b]` are predicted from their audio. `max_observed` (static) splits the
  window: W = max_observed + max_predicted. Returns (poses (B, max_predicted, 6), mask of the
  predicted frames (B, max_predicted)); frame i of the output is frame τ + i of the clip.
  """

  audio_conv_channels: Sequence[int] = (8, 16)
  audio_hidden: int = 512
  audio_features: int = 256
  pose_hidden: int = 128
  pose_features: int = 256
  encoder_channels: int = 512
  encoder_kernel: int = 5
  encoder_stride: int = 2
  dropout: float = 0.1
  bn_momentum: float = 0.9
  few_shot: bool = True  # False: the static ablation (module docstring)
  # "none": upstream, the generated map gives the poses themselves; "observed_mean" (ours): it
  # gives the offset from the mean observed pose, so an untrained map already predicts the
  # clip's average head position and training spends its capacity on the motion;
  # "extrapolation" (ours): the offset from that mean plus a learned continuation of the
  # observed motion (module docstring).
  residual_base: str = "none"
  # Ours, () = upstream: time constants (frames) of the predicted frames' time features.
  future_time_constants: Sequence[float] = ()
  decoder_time_features: bool = False  # ours: the decoder reads the time features too
  generated_dropout: float = 0.0  # ours: drop the generated offset of whole examples (training)
  extrapolation_frames: int = 4  # J, "extrapolation" only
  extrapolation_gap: int = 5  # g, "extrapolation" only: the pose smoothing's half-width
  extrapolation_order: int = 2  # n, "extrapolation" only: level, velocity, acceleration
  extrapolation_unit: float = 16.0  # u frames, "extrapolation" only

  @nn.compact
  def __call__(self, audio: jax.Array, pose: jax.Array, observed_length: jax.Array,
               predicted_length: jax.Array, *, max_observed: int, train: bool):
    frames = audio.shape[1]
    max_predicted = frames - max_observed
    observed_length = jnp.asarray(observed_length, jnp.int32)
    predicted_length = jnp.asarray(predicted_length, jnp.int32)
    clip_mask = length_mask(observed_length + predicted_length, frames)
    features = SingleEmb(self.audio_conv_channels, self.audio_hidden, self.audio_features, self.dropout,
                         self.bn_momentum, name="audio_encode")(audio, clip_mask, train)
    future = take_future(features, observed_length, max_predicted)
    time_constants = tuple(float(c) for c in self.future_time_constants)
    if self.decoder_time_features:
      if not time_constants:
        raise ValueError("decoder_time_features needs future_time_constants")
      times = time_features(max_predicted, time_constants).astype(future.dtype)
      future = jnp.concatenate([future, jnp.broadcast_to(times, future.shape[:2] + times.shape[1:])], axis=-1)
    if not self.few_shot:
      predicted = nn.Dense(pose.shape[-1], name="static_decode")(future)
      return predicted, length_mask(predicted_length, max_predicted)
    if self.residual_base not in RESIDUAL_BASES:
      raise ValueError(f"residual_base must be one of {RESIDUAL_BASES}, got {self.residual_base!r}")
    if self.residual_base == "extrapolation" and not time_constants:
      raise ValueError("residual_base='extrapolation' needs future_time_constants")
    observed = pose[:, :max_observed]
    base = jnp.zeros_like(observed[:, :1])
    if self.residual_base != "none":
      observed_mask = length_mask(observed_length, max_observed)[..., None].astype(pose.dtype)
      base = (jnp.sum(observed * observed_mask, axis=1, keepdims=True)
              / jnp.maximum(jnp.sum(observed_mask, axis=1, keepdims=True), 1.0))
      # The encoder sees the motion around that mean: per-identity head positions differ far more
      # than a clip's motion, and left in they make small batches' normalisation statistics
      # swing from batch to batch (training and inference then disagree).
      observed = observed - base
    if self.residual_base == "extrapolation":
      base = base + MotionExtrapolation(time_constants, self.extrapolation_frames, self.extrapolation_gap,
                                        self.extrapolation_order, self.extrapolation_unit,
                                        name="extrapolate")(observed, observed_length, max_predicted)
    code = TemporalConv_no_LSTM(self.pose_hidden, self.pose_features, self.encoder_channels,
                                self.encoder_kernel, self.encoder_stride, self.dropout, self.bn_momentum,
                                name="rt_encode")(observed, features[:, :max_observed], observed_length, train)
    offset = L2LDecode(future.shape[-1], pose.shape[-1], name="decode")(code, future)
    # One draw per example (dims 1, 2 broadcast): the whole offset goes or stays.
    offset = nn.Dropout(self.generated_dropout, broadcast_dims=(1, 2), deterministic=not train)(offset)
    predicted = offset + base
    return predicted, length_mask(predicted_length, max_predicted)

  def min_observed(self) -> int:
    """The fewest observed frames for which the encoder's two strided convs give an output (and,
    with the "extrapolation" base, that hold its gap and frames)."""
    length = 1
    while int(conv_output_length(conv_output_length(length, self.encoder_kernel, self.encoder_stride),
                                 self.encoder_kernel, self.encoder_stride)) < 1:
      length += 1
    if self.residual_base == "extrapolation":
      length = max(length, self.extrapolation_gap + self.extrapolation_frames)
    return length
