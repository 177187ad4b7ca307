"""PCA of frontal 2D landmarks: the expression learner's 20-coefficient output space.

Convention (UPSTREAM_NOTES §3.6): landmarks are flattened to L (136,) = (x0, y0, x1, y1, ...)
(the row-major flattening of (68, 2)); with the mean m (136,) and the orthonormal component
rows U (k, 136), coeff = (L − m)·Uᵀ and L = coeff·U + m.

`transform` and `inverse_transform` accept numpy or jax arrays and answer in kind, so the
inverse map can sit inside a jit-ed, differentiated model.
"""

from __future__ import annotations

import os
import sys
import zipfile
from typing import Any

import numpy as np

from talkinghead_jax.errors import InputError
from talkinghead_jax.fileio import write_npz

_FORMAT = "talkinghead_jax.LandmarkPCA/1"
_POINTS = 68
_ARRAYS = ("mean", "components", "explained_variance", "explained_variance_ratio",
           "singular_values", "feature_shape", "n_samples")


def _is_jax(array: Any) -> bool:
  jax = sys.modules.get("jax")
  return jax is not None and isinstance(array, jax.Array)


class LandmarkPCA:
  """Principal components of flattened landmark sets, by SVD of the centred data.

  After `fit` (or `load`):
    mean_ (D,), components_ (k, D) orthonormal rows, sorted by variance, each with its
    largest-magnitude entry positive (a fixed sign, so refits agree);
    explained_variance_ (k,) = σ²/(N − 1); explained_variance_ratio_ (k,) of the total
    variance of the data; singular_values_ (k,); feature_shape_, e.g. (68, 2); n_samples_.
  D = prod(feature_shape_), 136 for 68 2D points.
  """

  def __init__(self, n_components: int | None = 20):
    """n_components: k, or None for all min(N, D)."""
    self.n_components = n_components
    self.mean_: np.ndarray | None = None
    self.components_: np.ndarray | None = None
    self.explained_variance_: np.ndarray | None = None
    self.explained_variance_ratio_: np.ndarray | None = None
    self.singular_values_: np.ndarray | None = None
    self.feature_shape_: tuple[int, ...] | None = None
    self.n_samples_: int | None = None

  def fit(self, data: Any) -> "LandmarkPCA":
    """data (N, 136) or (N, 68, 2) (or any (N, ...); it is flattened) -> self.

    Flat 136-d data is taken to be 68 (x, y) points, so `feature_shape_` is (68, 2) either way.
    """
    data = np.asarray(data, np.float64)
    if data.ndim < 2 or data.shape[0] < 2:
      raise ValueError(f"PCA needs data (N ≥ 2, ...), got shape {data.shape}")
    feature_shape = tuple(data.shape[1:])
    if feature_shape == (2 * _POINTS,):
      feature_shape = (_POINTS, 2)  # flat 2D landmarks: remember the points for as_points
    flat = data.reshape(len(data), -1)
    samples, dims = flat.shape
    k = min(samples, dims) if self.n_components is None else int(self.n_components)
    if not 1 <= k <= min(samples, dims):
      raise ValueError(f"n_components={k} must be in [1, min(N, D)] = [1, {min(samples, dims)}]")
    mean = flat.mean(axis=0)
    _, singular, vt = np.linalg.svd(flat - mean, full_matrices=False)
    biggest = np.argmax(np.abs(vt), axis=1)
    vt = vt * np.sign(vt[np.arange(len(vt)), biggest])[:, None]
    variance = singular**2 / (samples - 1)
    total = variance.sum()
    self.mean_ = mean.astype(np.float32)
    self.components_ = vt[:k].astype(np.float32)
    self.explained_variance_ = variance[:k].astype(np.float32)
    self.explained_variance_ratio_ = (variance[:k] / total if total > 0 else
                                      np.zeros(k)).astype(np.float32)
    self.singular_values_ = singular[:k].astype(np.float32)
    self.feature_shape_ = feature_shape
    self.n_samples_ = samples
    return self

  @property
  def n_features(self) -> int:
    self._check_fitted()
    return int(self.mean_.size)

  def _check_fitted(self):
    if self.components_ is None:
      raise RuntimeError("LandmarkPCA is not fitted: call fit() or load() first")

  def _flatten(self, data):
    """(..., D) or (..., *feature_shape) -> (..., D)."""
    dims = self.n_features
    shape = tuple(data.shape)
    if shape[-1:] == (dims,):
      return data
    rank = len(self.feature_shape_)
    if shape[len(shape) - rank:] == self.feature_shape_:
      return data.reshape(shape[:len(shape) - rank] + (dims,))
    raise ValueError(f"landmarks must be (..., {dims}) or (..., {self.feature_shape_}), got "
                     f"{shape}")

  def transform(self, data: Any):
    """Landmarks (..., D) or (..., *feature_shape) -> coefficients (..., k) = (L − m)·Uᵀ."""
    self._check_fitted()
    if _is_jax(data):
      import jax.numpy as jnp
      return (self._flatten(data) - jnp.asarray(self.mean_)) @ jnp.asarray(self.components_).T
    flat = self._flatten(np.asarray(data, np.float32))
    return (flat - self.mean_) @ self.components_.T

  def inverse_transform(self, coefficients: Any, as_points: bool = False):
    """Coefficients (..., k) -> landmarks coeff·U + m: (..., D), or (..., *feature_shape)."""
    self._check_fitted()
    k = len(self.components_)
    if not _is_jax(coefficients):
      coefficients = np.asarray(coefficients, np.float32)
    if coefficients.shape[-1:] != (k,):
      raise ValueError(f"coefficients must be (..., {k}), got {coefficients.shape}")
    if _is_jax(coefficients):
      import jax.numpy as jnp
      flat = coefficients @ jnp.asarray(self.components_) + jnp.asarray(self.mean_)
    else:
      flat = coefficients @ self.components_ + self.mean_
    if as_points:
      return flat.reshape(tuple(flat.shape[:-1]) + self.feature_shape_)
    return flat

  def save(self, path: str | os.PathLike) -> None:
    """Writes an .npz (atomically: a temporary file renamed into place)."""
    self._check_fitted()
    arrays = {
        "format": np.asarray(_FORMAT),
        "mean": self.mean_, "components": self.components_,
        "explained_variance": self.explained_variance_,
        "explained_variance_ratio": self.explained_variance_ratio_,
        "singular_values": self.singular_values_,
        "feature_shape": np.asarray(self.feature_shape_, np.int64),
        "n_samples": np.asarray(self.n_samples_, np.int64),
    }
    write_npz(path, arrays)

  @classmethod
  def load(cls, path: str | os.PathLike) -> "LandmarkPCA":
    """Reads a file written by `save`; InputError if it is missing, corrupt or not a PCA."""
    if not os.path.isfile(path):
      raise InputError(path, "PCA file not found")
    try:
      with np.load(path, allow_pickle=False) as archive:
        if "format" not in archive.files or str(archive["format"]) != _FORMAT:
          raise InputError(path, f"not a LandmarkPCA file (no '{_FORMAT}' format tag)")
        missing = [name for name in _ARRAYS if name not in archive.files]
        if missing:
          raise InputError(path, f"LandmarkPCA file lacks {', '.join(missing)}")
        arrays = {name: archive[name] for name in _ARRAYS}
    except InputError:
      raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
      raise InputError(path, f"corrupt PCA file ({type(error).__name__}: {error})") from error
    feature_shape = tuple(int(n) for n in np.atleast_1d(arrays["feature_shape"]))
    dims = int(np.prod(feature_shape)) if feature_shape else 0
    components = arrays["components"]
    k = components.shape[0] if components.ndim == 2 else -1
    expected = {"mean": (dims,), "components": (k, dims), "explained_variance": (k,),
                "explained_variance_ratio": (k,), "singular_values": (k,)}
    for name, shape in expected.items():
      if k < 1 or dims < 1 or arrays[name].shape != shape:
        raise InputError(path, f"LandmarkPCA file has {name} of shape {arrays[name].shape}, "
                               f"expected {shape}")
    pca = cls(n_components=k)
    pca.mean_ = arrays["mean"].astype(np.float32)
    pca.components_ = components.astype(np.float32)
    pca.explained_variance_ = arrays["explained_variance"].astype(np.float32)
    pca.explained_variance_ratio_ = arrays["explained_variance_ratio"].astype(np.float32)
    pca.singular_values_ = arrays["singular_values"].astype(np.float32)
    pca.feature_shape_ = feature_shape
    pca.n_samples_ = int(arrays["n_samples"])
    return pca
