"""SSIM and PSNR against scikit-image on the same frames."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from talkinghead_jax.eval import image_metrics


@pytest.fixture(scope="module")
def frames():
  import skimage.data

  face = skimage.data.astronaut()[40:104, 130:210]  # 64x80 RGB, non-square on purpose
  return np.stack([face] * 5)


def _noisy(frames, sigmas, seed=0):
  rng = np.random.default_rng(seed)
  noise = rng.normal(size=frames.shape) * np.asarray(sigmas)[:, None, None, None]
  return np.clip(frames + noise, 0, 255).astype(np.uint8)


def test_ssim_and_psnr_agree_with_scikit_image(frames):
  degraded = _noisy(frames, [1, 5, 10, 20, 40])
  ssim, psnr = image_metrics.ssim_psnr(degraded, frames, batch_size=4)  # a padded last batch
  expected_ssim = [structural_similarity(
      d, f, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
      data_range=255) for d, f in zip(degraded, frames)]
  expected_psnr = [peak_signal_noise_ratio(f, d, data_range=255) for d, f in zip(degraded, frames)]
  np.testing.assert_allclose(ssim, expected_ssim, atol=1e-4, rtol=0)
  np.testing.assert_allclose(psnr, expected_psnr, atol=1e-3, rtol=0)


def test_identical_frames_give_ssim_one_and_psnr_inf(frames):
  ssim, psnr = image_metrics.ssim_psnr(frames, frames)
  np.testing.assert_allclose(ssim, 1.0, atol=1e-6)
  assert np.isposinf(psnr).all()


def test_more_noise_lowers_both(frames):
  ssim, psnr = image_metrics.ssim_psnr(_noisy(frames, [2, 8, 16, 32, 64]), frames)
  assert (np.diff(ssim) < 0).all() and (np.diff(psnr) < 0).all()


def test_blur_and_shift_lower_ssim(frames):
  from scipy.ndimage import gaussian_filter

  blurred = np.stack([gaussian_filter(f.astype(float), (2, 2, 0)) for f in frames]).astype(np.uint8)
  shifted = np.roll(frames, 3, axis=2)
  ssim_blur, _ = image_metrics.ssim_psnr(blurred, frames)
  ssim_shift, _ = image_metrics.ssim_psnr(shifted, frames)
  assert ssim_blur.max() < 0.95 and ssim_shift.max() < 0.95


def test_shape_errors(frames):
  with pytest.raises(ValueError, match="equal shapes"):
    image_metrics.ssim_psnr(frames, frames[:, :32])
  with pytest.raises(ValueError, match="at least 11x11"):
    image_metrics.ssim_psnr(frames[:, :8, :8], frames[:, :8, :8])
