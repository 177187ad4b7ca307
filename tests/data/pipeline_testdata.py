"""Shared data for the input-pipeline tests: small synthetic clips, their artifacts, configs, and
a real tfds build of them (a plain module with a unique name, imported by the tests)."""

import functools

import ml_collections
import numpy as np

from talkinghead_jax import config as config_lib
from talkinghead_jax.data import input_common as common
from talkinghead_jax.data import input_synthetic as synthetic

SIZE = 48
RATES = (2500, 4000)  # S = 100 and 160 samples per frame
FRAMES = 36
NUM_CLIPS = 8


@functools.lru_cache(maxsize=None)
def clips(count: int = NUM_CLIPS, frames: int = FRAMES, size: int = SIZE) -> tuple:
  return tuple(synthetic.make_clips(count, frames=frames, size=size, audio_rates=RATES, unprojection_frames=3))


@functools.lru_cache(maxsize=None)
def artifacts(size: int = SIZE) -> common.DatasetArtifacts:
  made = clips(size=size)
  return common.DatasetArtifacts(canonical=synthetic.canonical_face(size), pca=synthetic.pca_of(made),
                                 info={"size": size, "audio_rates": RATES, "fps": 25},
                                 features=frozenset(made[0]))


def expression_config(*overrides):
  return config_lib.load("configs/expression.py:synthtalk_tiny",
                         ["batch_size=4", "data.sample_rate=2500", "data.sequence_length=6", *overrides])


def head_motion_config(*overrides):
  return config_lib.load("configs/head_motion.py:synthtalk_tiny",
                         ["batch_size=4", "data.sample_rate=2500", "data.observed_frames=(13, 16)",
                          "data.predicted_frames=(4, 8)", *overrides])


def image_config(**data):
  """A config with the fields the image stages read (their configs belong to other modules)."""
  fields = dict(source="tfds", dataset="synthtalk", num_references=3, ref_ratio=0.25, augment=True, flip_prob=0.5,
                crop_scale=(0.8, 1.2), crop_shift=0.2, flow_gt=False, image_size=0, shuffle=True, samples_per_clip=1)
  fields.update(data)
  return ml_collections.ConfigDict(dict(seed=0, batch_size=4, data=fields))


def take(iterator, count):
  return [next(iterator) for _ in range(count)]


def assert_batches_equal(first, second):
  assert len(first) == len(second)
  for a, b in zip(first, second):
    assert sorted(a) == sorted(b)
    for name in a:
      np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def build_tfds(data_dir, clip_list, train_count: int):
  """A real tfds build (2 tfrecord shards per split) of the clips; returns the builder."""
  return synthetic.write_tfds(data_dir, clip_list, train_count, num_shards=2)
