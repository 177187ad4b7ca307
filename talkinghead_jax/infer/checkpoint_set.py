"""Checkpoint sets: the four trained stages and the data set facts they share, in one directory.

A set is what `talkinghead generate` loads. `talkinghead export` makes one from the runs'
workdirs (each stage's latest checkpoint, or a step directory) and the prepared data set they
trained on:

    SET/manifest.json          format, stages (step, source run), sizes, sha256 of every file
    SET/<stage>/config.json    the run's resolved config (Θ's unprojection_checkpoint rewritten)
    SET/<stage>/variables.npz  the stage's model variables, keys "collection/module/…/name"
    SET/dataset.npz            canonical face (68, 3) at the crop size, Φ's pose mean and std,
                               crop size, fps
    SET/landmark_pca.npz       Ψ's landmark PCA (`geometry.pca.LandmarkPCA`'s file)

Only what inference needs is kept: Ψ's and the unprojection net's `model` group, Φ's `model`
group (not its discriminator), Θ's `generator` group (not its discriminator, nor the frozen VGG).
Φ's pose statistics are the ones it trained with: `data.pose_mean/std`, or where the config
leaves them empty, those of the train split (`eval.stage_head_motion.training_pose_statistics`,
the numbers the training pipeline computes).

`load_checkpoint_set` checks the checksums and that the stages fit together (every stage's
variables against the shapes its config builds, Ψ's output size against the PCA, Ψ's and Φ's
frame rate and audio rate, Θ's 3D-aware image against the unprojection net) and answers a
one-line `InputError`/`ConfigError` naming the file otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import uuid
from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np

from talkinghead_jax.data.schema import STAGES
from talkinghead_jax.errors import ConfigError, InputError
from talkinghead_jax.fileio import atomic_write_path, file_digest, flatten_tree, unflatten_tree, write_npz
from talkinghead_jax.geometry import pca as pca_lib

FORMAT = "talkinghead_jax.CheckpointSet/1"
MANIFEST = "manifest.json"
DATASET = "dataset.npz"
PCA_FILE = "landmark_pca.npz"
CONFIG_FILE = "config.json"
VARIABLES_FILE = "variables.npz"
# host_init's scheme for each stage's fresh weights (the models' own initialisers).
INIT_SCHEME = {"expression": "flax", "head_motion": "flax", "unprojection": "flax", "generator": "upstream"}
BUNDLED_NAME = "synthtalk_tiny"


@dataclasses.dataclass
class StageWeights:
  """One trained stage, as `eval.trained_stage.TrainedStage`: the Flax variables of its
  inference network are `variables` ({"params": …, "batch_stats": …, …}); `task.model` (Θ:
  `task.generator`) is the module."""

  config: ml_collections.ConfigDict
  task: Any
  variables: dict[str, Any]
  step: int


@dataclasses.dataclass
class CheckpointSet:
  """The stages and the prepared data set's facts (see the module docstring)."""

  path: pathlib.Path | None
  expression: StageWeights
  head_motion: StageWeights
  unprojection: StageWeights | None  # None when Θ does not use the 3D-aware image
  generator: StageWeights
  canonical: np.ndarray  # (68, 3) the prepared set's canonical face, crop px at crop_size
  pca: pca_lib.LandmarkPCA  # Ψ's landmark PCA (crop px at crop_size)
  pose_mean: np.ndarray  # (6,) Φ's pose normalisation
  pose_std: np.ndarray
  crop_size: int  # the prepared crop size: Ψ's and Φ's landmarks and poses are in it
  image_size: int  # Θ's S
  num_references: int  # Θ's K
  fps: int = 25
  detector: str = "sidecar"  # the landmark backend the set was prepared with

  @property
  def scale(self) -> float:
    """Θ's pixels per crop pixel (image_size / crop_size): Θ's inputs are the prepared crops
    resized to its size, landmarks and pose translations scaled alike (data/input_generator.py)."""
    return self.image_size / self.crop_size

  def stage(self, name: str) -> StageWeights | None:
    if name not in STAGES:
      raise ValueError(f"unknown stage {name!r}; stages: {STAGES}")
    return getattr(self, name)


# --- Variables as flat arrays --------------------------------------------------------------------


def _shapes(tree: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
  """{"a/b/c": shape} of a nested dict of arrays or `jax.ShapeDtypeStruct`s."""
  return {name: tuple(int(n) for n in leaf.shape) for name, leaf in flatten_tree(tree).items()}


# --- Building the tasks --------------------------------------------------------------------------


def _task(stage: str, config: ml_collections.ConfigDict):
  from talkinghead_jax.train import tasks  # noqa: PLC0415

  if config.get("stage") != stage:
    raise ConfigError(f"the config is of stage {config.get('stage')!r}, not {stage!r}")
  return tasks.get_task(config)


def _abstract_variables(stage: str, task, key=None, concrete: bool = False) -> dict[str, Any]:
  """The inference network's variables as `jax.ShapeDtypeStruct`s (nothing computed), or with
  `concrete` their initial values from the model's initialisers and `key`."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  data = task.config.data
  key = jax.random.key(0) if key is None else key
  shapes = (lambda init: init()) if concrete else jax.eval_shape
  if stage == "expression":
    samples = task.samples_per_frame
    audio = jnp.zeros((1, 1, int(data.context_frames), samples), jnp.float32)
    reference = jnp.zeros((1, int(task.config.model.num_coeffs)), jnp.float32)
    return shapes(lambda: task.model.init({"params": key}, audio, reference, train=False))
  if stage == "head_motion":
    window = task.max_observed + task.max_predicted
    samples = int(data.sample_rate) // int(data.get("fps", 25))
    audio = jnp.zeros((1, window, int(data.context_frames), samples), jnp.float32)
    pose = jnp.zeros((1, window, 6), jnp.float32)
    lengths = jnp.array([task.max_observed]), jnp.array([task.max_predicted])
    return shapes(lambda: task.model.init({"params": key}, audio, pose, *lengths,
                                                  max_observed=task.max_observed, train=False))
  if stage == "unprojection":
    image = jnp.zeros((1, task.size, task.size, 3), jnp.float32)
    return shapes(lambda: task.model.init(key, image))
  if stage == "generator":
    g_batch, _ = task._dummy_inputs()  # Θ's own dummy inputs for its K and size
    return shapes(lambda: task.generator.init(key, g_batch))
  raise ValueError(f"unknown stage {stage!r}")


_ABSTRACT_CACHE: dict[tuple[str, str], dict[str, Any]] = {}


def _cached_abstract_variables(stage: str, task) -> dict[str, Any]:
  """`_abstract_variables`, traced once per (stage, config): loading a set again, or another set
  of the same configs, does not trace the networks again."""
  from talkinghead_jax import config as config_lib  # noqa: PLC0415

  key = (stage, config_lib.to_json(task.config))
  if key not in _ABSTRACT_CACHE:
    _ABSTRACT_CACHE[key] = _abstract_variables(stage, task)
  return _ABSTRACT_CACHE[key]


def _attach_unprojection(generator_task, unprojection: StageWeights | None) -> None:
  """Hands Θ's task the set's unprojection net, so `task.prepare` needs no training workdir
  (and loads no perceptual VGG, which only the losses use)."""
  if unprojection is None or not generator_task.use_3d:
    return
  generator_task._unprojection = (unprojection.task.model, int(unprojection.task.size))
  generator_task._frozen = {"unprojection": unprojection.variables}


# --- Export --------------------------------------------------------------------------------------


def _same_tree(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
  flat_a, flat_b = flatten_tree(a), flatten_tree(b)
  return flat_a.keys() == flat_b.keys() and all(np.array_equal(flat_a[k], flat_b[k]) for k in flat_a)


def _write_stage(folder: pathlib.Path, config: ml_collections.ConfigDict, variables: Mapping[str, Any]) -> None:
  from talkinghead_jax import config as config_lib  # noqa: PLC0415

  folder.mkdir(parents=True, exist_ok=True)
  (folder / CONFIG_FILE).write_text(config_lib.to_json(config) + "\n")
  write_npz(folder / VARIABLES_FILE, flatten_tree(variables))


def save_checkpoint_set(checkpoints: CheckpointSet, out_dir: str | os.PathLike, *, sources: Mapping[str, str] = {},
                        overwrite: bool = False, extra: Mapping[str, Any] = {}) -> pathlib.Path:
  """Writes `checkpoints` as a set directory, atomically (a temporary directory renamed into
  place). `sources`: the run each stage came from, for the manifest."""
  out = pathlib.Path(out_dir)
  if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
    raise InputError(out, "already exists and is not empty (choose another --out, or pass --force)")
  temporary = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.tmp"
  temporary.mkdir(parents=True)
  try:
    stages = {}
    for stage in STAGES:
      weights = checkpoints.stage(stage)
      if weights is None:
        continue
      config = ml_collections.ConfigDict(weights.config.to_dict())
      if stage == "generator" and checkpoints.unprojection is not None:
        # Θ's frozen unprojection net lives in the set: a path relative to the set directory.
        config.model.position_source = "unprojection"
        config.model.unprojection_checkpoint = "unprojection"
      _write_stage(temporary / stage, config, weights.variables)
      stages[stage] = {"step": int(weights.step), "source": str(sources.get(stage, "")),
                       "files": [f"{stage}/{CONFIG_FILE}", f"{stage}/{VARIABLES_FILE}"]}
    write_npz(temporary / DATASET, {
        "canonical": np.asarray(checkpoints.canonical, np.float32),
        "pose_mean": np.asarray(checkpoints.pose_mean, np.float32),
        "pose_std": np.asarray(checkpoints.pose_std, np.float32),
        "crop_size": np.asarray(int(checkpoints.crop_size), np.int64),
        "fps": np.asarray(int(checkpoints.fps), np.int64),
    })
    checkpoints.pca.save(temporary / PCA_FILE)
    files = sorted(str(p.relative_to(temporary)) for p in temporary.rglob("*") if p.is_file())
    manifest = {
        "format": FORMAT,
        "stages": stages,
        "crop_size": int(checkpoints.crop_size),
        "image_size": int(checkpoints.image_size),
        "num_references": int(checkpoints.num_references),
        "fps": int(checkpoints.fps),
        "detector": str(checkpoints.detector),
        **dict(extra),
        "sha256": {name: file_digest(temporary / name, "sha256") for name in files},
    }
    with atomic_write_path(temporary / MANIFEST) as path:
      path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if out.exists():
      trash = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.old"
      os.replace(out, trash)
      os.replace(temporary, out)
      shutil.rmtree(trash, ignore_errors=True)
    else:
      os.replace(temporary, out)
  except BaseException:
    shutil.rmtree(temporary, ignore_errors=True)
    raise
  return out


def export_checkpoint_set(out_dir: str | os.PathLike, *, expression, head_motion, generator, unprojection=None,
                          data_dir, builder_config: str = "", overwrite: bool = False) -> pathlib.Path:
  """Runs' workdirs (or step directories) → one self-contained set directory (module docstring).

  `unprojection`: the unprojection run Θ used; None takes Θ's `model.unprojection_checkpoint`.
  `data_dir`/`builder_config`: the prepared data set the runs trained on (canonical face, PCA,
  crop size, and Φ's pose statistics when its config has none). Reads TensorFlow's data set, so
  it runs where `talkinghead prepare` ran.
  """
  from talkinghead_jax.eval import stage_head_motion, trained_stage  # noqa: PLC0415

  runs = {"expression": trained_stage.read_run(expression, "expression"),
          "head_motion": trained_stage.read_run(head_motion, "head_motion"),
          "generator": trained_stage.read_run(generator, "generator")}
  g_config = runs["generator"].config
  use_3d = bool(g_config.model.get("use_3d", True))
  if use_3d:
    source = unprojection or str(g_config.model.get("unprojection_checkpoint", "") or "")
    if not source:
      raise ConfigError(f"{runs['generator'].workdir}: Θ uses the 3D-aware image but names no unprojection run; "
                        "pass --unprojection RUN")
    if not pathlib.Path(source).exists():
      raise InputError(source, "Θ's unprojection run is not here; pass --unprojection RUN")
    runs["unprojection"] = trained_stage.read_run(source, "unprojection")
    frozen = runs["generator"].collections.get("unprojection")
    if frozen is not None and not _same_tree(frozen, runs["unprojection"].model_variables()):
      raise ConfigError(f"{runs['unprojection'].workdir}: not the unprojection net Θ trained with "
                        f"({runs['generator'].workdir} holds other weights)")
  overrides = [f"data.builder_config={builder_config}"] if builder_config else []
  dataset = str(runs["expression"].config.data.get("dataset", ""))
  for stage in ("head_motion", "generator"):
    other = str(runs[stage].config.data.get("dataset", ""))
    if other != dataset:
      raise ConfigError(f"{runs[stage].workdir}: trained on data set {other!r}, Ψ on {dataset!r}")
  psi_config = trained_stage.evaluation_config(runs["expression"].config, data_dir, overrides)
  prepared = trained_stage.dataset_artifacts(psi_config)
  phi_config = trained_stage.evaluation_config(runs["head_motion"].config, data_dir, overrides)
  normalisation = stage_head_motion.pose_normalisation(
      phi_config, stage_head_motion.training_pose_statistics(phi_config))

  weights = {}
  for stage, run in runs.items():
    weights[stage] = StageWeights(config=run.config, task=_task(stage, run.config),
                                  variables=run.model_variables(), step=run.step)
    _check_variables(stage, weights[stage], run.workdir)
  checkpoints = CheckpointSet(
      path=None, expression=weights["expression"], head_motion=weights["head_motion"],
      unprojection=weights.get("unprojection"), generator=weights["generator"],
      canonical=np.asarray(prepared.canonical, np.float32), pca=prepared.pca,
      pose_mean=normalisation.mean, pose_std=normalisation.std, crop_size=int(prepared.info["size"]),
      image_size=int(g_config.data.image_size), num_references=int(g_config.data.num_references),
      fps=int(prepared.info.get("fps", 25)), detector=str(prepared.info.get("detector", "")))
  _check_compatible(checkpoints, pathlib.Path(out_dir))
  return save_checkpoint_set(
      checkpoints, out_dir, sources={stage: str(run.workdir) for stage, run in runs.items()}, overwrite=overwrite,
      extra={"dataset": dataset, "builder_config": str(psi_config.data.get("builder_config", "")),
             "data_dir": str(data_dir)})


# --- Loading and checking ------------------------------------------------------------------------


def bundled_path() -> pathlib.Path:
  """The set that ships with the package (talkinghead_jax/assets/synthtalk_tiny)."""
  return pathlib.Path(__file__).resolve().parent.parent / "assets" / BUNDLED_NAME


def _read_json(path: pathlib.Path) -> dict[str, Any]:
  if not path.is_file():
    raise InputError(path, "missing from the checkpoint set")
  try:
    return json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise InputError(path, f"not valid JSON ({error})") from error


def _read_npz(path: pathlib.Path) -> dict[str, np.ndarray]:
  if not path.is_file():
    raise InputError(path, "missing from the checkpoint set")
  try:
    with np.load(path, allow_pickle=False) as archive:
      return {name: archive[name] for name in archive.files}
  except (OSError, ValueError, EOFError) as error:
    raise InputError(path, f"unreadable ({type(error).__name__}: {error})") from error


def _check_checksums(root: pathlib.Path, manifest: Mapping[str, Any]) -> None:
  for name, expected in sorted(dict(manifest.get("sha256") or {}).items()):
    path = root / name
    if not path.is_file():
      raise InputError(path, "missing from the checkpoint set (listed in manifest.json)")
    if file_digest(path, "sha256") != expected:
      raise InputError(path, "checksum differs from manifest.json (corrupt or edited file)")


def _check_variables(stage: str, weights: StageWeights, where: pathlib.Path) -> None:
  """The variables have exactly the shapes the stage's config builds."""
  expected = _shapes(_cached_abstract_variables(stage, weights.task))
  found = _shapes(weights.variables)
  if expected != found:
    missing = sorted(expected.keys() - found.keys())
    extra = sorted(found.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
    detail = (f"{wrong[0]} is {found[wrong[0]]}, the config builds {expected[wrong[0]]}" if wrong else
              f"missing {missing[0]}" if missing else f"unexpected {extra[0]}")
    raise ConfigError(f"{where}: the variables do not fit the stage's config ({detail})")


def _check_compatible(checkpoints: CheckpointSet, root: pathlib.Path) -> None:
  """The checks between stages (module docstring); each error names the file at fault."""
  psi, phi, theta = checkpoints.expression, checkpoints.head_motion, checkpoints.generator
  psi_file, phi_file = root / "expression" / CONFIG_FILE, root / "head_motion" / CONFIG_FILE
  theta_file = root / "generator" / CONFIG_FILE
  components = int(checkpoints.pca.components_.shape[0])
  if int(psi.config.model.num_coeffs) != components:
    raise ConfigError(f"{psi_file}: Ψ predicts {psi.config.model.num_coeffs} PCA coefficients, the set's landmark "
                      f"PCA ({root / PCA_FILE}) has {components}")
  if tuple(checkpoints.pca.feature_shape_ or ()) not in ((68, 2), (68, 3)):
    raise ConfigError(f"{root / PCA_FILE}: a landmark PCA of (68, 2|3) points is needed, got "
                      f"{checkpoints.pca.feature_shape_}")
  for weights, path in ((psi, psi_file), (phi, phi_file)):
    data = weights.config.data
    fps = int(data.get("fps", 25))
    if fps != checkpoints.fps:
      raise ConfigError(f"{path}: trained at {fps} fps, the set's frames are {checkpoints.fps} fps")
    if int(data.sample_rate) % fps:
      raise ConfigError(f"{path}: audio rate {data.sample_rate} Hz is not a whole number of samples per frame")
  if checkpoints.pose_mean.shape != (6,) or checkpoints.pose_std.shape != (6,) or np.any(checkpoints.pose_std <= 0):
    raise ConfigError(f"{root / DATASET}: Φ's pose mean and std must be 6 numbers each, std > 0")
  if np.asarray(checkpoints.canonical).shape != (68, 3):
    raise ConfigError(f"{root / DATASET}: the canonical face must be (68, 3)")
  if checkpoints.crop_size < 8:
    raise ConfigError(f"{root / DATASET}: crop size {checkpoints.crop_size} is too small")
  if int(theta.config.data.image_size) != checkpoints.image_size or \
      int(theta.config.data.num_references) != checkpoints.num_references:
    raise ConfigError(f"{theta_file}: Θ's image size / K differ from manifest.json's")
  use_3d = bool(theta.config.model.get("use_3d", True))
  if use_3d and checkpoints.unprojection is None:
    raise ConfigError(f"{theta_file}: Θ uses the 3D-aware image, but the set has no unprojection stage")
  if checkpoints.unprojection is not None:
    size = int(checkpoints.unprojection.config.data.image_size)
    downsamples = int(checkpoints.unprojection.config.model.num_downsamples)
    if size % 2 ** downsamples:
      raise ConfigError(f"{root / 'unprojection' / CONFIG_FILE}: image size {size} is not divisible by "
                        f"2^{downsamples}")


def _stage_from_folder(root: pathlib.Path, stage: str, step: int) -> StageWeights:
  folder = root / stage
  config = ml_collections.ConfigDict(_read_json(folder / CONFIG_FILE))
  if stage == "generator" and config.model.get("position_source") == "unprojection" and \
      config.model.get("use_3d", True):
    config.model.unprojection_checkpoint = str(root / "unprojection")
  try:
    task = _task(stage, config)
  except (ConfigError, ValueError, KeyError, AttributeError, TypeError) as error:
    raise ConfigError(f"{folder / CONFIG_FILE}: {error}") from error
  variables = unflatten_tree(_read_npz(folder / VARIABLES_FILE))
  return StageWeights(config=config, task=task, variables=variables, step=step)


def load_checkpoint_set(path: str | os.PathLike | None = None) -> CheckpointSet:
  """A set directory (None: the bundled one) → `CheckpointSet`, checked (module docstring)."""
  if path is None:
    root = bundled_path()
    if not (root / MANIFEST).is_file():
      raise ConfigError(f"{root}: no bundled checkpoint set in this installation; pass --checkpoints DIR (a set "
                        "made by `talkinghead export`, docs/generate.md)")
  else:
    root = pathlib.Path(path)
    if not root.is_dir():
      raise InputError(root, "checkpoint set not found (a directory made by `talkinghead export`)")
  manifest = _read_json(root / MANIFEST)
  if manifest.get("format") != FORMAT:
    raise InputError(root / MANIFEST, f"not a checkpoint set manifest (format {manifest.get('format')!r}, "
                                      f"expected {FORMAT!r})")
  _check_checksums(root, manifest)
  stages = dict(manifest.get("stages") or {})
  for stage in ("expression", "head_motion", "generator"):
    if stage not in stages:
      raise InputError(root / MANIFEST, f"the set has no {stage} stage")
  weights = {stage: _stage_from_folder(root, stage, int(entry.get("step", 0))) for stage, entry in stages.items()
             if stage in STAGES}
  dataset = _read_npz(root / DATASET)
  for name in ("canonical", "pose_mean", "pose_std", "crop_size"):
    if name not in dataset:
      raise InputError(root / DATASET, f"lacks {name!r}")
  checkpoints = CheckpointSet(
      path=root, expression=weights["expression"], head_motion=weights["head_motion"],
      unprojection=weights.get("unprojection"), generator=weights["generator"],
      canonical=dataset["canonical"].astype(np.float32), pca=pca_lib.LandmarkPCA.load(root / PCA_FILE),
      pose_mean=dataset["pose_mean"].astype(np.float32), pose_std=dataset["pose_std"].astype(np.float32),
      crop_size=int(dataset["crop_size"]), image_size=int(manifest.get("image_size", 0)),
      num_references=int(manifest.get("num_references", 0)), fps=int(dataset.get("fps", manifest.get("fps", 25))),
      detector=str(manifest.get("detector", "")))
  _check_compatible(checkpoints, root)
  for stage in STAGES:  # after the cheap checks: this traces every network
    if checkpoints.stage(stage) is not None:
      _check_variables(stage, checkpoints.stage(stage), root / stage / VARIABLES_FILE)
  _attach_unprojection(checkpoints.generator.task, checkpoints.unprojection)
  return checkpoints


# --- Fresh sets for benchmarks and tests ---------------------------------------------------------


def _fresh_variables(stage: str, task, seed: list[int]) -> dict[str, Any]:
  """Initial variables drawn on the host (`train.host_init`: no compilation), or by the model's
  own initialisers under jit where host_init has no rule for a leaf."""
  import jax  # noqa: PLC0415

  from talkinghead_jax.train import host_init  # noqa: PLC0415

  abstract = _cached_abstract_variables(stage, task)
  try:
    return host_init.initialize(abstract, INIT_SCHEME[stage], seed, prefix=stage)
  except ValueError:
    key = jax.random.key(int(np.random.default_rng(seed).integers(2**31)))
    return jax.jit(lambda k: _abstract_variables(stage, task, key=k, concrete=True))(key)


def _config_spec(stage: str, variant: str) -> str:
  """"synthtalk_tiny" → "configs/<stage>.py:synthtalk_tiny"; a full spec stays as it is."""
  if ":" in variant or variant.endswith(".py"):
    return variant
  return f"configs/{stage}.py:{variant}"


def synthtalk_face_statistics(crop_size: int, identities: int = 8, expressions: int = 24, components: int = 20,
                              seed: int = 0) -> tuple[np.ndarray, pca_lib.LandmarkPCA]:
  """(canonical face, landmark PCA) from SynthTalk's generator alone, with no data set: its
  template face placed as `preprocess.fit_canonical` places a prepared set's, and the PCA of
  `identities` × `expressions` frontal faces with random mouth and blink values in [0, 1]."""
  from talkinghead_jax.data import preprocess, synthetic  # noqa: PLC0415 (numpy only)
  from talkinghead_jax.data import synthtalk_head as head  # noqa: PLC0415

  template = synthetic.canonical_face(crop_size).astype(np.float64)
  canonical = preprocess.place_in_crop(template, crop_size).astype(np.float64)
  # place_in_crop scales and shifts: recover the map to carry the frontal faces along.
  scale = np.linalg.norm(canonical - canonical.mean(0)) / np.linalg.norm(template - template.mean(0))
  shift = canonical.mean(0) - scale * template.mean(0)
  rng = np.random.default_rng(seed)
  points = head.material_points(head.LANDMARK_U, head.LANDMARK_V)
  fronts = []
  for index in range(identities):
    identity = synthetic.make_identity(seed, index)
    expression = rng.uniform(0.0, 1.0, (expressions, len(head.EXPRESSION_NAMES)))
    fronts.append(synthetic.frontal_points(identity, points, expression, crop_size) * scale + shift)
  pca = preprocess.fit_landmark_pca(fronts, num_components=components, frames_per_clip=expressions)
  return canonical.astype(np.float32), pca


def initialized_checkpoint_set(variants: Mapping[str, str] = {}, seed: int = 0,
                               overrides: Mapping[str, Sequence[str]] = {}, *,
                               crop_size: int | None = None) -> CheckpointSet:
  """A set of fresh (untrained) weights from configs, for `bench generate` and tests.

  `variants`: per stage a config spec ("configs/generator.py:vox_k8") or a variant name of
  the stage's config file ("synthtalk_tiny", the default); `overrides`: per stage `--set`
  overrides. Canonical face and PCA from SynthTalk's generator (`synthtalk_face_statistics`)
  at `crop_size` (default Θ's image size); Φ's pose statistics its config's `data.pose_mean/std`,
  where empty the identity (mean 0, std 1).
  """
  import jax  # noqa: PLC0415

  from talkinghead_jax import config as config_lib  # noqa: PLC0415

  unknown = sorted(set(variants) - set(STAGES)) + sorted(set(overrides) - set(STAGES))
  if unknown:
    raise ConfigError(f"unknown stage(s) {unknown}; stages: {STAGES}")
  configs = {stage: config_lib.load(_config_spec(stage, variants.get(stage, "synthtalk_tiny")),
                                    list(overrides.get(stage, ()))) for stage in STAGES}
  theta = configs["generator"].model
  use_3d = bool(theta.use_3d)
  if use_3d:
    theta.position_source = "unprojection"
    theta.unprojection_checkpoint = "(initialized)"
  else:
    del configs["unprojection"]
  weights = {}
  for index, (stage, config) in enumerate(configs.items()):
    task = _task(stage, config)
    variables = _fresh_variables(stage, task, [seed, index])
    weights[stage] = StageWeights(config=config, task=task, variables=jax.tree.map(np.asarray, variables), step=0)
  image_size = int(configs["generator"].data.image_size)
  crop_size = int(crop_size or image_size)
  num_coeffs = int(configs["expression"].model.num_coeffs)
  canonical, pca = synthtalk_face_statistics(crop_size, components=num_coeffs, seed=seed)
  phi_data = configs["head_motion"].data
  pose_mean = np.asarray(phi_data.get("pose_mean", None) or np.zeros(6), np.float32)
  pose_std = np.asarray(phi_data.get("pose_std", None) or np.ones(6), np.float32)
  checkpoints = CheckpointSet(
      path=None, expression=weights["expression"], head_motion=weights["head_motion"],
      unprojection=weights.get("unprojection"), generator=weights["generator"], canonical=canonical, pca=pca,
      pose_mean=pose_mean, pose_std=pose_std, crop_size=crop_size,
      image_size=image_size, num_references=int(configs["generator"].data.num_references),
      fps=int(configs["expression"].data.get("fps", 25)), detector="sidecar")
  _check_compatible(checkpoints, pathlib.Path("(initialized)"))
  _attach_unprojection(checkpoints.generator.task, checkpoints.unprojection)
  return checkpoints


def describe(checkpoints: CheckpointSet) -> str:
  """One line: where the set is from and its sizes."""
  where = str(checkpoints.path) if checkpoints.path is not None else "fresh weights"
  steps = ", ".join(f"{stage} {checkpoints.stage(stage).step}" for stage in STAGES if checkpoints.stage(stage))
  return (f"{where}: Θ {checkpoints.image_size} px, K = {checkpoints.num_references}, "
          f"crop {checkpoints.crop_size} px, steps {steps}")


__all__ = ["STAGES", "CheckpointSet", "StageWeights", "bundled_path", "describe", "export_checkpoint_set",
           "initialized_checkpoint_set", "load_checkpoint_set", "save_checkpoint_set"]
