"""`data.source = "synthetic"`: the generator and unprojection batches from clips made in numpy.

No TensorFlow and no prepared data set: the clips are `data.input_synthetic.make_clips` (a
textured background with a dot at every landmark, a mouth that opens and closes, a turning
head, SynthTalk-style position maps and face masks), and each sample is made by the stage's
real sampler (`data.input_generator.GeneratorSampler`, `data.input_unprojection.UnprojectionSampler`)
with the tfds pipeline's slot rule and random numbers: sample `e` of epoch `n` comes from
`EpochPlan.clip_at(n, e)` with `default_rng([seed, n, e, salt])`. So the batches are
deterministic, every host reads only its rows, and a resumed run reads what an uninterrupted
one would. Used by the tests, by CPU smoke runs and by benchmarks on machines without
TensorFlow (the GPU machines).

Config (`config.data`): `image_size` (S, default 64), `num_references` (generator K),
`synthetic_clips` (clips per split, default 16), `synthetic_frames` (frames per clip, default
48), `shuffle`, `samples_per_clip`, and the generator sampler's fields (`ref_ratio`,
`matching`, `augment`, `flow_gt`, …; docs/data.md). The test split has other identities (another
seed).

The generator batches are the sampler's: `rendered_label` always, and the key frame's stored
`key_position_map` when the config asks for it (`model.position_source=ground_truth`), here the
synthetic clips' flat maps.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

from talkinghead_jax.data import input_common as common
from talkinghead_jax.data import input_synthetic
from talkinghead_jax.errors import ConfigError

STAGES = ("generator", "unprojection")
_TEST_SEED_OFFSET = 1_000_003  # test identities: another seed for make_clip
_AUDIO_RATE = 4000  # the clips' one stored audio rate (no stage here reads audio)


def _clips(config, split: str, size: int) -> list[dict]:
  data = config.data
  seed = int(config.seed) + (_TEST_SEED_OFFSET if split != "train" else 0)
  count = int(common.data_field(data, "synthetic_clips", 16))
  frames = int(common.data_field(data, "synthetic_frames", 48))
  if count < 1 or frames < 2:
    raise ConfigError(f"data.synthetic_clips must be >= 1 and data.synthetic_frames >= 2, got {count}, {frames}")
  return input_synthetic.make_clips(count, frames=frames, size=size, audio_rates=(_AUDIO_RATE,), seed=seed,
                                    synthtalk=True, unprojection_frames=2)


class SyntheticInput:
  """A `BatchIterator` over synthetic clips (see the module docstring). State {"epoch", "position"}."""

  def __init__(self, config, stage: str, split: str = "train", process_index: int = 0, process_count: int = 1):
    if stage not in STAGES:
      raise ConfigError(f"data.source='synthetic' makes batches for {STAGES}, not {stage!r}")
    global_size = int(config.batch_size)
    if global_size % process_count:
      raise ConfigError(f"batch size {global_size} does not divide over {process_count} hosts")
    size = int(common.data_field(config.data, "image_size", 0)) or 64
    self.clips = _clips(config, split, size)
    artifacts = common.DatasetArtifacts(
        canonical=input_synthetic.canonical_face(size), pca=None,
        info={"size": size, "audio_rates": (_AUDIO_RATE,), "fps": 25}, features=frozenset(self.clips[0]))
    if stage == "generator":
      from talkinghead_jax.data.input_generator import GeneratorSampler  # noqa: PLC0415

      self.sampler = GeneratorSampler(config, artifacts, split)
    else:
      from talkinghead_jax.data.input_unprojection import UnprojectionSampler  # noqa: PLC0415

      self.sampler = UnprojectionSampler(config, artifacts)
    self.seed = int(config.seed)
    self.local_size = global_size // process_count
    self.global_size = global_size
    self.row_start = process_index * self.local_size
    self.plan = common.EpochPlan(len(self.clips), int(common.data_field(config.data, "samples_per_clip", 1)),
                                 self.seed, bool(common.data_field(config.data, "shuffle", True)))
    self.steps_per_epoch = self.plan.num_slots // global_size
    if self.steps_per_epoch < 1:
      raise ConfigError(f"{len(self.clips)} synthetic clips make fewer than one batch of {global_size}: "
                        "raise data.synthetic_clips or data.samples_per_clip")
    self.epoch = 0
    self.position = 0

  @property
  def element_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
    return {name: jax.ShapeDtypeStruct((self.local_size, *shape), dtype)
            for name, (shape, dtype) in self.sampler.output_spec().items()}

  def _sample(self, epoch: int, position: int) -> dict[str, np.ndarray]:
    clip_index = self.plan.clip_at(epoch, position, lambda c: int(self.clips[c]["num_frames"]),
                                   self.sampler.min_frames)
    clip = self.clips[clip_index]
    return self.sampler.sample(clip, common.sample_rng(self.seed, epoch, position, self.sampler.salt))

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    rows = [self._sample(self.epoch, self.position * self.global_size + self.row_start + i)
            for i in range(self.local_size)]
    self.position += 1
    if self.position == self.steps_per_epoch:
      self.epoch, self.position = self.epoch + 1, 0
    spec = self.sampler.output_spec()
    return {name: np.stack([np.asarray(row[name], dtype) for row in rows]) for name, (_, dtype) in spec.items()}

  def get_state(self) -> dict[str, Any]:
    return {"epoch": int(self.epoch), "position": int(self.position)}

  def set_state(self, state: Mapping[str, Any]) -> None:
    epoch, position = int(state["epoch"]), int(state["position"])
    if epoch < 0 or not 0 <= position < self.steps_per_epoch:
      raise ConfigError(f"synthetic input state {dict(state)} is out of range ({self.steps_per_epoch} steps per epoch)")
    self.epoch, self.position = epoch, position
