"""Tests for geometry.pca.LandmarkPCA against a numpy eigendecomposition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talkinghead_jax.errors import InputError
from talkinghead_jax.geometry.pca import LandmarkPCA


def landmark_data(count: int = 60, seed: int = 0) -> np.ndarray:
  """(count, 68, 2): a mean face plus a few correlated modes plus small noise, in pixels."""
  rng = np.random.default_rng(seed)
  mean = rng.uniform(40, 210, size=(68, 2))
  modes = rng.normal(size=(5, 68, 2))
  weights = rng.normal(size=(count, 5)) * [8, 5, 3, 2, 1]
  return mean + np.einsum("nk,kpd->npd", weights, modes) + rng.normal(scale=0.1,
                                                                       size=(count, 68, 2))


def test_round_trip_with_all_components_is_exact():
  data = landmark_data(40)
  pca = LandmarkPCA(n_components=None).fit(data)
  assert pca.components_.shape == (40, 136)
  coefficients = pca.transform(data)
  assert coefficients.shape == (40, 40)
  np.testing.assert_allclose(pca.inverse_transform(coefficients, as_points=True), data,
                             atol=2e-3)
  np.testing.assert_allclose(pca.inverse_transform(coefficients), data.reshape(40, 136),
                             atol=2e-3)


def test_explained_variance_matches_the_covariance_eigendecomposition():
  data = landmark_data()
  flat = data.reshape(len(data), -1)
  pca = LandmarkPCA(n_components=20).fit(data)
  eigenvalues, eigenvectors = np.linalg.eigh(np.cov(flat, rowvar=False))
  order = np.argsort(eigenvalues)[::-1]
  eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
  np.testing.assert_allclose(pca.explained_variance_, eigenvalues[:20], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(pca.explained_variance_ratio_, eigenvalues[:20] / eigenvalues.sum(),
                             rtol=1e-4, atol=1e-7)
  # The leading (well separated) components are the eigenvectors, up to sign.
  overlap = np.abs(np.sum(pca.components_[:5] * eigenvectors[:, :5].T, axis=1))
  np.testing.assert_allclose(overlap, 1.0, atol=1e-4)
  np.testing.assert_allclose(pca.components_ @ pca.components_.T, np.eye(20), atol=1e-5)


def test_coefficient_convention_and_truncation_error():
  data = landmark_data()
  flat = data.reshape(len(data), -1)
  pca = LandmarkPCA(n_components=3).fit(flat)
  coefficients = pca.transform(flat)
  np.testing.assert_allclose(coefficients, (flat - pca.mean_) @ pca.components_.T, rtol=1e-5,
                             atol=1e-3)
  np.testing.assert_allclose(pca.transform(data), coefficients, atol=1e-4)  # (N, 68, 2) too
  # The squared error of a rank-k reconstruction is the variance left in the dropped modes.
  full = LandmarkPCA(n_components=None).fit(flat)
  residual = np.sum((pca.inverse_transform(coefficients) - flat)**2) / (len(flat) - 1)
  assert residual == pytest.approx(full.explained_variance_[3:].sum(), rel=1e-3)


def test_component_signs_do_not_depend_on_sample_order():
  data = landmark_data()
  first = LandmarkPCA(4).fit(data)
  second = LandmarkPCA(4).fit(data[np.random.default_rng(1).permutation(len(data))])
  np.testing.assert_allclose(first.components_, second.components_, atol=1e-4)


def test_jax_transforms_match_numpy_under_jit():
  data = landmark_data()
  pca = LandmarkPCA(6).fit(data)
  coefficients = jax.jit(pca.transform)(jnp.asarray(data, jnp.float32))
  assert isinstance(coefficients, jax.Array)
  np.testing.assert_allclose(coefficients, pca.transform(data), atol=1e-3)
  points = jax.jit(lambda c: pca.inverse_transform(c, as_points=True))(coefficients)
  assert points.shape == (60, 68, 2)
  np.testing.assert_allclose(points, pca.inverse_transform(np.asarray(coefficients),
                                                           as_points=True), atol=1e-3)


def test_save_load_round_trip(tmp_path):
  data = landmark_data()
  pca = LandmarkPCA(5).fit(data)
  path = tmp_path / "pca.npz"
  pca.save(path)
  loaded = LandmarkPCA.load(path)
  for name in ("mean_", "components_", "explained_variance_", "explained_variance_ratio_",
               "singular_values_"):
    np.testing.assert_array_equal(getattr(loaded, name), getattr(pca, name))
  assert loaded.feature_shape_ == (68, 2) and loaded.n_samples_ == 60
  assert loaded.n_components == 5
  np.testing.assert_array_equal(loaded.transform(data), pca.transform(data))
  assert sorted(p.name for p in tmp_path.iterdir()) == ["pca.npz"]  # no temporary left


def test_load_errors_name_the_file(tmp_path):
  missing = tmp_path / "missing.npz"
  with pytest.raises(InputError, match="missing.npz: PCA file not found"):
    LandmarkPCA.load(missing)
  corrupt = tmp_path / "corrupt.npz"
  corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive at all")
  with pytest.raises(InputError, match="corrupt.npz"):
    LandmarkPCA.load(corrupt)
  garbage = tmp_path / "garbage.npz"
  garbage.write_bytes(np.random.default_rng(0).bytes(300))
  with pytest.raises(InputError, match="garbage.npz"):
    LandmarkPCA.load(garbage)
  foreign = tmp_path / "foreign.npz"
  np.savez(foreign, mean=np.zeros(136))
  with pytest.raises(InputError, match="foreign.npz: not a LandmarkPCA file"):
    LandmarkPCA.load(foreign)
  good = tmp_path / "good.npz"
  LandmarkPCA(3).fit(landmark_data()).save(good)
  with np.load(good) as archive:
    arrays = dict(archive)
  arrays["components"] = arrays["components"][:, :100]
  broken = tmp_path / "broken.npz"
  np.savez(broken, **arrays)
  with pytest.raises(InputError, match="broken.npz: .*components"):
    LandmarkPCA.load(broken)


def test_bad_arguments():
  with pytest.raises(ValueError):
    LandmarkPCA(200).fit(landmark_data(10))
  with pytest.raises(RuntimeError):
    LandmarkPCA().transform(np.zeros((1, 136)))
  pca = LandmarkPCA(3).fit(landmark_data())
  with pytest.raises(ValueError):
    pca.transform(np.zeros((2, 135)))
  with pytest.raises(ValueError):
    pca.inverse_transform(np.zeros((2, 4)))
