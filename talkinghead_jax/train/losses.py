"""The generator Θ's losses (UPSTREAM_NOTES.md §2.13), as pure functions of arrays.

Each loss is what upstream's `LossCollector` (few-shot-vid2vid's `GANLoss`, `VGGLoss`,
`MaskedL1Loss`, L1) computes for ONE generated image; upstream sums the generator terms over
its outputs (the final image, the raw landmark-only image and, in linear composition, the
intermediate one) and the discriminator terms over final and raw, and so should the caller.
Weights (λ) default to upstream's; "mean" is over every element, as torch's L1Loss.

Discriminator outputs. `DiscriminatorOutputs` is D's result for one batch of images: a list
over D's scales (num_D), each a list of that scale's layer outputs (NHWC) with the patch
logits LAST — pix2pixHD's `getIntermFeat=True` layout (upstream: 6 entries per scale, five
intermediate activations then the (B, h, w, 1) logits). The GAN terms use the logits; feature
matching uses every entry but the logits.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

DiscriminatorOutputs = Sequence[Sequence[jax.Array]]

LAMBDA_FEAT = 10.0
LAMBDA_VGG = 10.0
LAMBDA_FLOW = 10.0
LAMBDA_WEIGHT = 10.0
VGG_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def _logits(outputs: DiscriminatorOutputs) -> list[jax.Array]:
  if not outputs:
    raise ValueError("the discriminator gave no scales")
  return [scale[-1] for scale in outputs]


def hinge_d_loss(real: DiscriminatorOutputs, fake: DiscriminatorOutputs) -> tuple[jax.Array, jax.Array]:
  """Discriminator hinge terms (D_real, D_fake): mean(relu(1 − D(real))), mean(relu(1 + D(fake))).

  Each is averaged over D's scales (few-shot-vid2vid's `GANLoss` on a list). The caller
  passes `fake` computed from generator outputs under `stop_gradient`.
  """
  real_terms = [jnp.mean(jax.nn.relu(1.0 - logits)) for logits in _logits(real)]
  fake_terms = [jnp.mean(jax.nn.relu(1.0 + logits)) for logits in _logits(fake)]
  return sum(real_terms) / len(real_terms), sum(fake_terms) / len(fake_terms)


def hinge_g_loss(fake: DiscriminatorOutputs) -> jax.Array:
  """Generator hinge term −mean(D(fake)), averaged over D's scales."""
  terms = [-jnp.mean(logits) for logits in _logits(fake)]
  return sum(terms) / len(terms)


def feature_matching_loss(real: DiscriminatorOutputs, fake: DiscriminatorOutputs,
                          weight: float = LAMBDA_FEAT) -> jax.Array:
  """λ/num_D · Σ_scales Σ_layers mean|D_l(fake) − D_l(real)| over every layer but the logits.

  The real features are constants (`stop_gradient`, upstream's `.detach()`); upstream's
  per-layer weight is 1 (not pix2pixHD's 4/(n_layers + 1)).
  """
  if len(real) != len(fake):
    raise ValueError(f"real and fake have {len(real)} and {len(fake)} scales")
  total = jnp.zeros((), jnp.float32)
  for real_scale, fake_scale in zip(real, fake):
    for real_feature, fake_feature in zip(real_scale[:-1], fake_scale[:-1]):
      total = total + jnp.mean(jnp.abs(fake_feature - jax.lax.stop_gradient(real_feature)))
  return total * (weight / len(fake))


def perceptual_loss_from_features(fake_features: Sequence[jax.Array], real_features: Sequence[jax.Array],
                                  layer_weights: Sequence[float] = VGG_LAYER_WEIGHTS) -> jax.Array:
  """Σ_l w_l · mean|φ_l(fake) − φ_l(real)| with the real features held constant (unweighted by λ)."""
  if not len(fake_features) == len(real_features) == len(layer_weights):
    raise ValueError(f"{len(fake_features)} fake and {len(real_features)} real feature maps for "
                     f"{len(layer_weights)} weights")
  total = jnp.zeros((), jnp.float32)
  for weight, fake, real in zip(layer_weights, fake_features, real_features):
    total = total + weight * jnp.mean(jnp.abs(fake.astype(jnp.float32) -
                                              jax.lax.stop_gradient(real).astype(jnp.float32)))
  return total


def perceptual_loss(features_fn: Callable[[jax.Array], Sequence[jax.Array]], fake: jax.Array, real: jax.Array,
                    weight: float = LAMBDA_VGG,
                    layer_weights: Sequence[float] = VGG_LAYER_WEIGHTS) -> jax.Array:
  """λ · VGG loss of images (B, H, W, 3) in [-1, 1], fed to the network as they are.

  `features_fn(images)` returns the layer activations, e.g.
  `lambda x: vgg.VGGFeatures("vgg19").apply({"params": vgg_params}, x)`. Upstream feeds
  [-1, 1] images to the ImageNet VGG19 without ImageNet normalisation (few-shot-vid2vid's
  convention); so do we. Both images go through the network in one batch.
  """
  if fake.shape != real.shape:
    raise ValueError(f"fake {fake.shape} and real {real.shape} differ")
  features = features_fn(jnp.concatenate([fake, real], axis=0))
  batch = fake.shape[0]
  fake_features = [f[:batch] for f in features]
  real_features = [f[batch:] for f in features]
  return weight * perceptual_loss_from_features(fake_features, real_features, layer_weights)


def masked_l1(prediction: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
  """Upstream's `MaskedL1Loss`: mean|p·m − t·m| over all elements (not normalised by Σm).

  `mask` broadcasts against the prediction; a (B, H, W) mask gets a trailing channel axis.
  """
  mask = jnp.asarray(mask, prediction.dtype)
  if mask.ndim == prediction.ndim - 1:
    mask = mask[..., None]
  return jnp.mean(jnp.abs(prediction * mask - target * mask))


def flow_loss(flow: jax.Array, flow_gt: jax.Array, confidence: jax.Array,
              weight: float = LAMBDA_FLOW) -> jax.Array:
  """λ · masked L1 between a predicted flow (B, H, W, 2) and the prepared one, masked by its confidence.

  Flows in pixels, x then y (`data.flow.dis_flow`: target(p) ≈ source(p + flow(p))); the
  confidence (B, H, W) is 1 where the ground-truth flow warps well (upstream: FlowNet2 with
  squared error < 0.02). The ground truth is a constant.
  """
  return weight * masked_l1(flow, jax.lax.stop_gradient(flow_gt), jax.lax.stop_gradient(confidence))


def l1_loss(prediction: jax.Array, target: jax.Array, weight: float = 1.0) -> jax.Array:
  """λ · mean|prediction − target|: upstream's optional image L1 (`face_l1`, 0 by default) on
  the final image; `config.loss.l1`."""
  return weight * jnp.mean(jnp.abs(prediction - target))


def warp_loss(warped: jax.Array, target: jax.Array, weight: float = LAMBDA_FLOW) -> jax.Array:
  """λ · mean|warped source − target| (upstream's F_Warp; for the rendered face the target
  is the cropped one, `models.aware3d.crop_to_render`)."""
  return l1_loss(warped, target, weight)


def weight_map_loss(weight_map: jax.Array, warped: jax.Array, target: jax.Array,
                    weight: float = LAMBDA_WEIGHT) -> jax.Array:
  """Upstream's optional occlusion-weight loss (`--use_weight_loss`, off by default).

  conf = clip(1 − Σ_c|warped − target|, 0, 1) (a constant); the loss is
  λ·(masked_l1(w, 0, conf) + masked_l1(w, 1, 1 − conf)): w → 0 where the warp is good, 1
  where it is not (in the linear blend raw·w + warped·(1 − w), w = 0 keeps the warped image).
  `weight_map` (B, H, W, 1).
  """
  difference = jnp.sum(jnp.abs(warped - target), axis=-1, keepdims=True)
  confidence = jax.lax.stop_gradient(jnp.clip(1.0 - difference, 0.0, 1.0))
  return weight * (masked_l1(weight_map, jnp.zeros_like(weight_map), confidence) +
                   masked_l1(weight_map, jnp.ones_like(weight_map), 1.0 - confidence))


def position_map_loss(prediction: jax.Array, target: jax.Array, texel_weights: jax.Array | None = None) -> jax.Array:
  """The unprojection net's loss (paper A.3: MSE on the position map), optionally weighted.

  prediction, target (B, S, S, 3), best in the normalised space
  (`models.unprojection.normalize_position_map`); texel_weights (S, S) or (B, S, S), e.g.
  PRNet's face-region weights or a face mask. Returns Σ w·‖p − t‖² / (3·Σ w) (the plain
  mean squared error when unweighted).
  """
  squared = jnp.square(prediction - target)
  if texel_weights is None:
    return jnp.mean(squared)
  weights = jnp.broadcast_to(jnp.asarray(texel_weights, squared.dtype), squared.shape[:-1])[..., None]
  return jnp.sum(weights * squared) / (3.0 * jnp.maximum(jnp.sum(weights), 1e-12))
