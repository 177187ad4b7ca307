"""Θ frame by frame: a prepared reference and a driving motion → the talking-head frames.

Θ sees at test time what its training input pipeline gave it (data/input_generator.py, the
test split: no augmentation), built here from the reference and the motion instead of one clip:

- the K references: K frames of the reference video, spread evenly over its usable (detected,
  not gap-filled) frames — frame ⌊(i + ½)·N/K⌋ of the N usable ones, i = 0 … K−1. Training
  drew its K from the first quarter of each clip (`data.ref_ratio`) because the rest of the
  clip supplied the targets; at inference the whole reference is a reference, and spreading
  the K over it gives the motion matcher the widest choice of head poses;
- their landmark images, and the target's (the motion's posed landmarks), drawn as the
  pipeline draws them (`geometry.landmarks.draw_landmark_images`, 1 px lines, the synthetic
  forehead);
- the matched reference: the motion matcher's test rule (`geometry.matching.nearest_reference`:
  the reference whose head rotation is nearest the target's);
- the 3D-aware image: the key frame's position map from the unprojection net, computed once
  (`train.tasks.generator.unproject_key_frame`), re-posed to each target pose and rendered by
  Θ's task (`GeneratorTask.prepare`, models/aware3d.py), with its landmark image (the key
  frame's frontal landmarks at the target pose) drawn on the host as the pipeline does;
- upstream's crop_ref (`model.crop_ref`): the target's mouth box (±5 px at 256 px around
  points 48, 50, 51, 54, 57, `input_generator.mouth_box_mask`) blacked out in the matched
  reference and the rendered face, inside `prepare`.

Θ runs in eval mode (batch-norm running statistics, no spectral-norm update) in jitted device
batches of `batch_size` frames: the last batch is padded with copies of its last frame, so
every batch has one shape and each program compiles once per process (the programs are cached
per config). Two programs per batch — the rendering (`prepare`) and Θ (`generate`) — so that
their times can be reported apart: `timings["render"]` (the host's landmark images, the
unprojection net once, the rendering) and `timings["generator"]` (Θ and the copy back).
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import time
from typing import Any, Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from talkinghead_jax.data import input_generator, schema
from talkinghead_jax.errors import ConfigError, InputError
from talkinghead_jax.geometry import landmarks as landmarks_lib
from talkinghead_jax.geometry import matching, rigid

# Per-frame entries of a batch that `frame_inputs` computes on the host; the rest of Θ's batch
# is the same for every frame (`ReferenceInputs`).
MATCH = "match"  # index (among the K) of the matched reference


def choose_references(valid: np.ndarray, k: int, path: Any = None) -> np.ndarray:
  """(K,) frame indices spread over the usable frames (module docstring); InputError naming
  `path` when there are fewer than K usable frames."""
  usable = np.flatnonzero(np.asarray(valid, bool))
  if k < 1:
    raise ConfigError(f"K (the number of references) must be >= 1, got {k}")
  if len(usable) < k:
    raise InputError(path, f"only {len(usable)} usable frames (with a detected face); {k} references need at "
                           f"least {k}")
  return usable[((np.arange(k) + 0.5) * len(usable) / k).astype(np.int64)]


class ReferenceInputs:
  """What Θ takes from the reference, the same for every output frame.

  Attributes:
    indices: (K,) the reference frames used.
    images: (K, S, S, 3) uint8; labels: (K, S, S, 1) float32 landmark images; poses: (K, 6).
    key_image: (S, S, 3) uint8 the key frame; key_pose (6,); key_front (68, 3) its frontal
      landmarks.
  """

  def __init__(self, reference, k: int):
    size = int(reference.frames.shape[1])
    self.indices = choose_references(reference.valid, k, reference.path)
    self.images = np.ascontiguousarray(reference.frames[self.indices])
    self.labels = landmarks_lib.draw_landmark_images(reference.landmarks[self.indices], size)[..., None]
    self.poses = np.asarray(reference.pose, np.float64)[self.indices]
    key = int(reference.key_frame)
    self.key_image = np.ascontiguousarray(reference.frames[key])
    self.key_pose = np.asarray(reference.pose[key], np.float64)
    self.key_front = np.asarray(reference.front[key], np.float64)
    self.size = size

  def constants(self) -> dict[str, np.ndarray]:
    """The per-sample arrays that do not change with the frame, in Θ's batch names (no batch axis)."""
    return {schema.REF_IMAGE: self.images, schema.REF_LABEL: self.labels,
            schema.REF_POSE: self.poses.astype(np.float32), schema.KEY_IMAGE: self.key_image,
            schema.KEY_POSE: self.key_pose.astype(np.float32), schema.KEY_FRONT: self.key_front.astype(np.float32)}


def frame_inputs(refs: ReferenceInputs, landmarks: np.ndarray, poses: np.ndarray) -> dict[str, np.ndarray]:
  """Θ's per-frame entries for n target frames (posed landmarks (n, 68, 3), poses (n, 6), Θ's
  pixels): target and rendered-face landmark images, target pose, mouth box and the index of
  the matched reference (`MATCH`), as the training pipeline computes them."""
  size = refs.size
  landmarks = np.asarray(landmarks, np.float64)
  poses = np.asarray(poses, np.float64)
  rendered = rigid.unfrontalize(refs.key_front[None], poses)  # the key face seen at each target pose
  labels = landmarks_lib.draw_landmark_images(np.concatenate([landmarks, rendered]), size)[..., None]
  margin = input_generator.MOUTH_BOX_MARGIN_256 * size / 256.0
  return {
      schema.TGT_LABEL: labels[:len(poses)], schema.RENDERED_LABEL: labels[len(poses):],
      schema.TGT_POSE: poses.astype(np.float32),
      schema.MOUTH_BOX: np.stack([input_generator.mouth_box_mask(p, size, margin) for p in landmarks])[..., None],
      MATCH: np.array([matching.nearest_reference(refs.poses, pose) for pose in poses], np.int32),
  }


def assemble_batch(constants: Mapping[str, Any], frames: Mapping[str, Any],
                   position_map: Any | None = None) -> dict[str, jax.Array]:
  """Θ's input batch (data/schema.py "generator") for n frames: the constants repeated, the
  matched reference gathered; `position_map` (P, P, 3) is the key frame's, under the batch name
  of a stored one. There is no target image at inference: `tgt_image` is zeros (only the
  training losses read it)."""
  count = frames[schema.TGT_POSE].shape[0]
  repeat = lambda x: jnp.broadcast_to(x, (count, *jnp.shape(x)))  # noqa: E731
  match = jnp.asarray(frames[MATCH])
  batch = {name: repeat(jnp.asarray(value)) for name, value in constants.items()}
  batch.update({name: jnp.asarray(value) for name, value in frames.items() if name != MATCH})
  batch[schema.WARPING_REF] = jnp.asarray(constants[schema.REF_IMAGE])[match]
  batch[schema.WARPING_REF_LABEL] = jnp.asarray(constants[schema.REF_LABEL])[match]
  size = batch[schema.TGT_LABEL].shape[1]
  batch[schema.TGT_IMAGE] = jnp.zeros((count, size, size, 3), jnp.uint8)
  batch[schema.TGT_LANDMARKS] = jnp.zeros((count, 68, 3), jnp.float32)  # not read by Θ's inputs
  if position_map is not None:
    batch[schema.KEY_POSITION_MAP] = repeat(jnp.asarray(position_map, jnp.float32))
  return batch


def to_uint8(images: jax.Array) -> jax.Array:
  """[-1, 1] → uint8, rounded (as the task's image summaries)."""
  return jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def inference_config(config: ml_collections.ConfigDict, k: int) -> ml_collections.ConfigDict:
  """Θ's config for inference: K references, and the key frame's position map handed in with
  the batch (computed once per video, not per frame)."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.num_references = int(k)
  config.data.augment = False
  if config.model.use_3d:
    config.model.position_source = "ground_truth"
  # Where the training run found its unprojection net does not matter here (and would keep two
  # copies of one set from sharing compiled programs).
  config.model.unprojection_checkpoint = ""
  return config


# (inference config, batch size, position map shape) whose programs `FrameSynthesizer._compile`
# has compiled in this process.
_COMPILED: set = set()


@functools.lru_cache(maxsize=4)
def _generator_programs(config_json: str):
  """(task, render program, Θ program) for an inference config (cached: one compile per shape)."""
  from talkinghead_jax.train import tasks  # noqa: PLC0415

  task = tasks.get_task(ml_collections.ConfigDict(json.loads(config_json)))

  @jax.jit
  def render(constants, frames, position_map):
    return task.prepare(assemble_batch(constants, frames, position_map), {})[0]

  @jax.jit
  def generate(variables, inputs):
    collections = {name: value for name, value in variables.items() if name != "params"}
    out, _ = task.generate(variables["params"], collections, inputs, train=False)
    return to_uint8(out["image"])

  return task, render, generate


@functools.lru_cache(maxsize=4)
def _unprojection_program(config_json: str, size: int):
  """The unprojection net of a config, jitted: (variables, key image (1, S, S, 3) uint8) →
  position map (1, P, P, 3) in Θ's pixels."""
  from talkinghead_jax.train import tasks  # noqa: PLC0415
  from talkinghead_jax.train.tasks import generator as generator_task  # noqa: PLC0415

  task = tasks.get_task(ml_collections.ConfigDict(json.loads(config_json)))

  @jax.jit
  def unproject(variables, key_image):
    image = key_image.astype(jnp.float32) / 127.5 - 1.0
    return generator_task.unproject_key_frame(task.model, task.size, variables, image, size)

  return unproject


def _config_json(config: ml_collections.ConfigDict) -> str:
  return json.dumps(config.to_dict(), sort_keys=True, default=str)


def check_references(checkpoints, k: int | None) -> int:
  """Θ's K for this run: `k`, or the set's K when None. Another K than Θ's is accepted only when
  Θ's weights fit a generator built for it (ConfigError otherwise)."""
  trained = int(checkpoints.num_references)
  if k is None or int(k) == trained:
    return trained
  k = int(k)
  if k < 1:
    raise ConfigError(f"--k must be >= 1, got {k}")
  from talkinghead_jax.infer import checkpoint_set  # noqa: PLC0415
  from talkinghead_jax.train import tasks  # noqa: PLC0415

  theta = checkpoints.generator
  config = inference_config(theta.config, k)
  weights = checkpoint_set.StageWeights(config=config, task=tasks.get_task(config), variables=theta.variables,
                                        step=theta.step)
  try:
    checkpoint_set._check_variables("generator", weights, checkpoints.path or "Θ")  # noqa: SLF001
  except ConfigError as error:
    raise ConfigError(f"--k {k}: this Θ was trained with K = {trained} and its weights do not fit {k} references "
                      f"({str(error).split('(', 1)[-1].removesuffix(')')})") from error
  return k


class FrameSynthesizer:
  """Θ and its rendering for one checkpoint set, on device; `synthesize` runs it over a motion."""

  def __init__(self, checkpoints, *, k: int | None = None, batch_size: int = 8):
    if int(batch_size) < 1:
      raise ConfigError(f"the batch size must be >= 1, got {batch_size}")
    self.checkpoints = checkpoints
    self.batch_size = int(batch_size)
    self.k = check_references(checkpoints, k)
    theta = checkpoints.generator
    self.config = inference_config(theta.config, self.k)
    self._programs_key = _config_json(self.config)
    self.task, self._render, self._generate = _generator_programs(self._programs_key)
    self.use_3d = bool(self.config.model.use_3d)
    if self.use_3d and checkpoints.unprojection is None:
      raise ConfigError("Θ uses the 3D-aware image, but the checkpoint set has no unprojection net")
    self.size = int(self.config.data.image_size)
    # On device once: the weights are reused by every batch.
    self.variables = jax.device_put(theta.variables)
    self._unprojection_variables = None
    if self.use_3d:
      unprojection = checkpoints.unprojection
      self._unproject = _unprojection_program(_config_json(unprojection.config), self.size)
      self._unprojection_variables = jax.device_put(unprojection.variables)

  def _compile(self, constants, frames, position_map, timings: dict) -> None:
    """Compiles the rendering and Θ side by side (XLA's compiler releases the GIL, and the
    compiled programs land in the jit caches the batches use), once per process and shape.
    Its wall time is shared between `timings["render"]` and `["generator"]` in proportion to
    each program's compile time."""
    key = (self._programs_key, self.batch_size, None if position_map is None else position_map.shape)
    if key in _COMPILED:
      return
    start = time.perf_counter()
    render = self._render.lower(constants, frames, position_map)
    inputs = jax.eval_shape(self._render, constants, frames, position_map)
    generate = self._generate.lower(self.variables, inputs)
    seconds = {}

    def compile_one(name, lowered):
      began = time.perf_counter()
      lowered.compile()
      seconds[name] = time.perf_counter() - began

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
      for future in [pool.submit(compile_one, "render", render), pool.submit(compile_one, "generator", generate)]:
        future.result()
    wall = time.perf_counter() - start
    total = sum(seconds.values()) or 1.0
    for name, value in seconds.items():
      timings[name] += wall * value / total
    _COMPILED.add(key)

  def key_position_map(self, key_image: np.ndarray) -> np.ndarray:
    """The key frame's position map (P, P, 3), Θ's pixels, from the unprojection net."""
    return np.asarray(self._unproject(self._unprojection_variables, np.asarray(key_image, np.uint8)[None])[0])

  def synthesize(self, reference, motion, *, timings: dict | None = None,
                 progress: Callable[[int], Any] | None = None) -> Iterator[np.ndarray]:
    """uint8 (b, S, S, 3) frame batches in order, one per `batch_size` frames of the motion."""
    timings = timings if timings is not None else {}
    for name in ("render", "generator"):
      timings.setdefault(name, 0.0)
    if reference.frames.shape[1:3] != (self.size, self.size):
      raise ConfigError(f"the reference was prepared at {reference.frames.shape[1]} px, Θ works at {self.size} px")
    start = time.perf_counter()
    refs = ReferenceInputs(reference, self.k)
    constants = jax.device_put(refs.constants())
    position_map = None
    if self.use_3d:
      position_map = jax.device_put(self.key_position_map(refs.key_image))
    timings["render"] += time.perf_counter() - start

    total = int(motion.pose.shape[0])
    for first in range(0, total, self.batch_size):
      count = min(self.batch_size, total - first)
      start = time.perf_counter()
      rows = np.minimum(np.arange(first, first + self.batch_size), total - 1)  # pad with the last frame
      frames = frame_inputs(refs, motion.landmarks[rows], motion.pose[rows])
      if first == 0:
        self._compile(constants, frames, position_map, timings)
        start = time.perf_counter()
      inputs = jax.block_until_ready(self._render(constants, frames, position_map))
      middle = time.perf_counter()
      images = np.asarray(self._generate(self.variables, inputs))[:count]
      timings["render"] += middle - start
      timings["generator"] += time.perf_counter() - middle
      if progress is not None:
        progress(count)
      yield images


def synthesize_frames(reference, motion, checkpoints, *, batch_size: int = 8, seed: int = 0,
                      timings: dict | None = None, progress: Callable[[int], Any] | None = None,
                      k: int | None = None) -> Iterator[np.ndarray]:
  """uint8 (b, S, S, 3) batches of the output frames, in order (module docstring).

  `progress(n)` is called after each batch with its number of frames. `seed` is accepted for
  the shared inference API; Θ at test time draws nothing (the test-rule matcher is
  deterministic and the references are spread, not sampled), so it changes nothing here.
  """
  del seed
  synthesizer = FrameSynthesizer(checkpoints, k=k, batch_size=batch_size)
  return synthesizer.synthesize(reference, motion, timings=timings, progress=progress)
