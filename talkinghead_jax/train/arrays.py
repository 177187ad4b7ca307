"""The array-file input: training windows cut from one `.npz` of prepared sequences.

With `data.source = "arrays"` the trainer reads this instead of the prepared tfds data set
(`data.source = "tfds"`, `data/pipelines.py`); the trainer tests use it. The file holds
model-ready arrays (normalised, smoothed, windowed as the stage expects), sequences one after
another:

- `lengths`: `(N,)` int, the number of frames of each sequence;
- per-frame arrays: leading axis `sum(lengths)`, e.g. `audio (ΣT, 7, S)`, `pose (ΣT, 6)`;
- per-sequence arrays: leading axis `N`, e.g. `reference_pca (N, 20)`;
- optionally `noise`: 1-D float32 noise samples to mix into the audio (Ψ).

`write_sequence_arrays` writes such a file after checking it. An *example* is a window of
`window` consecutive frames of one sequence, starting at every `stride`-th frame. Each
epoch visits every example once, in an order drawn from `(seed, epoch)`; global batch `b`
of an epoch is examples `[b·B, (b+1)·B)` of that order and host `i` of `n` takes rows
`[i·B/n, (i+1)·B/n)` of it, so the batches do not depend on the number of hosts. A noise
segment for an example is drawn from `(seed, epoch, example)`. The iterator's state is
`{"epoch", "position"}` (batches already taken in that epoch): restoring it continues the
exact same sequence of batches.
"""

from __future__ import annotations

import os
import pathlib
import zipfile
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from talkinghead_jax.errors import InputError, TalkingHeadError
from talkinghead_jax.fileio import write_npz

LENGTHS = "lengths"
NOISE = "noise"


def write_sequence_arrays(path: str | os.PathLike, lengths: Sequence[int],
                          frame_arrays: Mapping[str, np.ndarray],
                          sequence_arrays: Mapping[str, np.ndarray] | None = None,
                          noise: np.ndarray | None = None) -> pathlib.Path:
  """Writes an array file (layout in the module docstring) after checking the shapes."""
  path = pathlib.Path(path)
  lengths = np.asarray(lengths, np.int64)
  if lengths.ndim != 1 or len(lengths) == 0 or np.any(lengths < 1):
    raise InputError(path, "lengths must be a non-empty 1-D array of positive frame counts")
  total = int(lengths.sum())
  arrays = {LENGTHS: lengths}
  for name, value in frame_arrays.items():
    value = np.asarray(value)
    if value.shape[:1] != (total,):
      raise InputError(path, f"per-frame array {name!r} has {value.shape[:1]} frames, lengths sum to {total}")
    arrays[name] = value
  for name, value in (sequence_arrays or {}).items():
    value = np.asarray(value)
    if value.shape[:1] != (len(lengths),):
      raise InputError(path, f"per-sequence array {name!r} has leading size {value.shape[:1]}, "
                       f"there are {len(lengths)} sequences")
    arrays[name] = value
  if noise is not None:
    noise = np.asarray(noise, np.float32)
    if noise.ndim != 1 or noise.size == 0:
      raise InputError(path, "noise must be a non-empty 1-D array of samples")
    arrays[NOISE] = noise
  return write_npz(path, arrays)


class ArraySequenceInput:
  """Resumable iterator of this host's rows of global batches of windows (see module doc)."""

  def __init__(self, path: str | os.PathLike, *, frame_keys: Sequence[str], sequence_keys: Sequence[str] = (),
               window: int, global_batch_size: int, process_index: int = 0, process_count: int = 1,
               seed: int = 0, shuffle: bool = True, stride: int = 1, noise_length: int = 0,
               frame_shapes: Mapping[str, tuple[int, ...]] | None = None):
    self.path = pathlib.Path(path)
    if global_batch_size % process_count:
      raise TalkingHeadError(f"batch size {global_batch_size} does not divide over {process_count} hosts")
    if window < 1 or stride < 1:
      raise TalkingHeadError(f"window ({window}) and stride ({stride}) must be >= 1")
    self.window = int(window)
    self.global_batch_size = int(global_batch_size)
    self.local_batch_size = global_batch_size // process_count
    self.row_start = process_index * self.local_batch_size
    self.seed = int(seed)
    self.shuffle = bool(shuffle)
    self.noise_length = int(noise_length)
    self._frames, self._sequences, self._noise, lengths = self._load(frame_keys, sequence_keys, frame_shapes or {})

    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    starts = [offset + np.arange(0, length - window + 1, stride) for offset, length in zip(offsets, lengths)]
    sequence_of = [np.full(len(s), i) for i, s in enumerate(starts)]
    self._example_start = np.concatenate(starts).astype(np.int64)
    self._example_sequence = np.concatenate(sequence_of).astype(np.int64)
    self.num_examples = len(self._example_start)
    if self.num_examples < global_batch_size:
      raise InputError(self.path, f"has {self.num_examples} windows of {window} frames, fewer than one "
                       f"batch of {global_batch_size}")
    self.steps_per_epoch = self.num_examples // global_batch_size
    self.epoch = 0
    self.position = 0
    self._order = self._epoch_order(0)

  def _load(self, frame_keys, sequence_keys, frame_shapes):
    if not self.path.is_file():
      raise InputError(self.path, "array file not found")
    try:
      with np.load(self.path, allow_pickle=False) as data:
        names = set(data.files)
        needed = [LENGTHS, *frame_keys, *sequence_keys] + ([NOISE] if self.noise_length else [])
        missing = [name for name in needed if name not in names]
        if missing:
          raise InputError(self.path, f"missing array(s) {missing}; it has {sorted(names)}")
        loaded = {name: data[name] for name in needed}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
      raise InputError(self.path, f"not a readable .npz array file: {error}") from error
    lengths = loaded.pop(LENGTHS).astype(np.int64)
    if lengths.ndim != 1 or np.any(lengths < 1):
      raise InputError(self.path, "'lengths' must be a 1-D array of positive frame counts")
    total = int(lengths.sum())
    frames = {}
    for name in frame_keys:
      value = loaded[name]
      if value.shape[:1] != (total,):
        raise InputError(self.path, f"per-frame array {name!r} has {value.shape[:1]} frames, 'lengths' sum to {total}")
      if name in frame_shapes and tuple(value.shape[1:]) != tuple(frame_shapes[name]):
        raise InputError(self.path, f"{name!r} frames have shape {value.shape[1:]}, the config expects "
                         f"{tuple(frame_shapes[name])}")
      frames[name] = _as_model_dtype(value)
    sequences = {}
    for name in sequence_keys:
      value = loaded[name]
      if value.shape[:1] != lengths.shape:
        raise InputError(self.path, f"per-sequence array {name!r} has leading size {value.shape[:1]}, "
                         f"there are {len(lengths)} sequences")
      sequences[name] = _as_model_dtype(value)
    noise = None
    if self.noise_length:
      noise = loaded[NOISE].astype(np.float32).reshape(-1)
      if noise.size == 0:
        raise InputError(self.path, "'noise' is empty")
    if np.all(lengths < self.window):
      raise InputError(self.path, f"every sequence is shorter than the window of {self.window} frames")
    return frames, sequences, noise, lengths

  def _epoch_order(self, epoch: int) -> np.ndarray:
    if not self.shuffle:
      return np.arange(self.num_examples)
    return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

  @property
  def element_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
    spec = {}
    for name, value in self._frames.items():
      spec[name] = jax.ShapeDtypeStruct((self.local_batch_size, self.window) + value.shape[1:], value.dtype)
    for name, value in self._sequences.items():
      spec[name] = jax.ShapeDtypeStruct((self.local_batch_size,) + value.shape[1:], value.dtype)
    if self.noise_length:
      spec[NOISE] = jax.ShapeDtypeStruct((self.local_batch_size, self.noise_length), np.float32)
    return spec

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self.position >= self.steps_per_epoch:
      self.epoch += 1
      self.position = 0
      self._order = self._epoch_order(self.epoch)
    first = self.position * self.global_batch_size + self.row_start
    examples = self._order[first:first + self.local_batch_size]
    self.position += 1
    frame_index = self._example_start[examples][:, None] + np.arange(self.window)
    batch = {name: value[frame_index] for name, value in self._frames.items()}
    sequence = self._example_sequence[examples]
    batch.update({name: value[sequence] for name, value in self._sequences.items()})
    if self.noise_length:
      batch[NOISE] = np.stack([self._noise_segment(example) for example in examples])
    return batch

  def _noise_segment(self, example: int) -> np.ndarray:
    rng = np.random.default_rng([self.seed, self.epoch, int(example), 1])
    start = int(rng.integers(0, self._noise.size))
    # A noise recording shorter than the segment repeats (wraps around).
    return np.take(self._noise, np.arange(start, start + self.noise_length), mode="wrap")

  def get_state(self) -> dict[str, Any]:
    return {"epoch": int(self.epoch), "position": int(self.position)}

  def set_state(self, state: Mapping[str, Any]) -> None:
    epoch, position = int(state["epoch"]), int(state["position"])
    if epoch < 0 or not 0 <= position <= self.steps_per_epoch:
      raise TalkingHeadError(f"{self.path}: input state {dict(state)} does not fit this file "
                             f"({self.steps_per_epoch} batches per epoch)")
    self.epoch, self.position = epoch, position
    self._order = self._epoch_order(epoch)


def _as_model_dtype(value: np.ndarray) -> np.ndarray:
  """float64 files become float32 (the models' dtype); other dtypes stay."""
  return value.astype(np.float32) if value.dtype == np.float64 else value


def _check_spec(spec, frame_keys, sequence_keys, noise_length, frame_shapes, stage) -> None:
  """The pipeline's batches have what the task asked the array input for."""
  for name in (*frame_keys, *sequence_keys, *([NOISE] if noise_length else [])):
    if name not in spec:
      raise TalkingHeadError(f"the {stage} pipeline gives no {name!r} (it gives {sorted(spec)})")
  for name, shape in (frame_shapes or {}).items():
    if tuple(spec[name].shape[2:]) != tuple(shape):
      raise TalkingHeadError(f"the {stage} pipeline gives {name!r} frames of shape {tuple(spec[name].shape[2:])}, "
                             f"the task expects {tuple(shape)}")
  if noise_length and spec[NOISE].shape[1] != noise_length:
    raise TalkingHeadError(f"the {stage} pipeline gives noise of {spec[NOISE].shape[1]} samples, the task expects "
                           f"{noise_length}")


def stage_input(config, stage: str, *, split: str, process_index: int, process_count: int,
                frame_keys: Sequence[str], sequence_keys: Sequence[str] = (), window: int,
                noise_length: int = 0, frame_shapes: Mapping[str, tuple[int, ...]] | None = None
                ):
  """The input a task asks for: the array file when `data.source == "arrays"`, the prepared
  tfds data set's pipeline (`data.pipelines.make_input`) when it is "tfds"."""
  source = config.data.source
  if source == "tfds":
    from talkinghead_jax.data import pipelines  # noqa: PLC0415 (TensorFlow only for this source)

    data = pipelines.make_input(config, stage, split, process_index, process_count)
    _check_spec(data.element_spec, frame_keys, sequence_keys, noise_length, frame_shapes, stage)
    return data
  if source == "synthetic":  # numpy-made batches for the generator and unprojection stages
    from talkinghead_jax.train import synthetic_input  # noqa: PLC0415
    return synthetic_input.SyntheticInput(config, stage, split, process_index, process_count)
  if source != "arrays":
    raise TalkingHeadError(f"data.source must be 'tfds', 'arrays' or 'synthetic', got {source!r}")
  if split != "train":
    raise TalkingHeadError(f"the array-file input has only a train split, not {split!r}")
  if not config.data.path:
    raise TalkingHeadError("data.source is 'arrays' but data.path is empty; set --set data.path=FILE.npz")
  return ArraySequenceInput(
      config.data.path, frame_keys=frame_keys, sequence_keys=sequence_keys, window=window,
      global_batch_size=config.batch_size, process_index=process_index, process_count=process_count,
      seed=config.seed, shuffle=config.data.shuffle, stride=config.data.window_stride,
      noise_length=noise_length, frame_shapes=frame_shapes)
