"""SSIM and PSNR between generated and ground-truth frames (dm-pix, jitted on the device).

Both take uint8 RGB frames, scale them to [0, 1] (so the data range is 255 in uint8 units) and
give one value per frame:

  SSIM: Wang et al. 2004 on each of R, G, B separately with an 11-tap Gaussian window
        (σ = 1.5), K1 = 0.01, K2 = 0.03, population (not sample) statistics, averaged over the
        'valid' window positions (the 5-pixel border is not a window centre) and the three
        channels. This equals `skimage.metrics.structural_similarity(..., channel_axis=-1,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)`.
  PSNR: 10·log10(255² / MSE), the MSE over all pixels and channels of the frame; identical
        frames give +inf.
"""

from __future__ import annotations

import numpy as np

from talkinghead_jax.eval import batching

SSIM_SETTINGS = {
    "window": "gaussian 11x11, sigma 1.5", "k1": 0.01, "k2": 0.03, "data_range": 255,
    "color": "per RGB channel, averaged", "border": "valid window positions only",
    "implementation": "dm-pix ssim",
}
PSNR_SETTINGS = {
    "data_range": 255, "mse": "over all pixels and RGB channels of a frame",
    "aggregate": "mean of per-frame PSNR (inf when any frame is identical)",
}
SSIM_WINDOW = 11


def _per_frame(pred, gt):
  import dm_pix
  import jax.numpy as jnp

  a = pred.astype(jnp.float32) / 255.0
  b = gt.astype(jnp.float32) / 255.0
  ssim = dm_pix.ssim(a, b, max_val=1.0, filter_size=SSIM_WINDOW, filter_sigma=1.5,
                     k1=0.01, k2=0.03)
  mse = jnp.mean(jnp.square(a - b), axis=(1, 2, 3))
  psnr = -10.0 * jnp.log10(mse)  # mse = 0 gives +inf, as it should
  return jnp.stack([ssim, psnr], axis=-1)


_JITTED = None


def ssim_psnr(pred: np.ndarray, gt: np.ndarray,
              batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
  """uint8 (T, H, W, 3) x2 -> per-frame SSIM (T,) and PSNR in dB (T,)."""
  global _JITTED
  if pred.shape != gt.shape:
    raise ValueError(f"SSIM/PSNR need equal shapes, got {pred.shape} and {gt.shape}")
  if min(pred.shape[1:3]) < SSIM_WINDOW:
    raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW}, "
                     f"got {pred.shape[1:3]}")
  if _JITTED is None:
    import jax

    _JITTED = jax.jit(_per_frame)
  values = batching.map_batched(_JITTED, pred, gt, batch_size=batch_size)
  return values[:, 0], values[:, 1]
