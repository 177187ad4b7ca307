"""talkinghead-jax: talking-head generation with rhythmic head motion, in JAX/Flax.

Subpackages (see docs/architecture.md): geometry, render, audio, media, data, models,
train, eval, infer. Heavy dependencies are imported by the subpackages that need them,
never here, so that `import talkinghead_jax` stays cheap.
"""

__version__ = "0.1.0"
