"""Geometry: rigid maths (`rigid`), iBUG-68 landmark semantics and images (`landmarks`), and
the landmark PCA (`pca`). numpy/jax only; imports nothing else from the project but `errors`.
"""

from talkinghead_jax.geometry import landmarks, pca, rigid
from talkinghead_jax.geometry.pca import LandmarkPCA

__all__ = ["landmarks", "pca", "rigid", "LandmarkPCA"]
