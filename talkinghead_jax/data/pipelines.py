"""The training input of every stage: `make_input(config, stage, split, process_index,
process_count)` → a resumable `BatchIterator` (train/task.py) over this host's rows.

    clips (a prepared tfds split, or decoded clips in memory)
      → slot plan of the epoch: clip order from (seed, epoch)       EpochPlan
      → this host's rows of each global batch (slot positions)     tf.data.Dataset.range
      → read + decode the features the stage needs (parallel)      ClipSource.loader
      → one sample per slot, drawn from (seed, epoch, slot)        stage_samples (a StageSampler)
      → batch, prefetch                                            StageInput

Global batch b of an epoch is slots [b·B, (b+1)·B); host i of n takes rows [i·B/n, (i+1)·B/n),
so every host reads different clips, and the batches do not depend on the number of hosts.
Nothing but slot numbers flows before the read: resuming at (epoch, position) starts the
slot range there, without reading a record of the batches already taken. Records are read by
index (tfds tfrecord shards through an index of record offsets, array_record through tfds's
data source); video frames stay JPEG until a sampler decodes the few it uses.

`clip_records(config, split)` yields whole decoded clips, for evaluation.
"""

from __future__ import annotations

import abc
import atexit
import gc
import struct
import threading
import weakref
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf

from talkinghead_jax.data import input_common as common
from talkinghead_jax.data import schema
from talkinghead_jax.errors import ConfigError, TalkingHeadError

AUTOTUNE = tf.data.AUTOTUNE
CLIP_INDEX = "clip_index"  # extra batch key with `StageInput(with_clip_index=True)`

# A tf.data iterator whose map threads are waiting to run Python (numpy_function) deadlocks the
# interpreter's shutdown; every iterator made here is dropped at exit, before that.
_OPEN: "weakref.WeakSet" = weakref.WeakSet()


@atexit.register
def _close_open_iterators() -> None:
  for owner in list(_OPEN):
    owner.close()
  gc.collect()


class _NumpyIterator:
  """`dataset.as_numpy_iterator()`, dropped at interpreter exit (see `_OPEN`)."""

  def __init__(self, dataset: tf.data.Dataset):
    self._iterator = dataset.as_numpy_iterator()
    _OPEN.add(self)

  def __iter__(self):
    return self

  def __next__(self):
    if self._iterator is None:
      raise StopIteration
    return next(self._iterator)

  def close(self) -> None:
    self._iterator = None


# --- Clip sources ------------------------------------------------------------------------------


class ClipSource(abc.ABC):
  """The clips of one split, addressable by index."""

  num_clips: int
  features: frozenset[str]

  @abc.abstractmethod
  def loader(self, keys: Sequence[str], noise_keys: Sequence[str], plan: common.EpochPlan,
             min_frames: int) -> Callable[[tf.Tensor, tf.Tensor], dict]:
    """A tf function (epoch, position) -> {"clip": {key: tensor}, "noise": {...}, CLIP_INDEX}: the
    clip of that slot (`plan.clip_at`) and, when `noise_keys` are given, the noise clip."""

  @abc.abstractmethod
  def read_clips(self, indices: Sequence[int], keys: Sequence[str] | None = None,
                 decode_frames: bool = True) -> Iterator[dict[str, np.ndarray]]:
    """Decoded clips (all features, or `keys`), as numpy, in the given order; with
    `decode_frames=False` frames stay as stored (JPEG bytes in a prepared set)."""


def _spec_of(values: Sequence[np.ndarray]) -> tf.TensorSpec:
  """The TensorSpec covering a feature's values in several clips (varying sizes → None)."""
  arrays = [np.asarray(v) for v in values]
  dtype = tf.string if arrays[0].dtype.kind in "SUO" else tf.as_dtype(arrays[0].dtype)
  shape = list(arrays[0].shape)
  for array in arrays[1:]:
    if array.ndim != len(shape):
      raise TalkingHeadError(f"clips disagree on the rank of a feature: {array.shape} vs {shape}")
    shape = [d if d == e else None for d, e in zip(shape, array.shape)]
  return tf.TensorSpec(shape, dtype)


def _as_bytes(array: np.ndarray) -> np.ndarray:
  """Strings (str or bytes, any shape) as an object array of bytes, as tf.string wants them."""
  flat = [v.encode() if isinstance(v, str) else bytes(v) for v in array.reshape(-1).tolist()]
  out = np.empty(len(flat), dtype=object)
  out[:] = flat
  return out.reshape(array.shape)


class ListSource(ClipSource):
  """Decoded clips in memory: dicts of numpy arrays with the tfds feature names (tests, and small
  sets). Frames may be decoded uint8 (T, S, S, 3) or encoded bytes (T,)."""

  def __init__(self, clips: Sequence[Mapping[str, Any]]):
    if not clips:
      raise TalkingHeadError("no clips")
    self.clips = [dict(clip) for clip in clips]
    self.num_clips = len(self.clips)
    self.features = frozenset.intersection(*(frozenset(clip) for clip in self.clips))
    self._specs: dict[str, tf.TensorSpec] = {}

  def spec(self, key: str) -> tf.TensorSpec:
    if key not in self._specs:
      self._specs[key] = _spec_of([clip[key] for clip in self.clips])
    return self._specs[key]

  def frames_of(self, clip: int) -> int:
    return int(self.clips[clip]["num_frames"])

  def loader(self, keys, noise_keys, plan, min_frames):
    keys, noise_keys = list(keys), list(noise_keys)
    specs = [self.spec(k) for k in keys] + [self.spec(k) for k in noise_keys]

    def fetch(epoch, position):
      clip = plan.clip_at(int(epoch), int(position), self.frames_of, min_frames)
      arrays = [np.asarray(self.clips[clip][k]) for k in keys]
      if noise_keys:
        other = plan.noise_clip_at(int(epoch), int(position), clip)
        arrays += [np.asarray(self.clips[other][k]) for k in noise_keys]
      return [np.int64(clip)] + [_as_bytes(a) if s.dtype == tf.string else a for a, s in zip(arrays, specs)]

    def load(epoch, position):
      outs = tf.numpy_function(fetch, [epoch, position], [tf.int64] + [s.dtype for s in specs], stateful=False)
      for out, spec in zip(outs[1:], specs):
        out.set_shape(spec.shape)
      outs[0].set_shape(())
      element = {CLIP_INDEX: outs[0], "clip": dict(zip(keys, outs[1:1 + len(keys)]))}
      if noise_keys:
        element["noise"] = dict(zip(noise_keys, outs[1 + len(keys):]))
      return element

    return load

  def read_clips(self, indices, keys=None, decode_frames=True):
    for index in indices:
      clip = self.clips[int(index)]
      yield {k: np.asarray(clip[k]) for k in (keys or clip)}


class TfrecordReader:
  """Random access to the records of tfds tfrecord shards, by an index of record offsets.

  A TFRecord is [length u64][crc u32][data][crc u32]; the offsets of a shard are found by
  reading its record headers only (once, when a record of that shard is first asked for).
  """

  def __init__(self, instructions: Sequence[Any]):
    self._files = [str(i.filename) for i in instructions]
    self._skip = [int(i.skip) for i in instructions]
    takes = [int(i.take) for i in instructions]
    self._starts = np.concatenate([[0], np.cumsum(takes)]).astype(np.int64)
    self._offsets: list[np.ndarray | None] = [None] * len(self._files)
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return int(self._starts[-1])

  @staticmethod
  def _open(path: str):
    return open(path, "rb") if "://" not in path else tf.io.gfile.GFile(path, "rb")

  def _shard_offsets(self, shard: int) -> np.ndarray:
    offsets = self._offsets[shard]
    if offsets is None:
      rows, position = [], 0
      with self._open(self._files[shard]) as file:
        while True:
          file.seek(position)
          header = file.read(12)
          if len(header) < 12:
            break
          (length,) = struct.unpack("<Q", header[:8])
          rows.append((position + 12, length))
          position += 12 + length + 4
      offsets = np.asarray(rows, np.int64).reshape(-1, 2)
      with self._lock:
        self._offsets[shard] = offsets
    return offsets

  def read(self, index: int) -> bytes:
    if not 0 <= index < len(self):
      raise IndexError(f"record {index} of {len(self)}")
    shard = int(np.searchsorted(self._starts, index, side="right") - 1)
    offset, length = self._shard_offsets(shard)[index - self._starts[shard] + self._skip[shard]]
    with self._open(self._files[shard]) as file:
      file.seek(int(offset))
      data = file.read(int(length))
    if len(data) != length:
      raise TalkingHeadError(f"{self._files[shard]}: truncated record")
    return data


class ArrayRecordReader:
  """Random access to tfds array_record shards (tfds's data source, raw bytes)."""

  def __init__(self, builder, split: str):
    import tensorflow_datasets as tfds  # noqa: PLC0415

    self._source = builder.as_data_source(split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)

  def __len__(self) -> int:
    return len(self._source)

  def read(self, index: int) -> bytes:
    return self._source[int(index)]


def _num_frames(record: bytes) -> int:
  example = tf.train.Example.FromString(record)
  return int(example.features.feature["num_frames"].int64_list.value[0])


class RecordSource(ClipSource):
  """Serialized tfds examples read by index (`reader.read(i)` -> bytes) and decoded in numpy with
  the data set's FeaturesDict (`deserialize_example_np`: a fraction of a millisecond where
  TensorFlow's parser takes ~10 ms for a 6 MB clip), only the features asked for. Video frames
  stay encoded, (T,) JPEG bytes, for the samplers to decode the few they use."""

  def __init__(self, reader, features):
    import tensorflow_datasets as tfds  # noqa: PLC0415

    self.reader = reader
    self.feature_dict = features
    self.num_clips = len(reader)
    self.features = frozenset(features.keys())
    self._encoded_frames = "frames" in self.features and isinstance(features["frames"], tfds.features.Video)
    self._lengths: dict[int, int] = {}
    self._decoders: dict[tuple[str, ...], Callable[[bytes], list[np.ndarray]]] = {}

  def spec(self, key: str) -> tf.TensorSpec:
    """The decoded feature's TensorSpec (frames: (T,) encoded strings)."""
    if key == "frames" and self._encoded_frames:
      return tf.TensorSpec((None,), tf.string)
    feature = self.feature_dict[key]
    dtype = tf.string if np.dtype(feature.np_dtype).kind in "SUO" else tf.as_dtype(np.dtype(feature.np_dtype))
    return tf.TensorSpec(feature.shape, dtype)

  def decoder(self, keys: Sequence[str]) -> Callable[[bytes], list[np.ndarray]]:
    """record bytes -> [numpy value of each key] (strings as bytes)."""
    keys = tuple(keys)
    if keys not in self._decoders:
      import tensorflow_datasets as tfds  # noqa: PLC0415

      plain = [k for k in keys if not (k == "frames" and self._encoded_frames)]
      partial = tfds.decode.PartialDecoding({k: True for k in plain}).extract_features(self.feature_dict) if plain \
          else None
      specs = {k: self.spec(k) for k in keys}

      def decode(record: bytes) -> list[np.ndarray]:
        values = partial.deserialize_example_np(record) if partial is not None else {}
        out = []
        for key in keys:
          if key not in values:  # encoded frames: the JPEG bytes as stored
            stored = tf.train.Example.FromString(record).features.feature[key].bytes_list.value
            value = np.empty(len(stored), dtype=object)
            value[:] = list(stored)
          elif specs[key].dtype == tf.string:
            value = _as_bytes(np.asarray(values[key], dtype=object))
          else:
            value = np.asarray(values[key], dtype=specs[key].dtype.as_numpy_dtype)
          out.append(value)
        return out

      self._decoders[keys] = decode
    return self._decoders[keys]

  def frames_of(self, clip: int, stash: dict[int, bytes] | None = None) -> int:
    known = self._lengths.get(clip)
    if known is None:
      record = self.reader.read(clip)
      if stash is not None:
        stash[clip] = record
      known = self._lengths[clip] = _num_frames(record)
    return known

  def loader(self, keys, noise_keys, plan, min_frames):
    keys, noise_keys = list(keys), list(noise_keys)
    decode, decode_noise = self.decoder(keys), self.decoder(noise_keys)
    specs = [self.spec(k) for k in keys] + [self.spec(k) for k in noise_keys]

    def fetch(epoch, position):
      stash: dict[int, bytes] = {}
      clip = plan.clip_at(int(epoch), int(position), lambda c: self.frames_of(c, stash), min_frames)
      values = [np.int64(clip)] + decode(stash.get(clip) or self.reader.read(clip))
      if noise_keys:
        values += decode_noise(self.reader.read(plan.noise_clip_at(int(epoch), int(position), clip)))
      return values

    def load(epoch, position):
      outs = tf.numpy_function(fetch, [epoch, position], [tf.int64] + [s.dtype for s in specs], stateful=False)
      outs[0].set_shape(())
      for out, spec in zip(outs[1:], specs):
        out.set_shape(spec.shape)
      element = {CLIP_INDEX: outs[0], "clip": dict(zip(keys, outs[1:1 + len(keys)]))}
      if noise_keys:
        element["noise"] = dict(zip(noise_keys, outs[1 + len(keys):]))
      return element

    return load

  def read_clips(self, indices, keys=None, decode_frames=True):
    keys = list(keys or sorted(self.features))
    decode = self.decoder(keys)
    for index in indices:
      clip = dict(zip(keys, decode(self.reader.read(int(index)))))
      for key, value in clip.items():
        if isinstance(value, np.ndarray) and value.dtype == object and value.ndim == 0:
          clip[key] = value.item().decode()  # text features as str
      if "frames" in clip and decode_frames and clip["frames"].dtype != np.uint8:
        # The samplers' decoder (OpenCV), so that evaluation sees the pixels training saw
        # (TensorFlow's JPEG decoder differs by a few levels).
        clip["frames"] = common.decode_frames(clip["frames"], range(len(clip["frames"])))
      yield clip


def record_source(prepared, split: str) -> RecordSource:
  """The RecordSource of a split of a `data.tfds.PreparedDataset`."""
  import tensorflow_datasets as tfds  # noqa: PLC0415

  builder = prepared.builder
  if split not in builder.info.splits:
    raise TalkingHeadError(f"the prepared data set has no split {split!r} (it has {sorted(builder.info.splits)})")
  file_format = builder.info.file_format
  if file_format == tfds.core.file_adapters.FileFormat.TFRECORD:
    reader = TfrecordReader(builder.info.splits[split].file_instructions)
  elif file_format == tfds.core.file_adapters.FileFormat.ARRAY_RECORD:
    reader = ArrayRecordReader(builder, split)
  else:
    raise TalkingHeadError(f"cannot read {file_format} shards by index; prepare with tfrecord or array_record")
  return RecordSource(reader, builder.info.features)


# --- Samples and batches -----------------------------------------------------------------------


def stage_samples(examples: tf.data.Dataset, sampler: common.StageSampler,
                  num_parallel_calls: int = AUTOTUNE, keep: Sequence[str] = ()) -> tf.data.Dataset:
  """Maps elements {"clip": {feature: …}, "noise": {…} (if the sampler reads a second clip),
  "seed": int64 (4,) = (seed, epoch, slot, salt)} to the sampler's samples (numpy, in parallel,
  order kept). Keys in `keep` are carried over from the element."""
  keys, noise_keys = list(sampler.input_features), list(sampler.noise_features)
  spec = sampler.output_spec()
  names = list(spec)

  def run(*arrays):
    clip = dict(zip(keys, arrays[:len(keys)]))
    noise = dict(zip(noise_keys, arrays[len(keys):len(keys) + len(noise_keys)])) if noise_keys else None
    out = sampler.sample(clip, common.sample_rng(*[int(v) for v in arrays[-1]]), noise)
    values = []
    for name in names:
      shape, dtype = spec[name]
      value = np.ascontiguousarray(out[name], dtype=dtype)
      if value.shape != tuple(shape):
        raise TalkingHeadError(f"{sampler.stage} sampler made {name} of shape {value.shape}, not {tuple(shape)}")
      values.append(value)
    return values

  def apply(element):
    inputs = [element["clip"][k] for k in keys] + [element["noise"][k] for k in noise_keys] + [element["seed"]]
    outs = tf.numpy_function(run, inputs, [tf.as_dtype(spec[n][1]) for n in names], stateful=False)
    sample = {}
    for name, out in zip(names, outs):
      out.set_shape(spec[name][0])
      sample[name] = out
    sample.update({k: element[k] for k in keep})
    return sample

  return examples.map(apply, num_parallel_calls=num_parallel_calls, deterministic=True)


class StageInput:
  """A resumable iterator of this host's rows of a stage's global batches (`BatchIterator`).

  State: {"epoch", "position"} = batches of that epoch already taken. `set_state` starts the
  slot range at that batch: no record of the skipped batches is read.
  """

  def __init__(self, source: ClipSource, sampler: common.StageSampler, *, global_batch_size: int,
               process_index: int = 0, process_count: int = 1, seed: int = 0, shuffle: bool = True,
               samples_per_clip: int = 1, num_parallel_calls: int = AUTOTUNE, prefetch: int = AUTOTUNE,
               with_clip_index: bool = False):
    if global_batch_size % process_count:
      raise ConfigError(f"batch size {global_batch_size} does not divide over {process_count} hosts")
    if not 0 <= process_index < process_count:
      raise ConfigError(f"process index {process_index} is not in [0, {process_count})")
    missing = [k for k in (*sampler.input_features, *sampler.noise_features) if k not in source.features]
    if missing:
      raise TalkingHeadError(f"the {sampler.stage} input needs feature(s) {missing} the data set does not have")
    self.source, self.sampler = source, sampler
    self.global_batch_size = int(global_batch_size)
    self.local_batch_size = self.global_batch_size // process_count
    self.row_start = process_index * self.local_batch_size
    self.seed = int(seed)
    self.plan = common.EpochPlan(source.num_clips, samples_per_clip, seed, shuffle)
    self.steps_per_epoch = self.plan.num_slots // self.global_batch_size
    if self.steps_per_epoch < 1:
      raise TalkingHeadError(f"the split has {source.num_clips} clips × {samples_per_clip} samples, fewer than "
                             f"one batch of {self.global_batch_size}")
    self.num_parallel_calls, self.prefetch = num_parallel_calls, prefetch
    self.with_clip_index = bool(with_clip_index)
    self.epoch = 0
    self.position = 0
    self._iterator = None

  @property
  def element_spec(self):
    import jax  # noqa: PLC0415

    spec = {name: jax.ShapeDtypeStruct((self.local_batch_size, *shape), dtype)
            for name, (shape, dtype) in self.sampler.output_spec().items()}
    if self.with_clip_index:
      spec[CLIP_INDEX] = jax.ShapeDtypeStruct((self.local_batch_size,), np.int64)
    return spec

  def dataset(self, epoch: int, position: int) -> tf.data.Dataset:
    """This host's samples from batch `position` of `epoch` on, batched (endless)."""
    local, per_epoch = self.local_batch_size, self.steps_per_epoch * self.local_batch_size
    global_batch, row_start = self.global_batch_size, self.row_start
    seed, salt = self.seed & 0xFFFFFFFF, self.sampler.salt

    def slot(count):
      epoch_of = epoch + count // per_epoch
      within = count % per_epoch
      position_of = (within // local) * global_batch + row_start + within % local
      return epoch_of, position_of

    load = self.source.loader(self.sampler.input_features, self.sampler.noise_features, self.plan,
                              self.sampler.min_frames)

    def read(count):
      epoch_of, position_of = slot(count)
      element = load(epoch_of, position_of)
      element["seed"] = tf.stack([tf.constant(seed, tf.int64), epoch_of, position_of, tf.constant(salt, tf.int64)])
      return element

    counts = tf.data.Dataset.range(position * local, np.iinfo(np.int64).max)
    examples = counts.map(read, num_parallel_calls=self.num_parallel_calls, deterministic=True)
    keep = (CLIP_INDEX,) if self.with_clip_index else ()
    samples = stage_samples(examples, self.sampler, self.num_parallel_calls, keep=keep)
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_optimization.map_parallelization = True
    return samples.batch(local, drop_remainder=True).prefetch(self.prefetch).with_options(options)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._iterator is None:
      self._iterator = _NumpyIterator(self.dataset(self.epoch, self.position))
    try:
      batch = next(self._iterator)
    except tf.errors.OpError as error:
      # The message holds the Python error's traceback; its last "…Error: what" line says what.
      lines = [line.strip() for line in str(error.message).splitlines() if line.strip()]
      errors = [line.split("Error: ", 1)[1] for line in lines if "Error: " in line]
      raise TalkingHeadError(f"{self.sampler.stage} input: {(errors or lines or ['?'])[-1]}") from error
    self.position += 1
    if self.position >= self.steps_per_epoch:
      self.epoch, self.position = self.epoch + 1, 0
    return batch

  def close(self) -> None:
    """Drops the tf.data pipeline (its threads); iterating again rebuilds it at the same batch."""
    if self._iterator is not None:
      self._iterator.close()
      self._iterator = None

  def get_state(self) -> dict[str, Any]:
    return {"epoch": int(self.epoch), "position": int(self.position)}

  def set_state(self, state: Mapping[str, Any]) -> None:
    epoch, position = int(state["epoch"]), int(state["position"])
    if epoch < 0 or not 0 <= position <= self.steps_per_epoch:
      raise TalkingHeadError(f"input state {dict(state)} does not fit this input ({self.steps_per_epoch} batches "
                             "per epoch)")
    if position == self.steps_per_epoch:
      epoch, position = epoch + 1, 0
    self.epoch, self.position = epoch, position
    self.close()


# --- Stages ------------------------------------------------------------------------------------


def open_prepared(config):
  """The `data.tfds.PreparedDataset` that config.data names (data_dir, dataset, builder_config)."""
  from talkinghead_jax.data import tfds as tfds_lib  # noqa: PLC0415

  data = config.data
  data_dir = str(common.data_field(data, "data_dir", ""))
  builder_config = str(common.data_field(data, "builder_config", ""))
  if not data_dir:
    raise ConfigError("data.source is 'tfds': set data.data_dir (the folder of `talkinghead prepare --data-dir`) "
                      "and, where it holds several configs, data.builder_config (e.g. sidecar_64); see docs/data.md")
  return tfds_lib.open_dataset(data_dir, str(data.dataset), builder_config or None)


def artifacts_of(prepared) -> common.DatasetArtifacts:
  return common.DatasetArtifacts(canonical=np.asarray(prepared.canonical, np.float32), pca=prepared.pca,
                                 info=dict(prepared.info), features=frozenset(prepared.builder.info.features.keys()))


_POSE_STATS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def head_motion_pose_stats(config, train_source: ClipSource | None,
                           cache_key: tuple = ()) -> tuple[np.ndarray, np.ndarray]:
  """data.pose_mean/pose_std, or — where they are empty — the statistics of the train split's
  first `data.pose_stats_clips` clips (record order, so every host gets the same numbers)."""
  from talkinghead_jax.data import input_head_motion  # noqa: PLC0415

  data = config.data
  mean = tuple(common.data_field(data, "pose_mean", ()))
  std = tuple(common.data_field(data, "pose_std", ()))
  if mean and std:
    if len(mean) != 6 or len(std) != 6:
      raise ConfigError(f"data.pose_mean and data.pose_std need 6 values each, got {mean} and {std}")
    return np.asarray(mean, np.float32), np.asarray(std, np.float32)
  feature = str(common.data_field(data, "pose_feature", "pose"))
  clips = int(common.data_field(data, "pose_stats_clips", 256))
  key = (*cache_key, feature, clips)
  if cache_key and key in _POSE_STATS:
    return _POSE_STATS[key]
  if train_source is None:
    raise ConfigError("data.pose_mean/pose_std are empty and there is no train split to compute them from")
  poses = [clip[feature][:int(clip["num_frames"])]
           for clip in train_source.read_clips(range(min(clips, train_source.num_clips)), [feature, "num_frames"])]
  stats = input_head_motion.pose_statistics(poses)
  if cache_key:
    _POSE_STATS[key] = stats
  return stats


def make_sampler(config, stage: str, split: str, artifacts: common.DatasetArtifacts,
                 train_source: ClipSource | None = None, cache_key: tuple = ()) -> common.StageSampler:
  """The stage's sampler for `split` (see the input_<stage> modules)."""
  if stage == "expression":
    from talkinghead_jax.data.input_expression import ExpressionSampler  # noqa: PLC0415

    return ExpressionSampler(config, artifacts)
  if stage == "head_motion":
    from talkinghead_jax.data.input_head_motion import HeadMotionSampler  # noqa: PLC0415

    mean, std = head_motion_pose_stats(config, train_source, cache_key)
    return HeadMotionSampler(config, artifacts, mean, std)
  if stage == "unprojection":
    from talkinghead_jax.data.input_unprojection import UnprojectionSampler  # noqa: PLC0415

    return UnprojectionSampler(config, artifacts)
  if stage == "generator":
    from talkinghead_jax.data.input_generator import GeneratorSampler  # noqa: PLC0415

    return GeneratorSampler(config, artifacts, split)
  raise ConfigError(f"no input pipeline for stage {stage!r}; stages: {schema.STAGES}")


def make_input(config, stage: str, split: str = "train", process_index: int = 0, process_count: int = 1, *,
               source: ClipSource | None = None, artifacts: common.DatasetArtifacts | None = None,
               train_source: ClipSource | None = None, with_clip_index: bool = False) -> StageInput:
  """This host's input of `stage` on `split` of the prepared data set config.data names.

  `source`/`artifacts` (with `train_source` for Φ's pose statistics) replace the prepared data
  set, e.g. a `ListSource` of clips in memory.
  """
  cache_key: tuple = ()
  if source is None:
    prepared = open_prepared(config)
    source = record_source(prepared, split)
    artifacts = artifacts or artifacts_of(prepared)
    data = config.data
    cache_key = (str(data.data_dir), str(data.dataset), str(data.builder_config))
    if stage == "head_motion" and train_source is None:
      train_source = source if split == "train" else record_source(prepared, "train")
  elif artifacts is None:
    raise ConfigError("make_input with a source needs its artifacts")
  sampler = make_sampler(config, stage, split, artifacts, train_source or source, cache_key)
  data = config.data
  return StageInput(source, sampler, global_batch_size=int(config.batch_size), process_index=process_index,
                    process_count=process_count, seed=int(config.seed),
                    shuffle=bool(common.data_field(data, "shuffle", True)),
                    samples_per_clip=int(common.data_field(data, "samples_per_clip", 1)),
                    with_clip_index=with_clip_index)


def clip_records(config, split: str, keys: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
  """Every clip of `split` in stored order, decoded (frames uint8), plus `audio`: float32 mono at
  config.data.sample_rate (resampled from the highest stored rate when that rate is not stored)."""
  prepared = open_prepared(config)
  source = record_source(prepared, split)
  sample_rate = int(config.data.sample_rate)
  feature, rate = common.audio_source(sorted(source.features), sample_rate)
  wanted = None if keys is None else sorted({*keys, feature})
  for clip in source.read_clips(range(source.num_clips), wanted):
    clip["audio"] = common.clip_audio(clip[feature], rate, sample_rate)
    yield clip


__all__ = ["ArrayRecordReader", "ClipSource", "ListSource", "RecordSource", "StageInput", "TfrecordReader",
           "clip_records", "make_input", "make_sampler", "open_prepared", "record_source", "stage_samples"]
