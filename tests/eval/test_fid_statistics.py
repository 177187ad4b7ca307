"""FID statistics and the Fréchet distance: numpy references and known Gaussians."""

import numpy as np
import pytest

from talkinghead_jax.eval import fid


def _random_covariance(rng, dim):
  factor = rng.normal(size=(dim, dim))
  return factor @ factor.T / dim + 0.1 * np.eye(dim)


def test_streaming_statistics_match_numpy_on_the_full_set():
  rng = np.random.default_rng(0)
  features = rng.normal(3.0, 2.0, size=(103, 16)).astype(np.float32)
  stats = fid.GaussianStats(16)
  for start, stop in [(0, 1), (1, 40), (40, 41), (41, 103)]:  # uneven batches, one of size 1
    stats.update(features[start:stop])
  reference = features.astype(np.float64)
  np.testing.assert_allclose(stats.mean, reference.mean(axis=0), rtol=0, atol=1e-12)
  np.testing.assert_allclose(stats.covariance, np.cov(reference, rowvar=False), rtol=0, atol=1e-12)
  assert stats.count == 103


def test_merged_statistics_equal_one_pass():
  rng = np.random.default_rng(1)
  features = rng.normal(size=(50, 8))
  left = fid.GaussianStats(8).update(features[:20])
  right = fid.GaussianStats(8).update(features[20:])
  whole = fid.GaussianStats(8).update(features)
  left.merge(right)
  np.testing.assert_allclose(left.covariance, whole.covariance, atol=1e-12)
  np.testing.assert_allclose(left.mean, whole.mean, atol=1e-12)


def test_statistics_reject_wrong_shapes_and_too_few_samples():
  stats = fid.GaussianStats(4)
  with pytest.raises(ValueError, match="expected features"):
    stats.update(np.zeros((3, 5)))
  stats.update(np.zeros((1, 4)))
  with pytest.raises(ValueError, match="at least 2"):
    stats.covariance


@pytest.mark.parametrize("method", fid.FID_METHODS)
def test_frechet_distance_of_commuting_gaussians_has_the_closed_form(method):
  # Σa = Q Da Qᵀ, Σb = Q Db Qᵀ: FID = ‖μa − μb‖² + Σ (√da − √db)².
  rng = np.random.default_rng(2)
  q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
  da, db = rng.uniform(0.5, 3.0, 6), rng.uniform(0.5, 3.0, 6)
  mean_a, mean_b = rng.normal(size=6), rng.normal(size=6)
  expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(da) - np.sqrt(db)) ** 2)
  value = fid.frechet_distance(mean_a, q @ np.diag(da) @ q.T, mean_b, q @ np.diag(db) @ q.T,
                               method=method)
  assert value == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("method", fid.FID_METHODS)
def test_frechet_distance_of_identical_gaussians_is_zero(method):
  rng = np.random.default_rng(3)
  cov = _random_covariance(rng, 32)
  mean = rng.normal(size=32)
  assert abs(fid.frechet_distance(mean, cov, mean, cov, method=method)) < 1e-9


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
def test_frechet_distance_matches_the_fid_helper_reference_and_methods_agree():
  fid_helper = pytest.importorskip("fid_helper_pytorch")
  rng = np.random.default_rng(4)
  mean_a, mean_b = rng.normal(size=48), rng.normal(size=48)
  cov_a, cov_b = _random_covariance(rng, 48), _random_covariance(rng, 48)  # not commuting
  helper = fid_helper.FidHelper.__new__(fid_helper.FidHelper)  # no model needed for the formula
  helper.ref_stat_dict = {"mu": mean_a, "sigma": cov_a}
  helper.eval_stat_dict = {"mu": mean_b, "sigma": cov_b}
  reference = helper.compute_fid_score()
  assert fid.frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(reference, rel=1e-9)
  assert fid.frechet_distance(mean_a, cov_a, mean_b, cov_b, method="eigh") == pytest.approx(
      reference, rel=1e-9)


def test_frechet_distance_grows_with_mean_shift_and_spread():
  rng = np.random.default_rng(5)
  cov = _random_covariance(rng, 8)
  mean = np.zeros(8)
  shifted = [fid.frechet_distance(mean, cov, mean + s, cov) for s in (0.0, 0.5, 1.0)]
  spread = [fid.frechet_distance(mean, cov, mean, cov * k) for k in (1.0, 2.0, 4.0)]
  assert shifted[0] < shifted[1] < shifted[2]
  assert spread[0] < spread[1] < spread[2]
  assert shifted[2] == pytest.approx(8.0, rel=1e-9)  # ‖(1,…,1)‖² with equal covariances


def test_unknown_method_is_rejected():
  with pytest.raises(ValueError, match="method"):
    fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2), method="svd")


def test_sqrtm_on_rank_deficient_sample_covariances_stays_close_to_exact():
  # Fewer samples than dimensions, as in a short evaluation: Σa Σb is singular, sqrtm warns
  # and leaves rounding error; FID must still be near the exact value from the samples'
  # Gram matrices (tr (Σa Σb)^½ = Σ singular values of Bc Acᵀ / (n − 1)).
  rng = np.random.default_rng(6)
  a, b = rng.normal(size=(6, 256)), rng.normal(0.2, 1.3, size=(6, 256))
  stats_a, stats_b = fid.GaussianStats(256).update(a), fid.GaussianStats(256).update(b)
  centred_a, centred_b = a - a.mean(0), b - b.mean(0)
  exact = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(stats_a.covariance)
           + np.trace(stats_b.covariance)
           - 2 * np.linalg.svd(centred_b @ centred_a.T, compute_uv=False).sum() / 5)
  for method in fid.FID_METHODS:
    assert fid.fid_from_stats(stats_a, stats_b, method=method) == pytest.approx(exact, rel=1e-6)
    assert abs(fid.fid_from_stats(stats_a, stats_a, method=method)) < 1e-3
