"""A trained sequence learner (Ψ or Φ) and its test clips, as the stage evaluators need them.

`load_trained_stage(path)` reads a run's checkpoint (`train.loop.load_checkpoint`) and its
resolved config (`<workdir>/config.json`) and rebuilds the stage's model through its training
task, so evaluation builds exactly the network that was trained. `path` is the run's workdir
(latest checkpoint) or one step directory `<workdir>/checkpoints/<step>`.

`clip_source` and `dataset_artifacts` are the two places where evaluation reads prepared data (the
tfds shards of `talkinghead prepare`, through `data.pipelines.clip_records` and
`data.tfds.open_dataset`); tests replace them with synthetic clips.
"""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
from typing import Any, Iterable, Iterator, Mapping, Sequence

import ml_collections
import numpy as np

from talkinghead_jax.errors import ConfigError, InputError, TalkingHeadError


@dataclasses.dataclass
class TrainedStage:
  """A stage's model with the variables of one checkpoint."""

  config: ml_collections.ConfigDict
  task: Any  # train.task.Task: `.model` is the Flax module
  variables: dict[str, Any]  # {"params": the model group's params, **collections}
  step: int
  workdir: pathlib.Path


def locate_checkpoint(path: str | pathlib.Path) -> tuple[pathlib.Path, int | None]:
  """(workdir, step or None for the latest) from a workdir or a checkpoint step directory."""
  path = pathlib.Path(path)
  if (path / "checkpoints").is_dir():
    return path, None
  if path.is_dir() and path.parent.name == "checkpoints" and path.name.isdigit():
    return path.parent.parent, int(path.name)
  raise InputError(path, "not a training workdir (no checkpoints/ inside) nor a checkpoint step "
                         "directory (<workdir>/checkpoints/<step>)")


# The training group that holds each stage's inference network (Θ's discriminator is not needed).
MODEL_GROUP = {"expression": "model", "head_motion": "model", "unprojection": "model", "generator": "generator"}


@dataclasses.dataclass
class RunCheckpoint:
  """One checkpoint of a run as saved: every group's params and every collection."""

  config: ml_collections.ConfigDict
  params: dict[str, Any]
  collections: dict[str, Any]
  step: int
  workdir: pathlib.Path

  def model_variables(self) -> dict[str, Any]:
    """{"params": the stage's network, **its collections}: a multi-group task (Θ) keeps each
    group's collections under the group's name, one-group tasks keep them at the top level."""
    group = MODEL_GROUP.get(str(self.config.get("stage")), "model")
    if group == "model":
      return {"params": self.params[group], **self.collections}
    return {"params": self.params[group], **dict(self.collections.get(group) or {})}


def read_run(path: str | pathlib.Path, stage: str | None = None) -> RunCheckpoint:
  """A run's checkpoint and resolved config; `stage` (if given) must be the run's `config.stage`."""
  from talkinghead_jax import config as config_lib  # noqa: PLC0415
  from talkinghead_jax.train import loop  # noqa: PLC0415

  workdir, step = locate_checkpoint(path)
  checkpoint = loop.load_checkpoint(workdir, step)
  if (workdir / config_lib.RESOLVED_NAME).is_file():
    config = config_lib.load_resolved(workdir)
  else:  # the checkpoint carries the config too
    config = ml_collections.ConfigDict(checkpoint["config"])
  if stage is not None and config.get("stage") != stage:
    raise ConfigError(f"{workdir}: the run trained stage {config.get('stage')!r}, not {stage!r}")
  params = checkpoint["params"]
  group = MODEL_GROUP.get(str(config.get("stage")), "model")
  if group not in params:
    raise InputError(workdir, f"checkpoint has no {group!r} parameters (groups: {sorted(params)})")
  return RunCheckpoint(config=config, params=params, collections=dict(checkpoint.get("collections") or {}),
                       step=int(checkpoint["step"]), workdir=workdir)


def load_trained_stage(path: str | pathlib.Path, stage: str | None = None) -> TrainedStage:
  """Loads a checkpoint of a run; `stage` (if given) must be the run's `config.stage`."""
  from talkinghead_jax.train import tasks  # noqa: PLC0415

  run = read_run(path, stage)
  return TrainedStage(config=run.config, task=tasks.get_task(run.config), variables=run.model_variables(),
                      step=run.step, workdir=run.workdir)


def evaluation_config(config: ml_collections.ConfigDict, data_dir: str | None = None,
                      overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
  """A copy of the run's config that reads the prepared tfds data set (`data_dir` when given)
  for evaluation, with `--set`-style `overrides` (e.g. `data.builder_config=sidecar_64`)."""
  from talkinghead_jax import config as config_lib  # noqa: PLC0415

  config = ml_collections.ConfigDict(config.to_dict())
  config.data.source = "tfds"
  for name in ("data_dir", "builder_config"):  # the tfds fields, absent from a run trained on arrays
    if name not in config.data:
      config.data[name] = ""
  if data_dir is not None:
    config.data.data_dir = str(data_dir)
  overrides = list(overrides)
  if overrides:
    config_lib.apply_overrides(config, overrides, source="--set")
  if not config.data.get("data_dir"):
    raise TalkingHeadError("no prepared data: pass --data-dir (the tfds data directory of `talkinghead prepare`)")
  return config


def clip_source(config: ml_collections.ConfigDict, split: str, limit: int | None = None,
                keys: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
  """Whole clips of `split` as numpy dicts (`data.pipelines.clip_records`; only `keys` and
  `audio` when `keys` is given), at most `limit`."""
  from talkinghead_jax.data import pipelines  # noqa: PLC0415 (TensorFlow)

  records: Iterable[dict[str, Any]] = pipelines.clip_records(config, split, keys)
  return iter(itertools.islice(records, limit) if limit is not None else records)


def dataset_artifacts(config: ml_collections.ConfigDict):
  """The prepared data set (`data.tfds.PreparedDataset`): `.pca` (the landmark PCA of Ψ's
  targets), `.canonical` (the template face of Ψ's identity offset), `.info["size"]` (crop px)."""
  from talkinghead_jax.data import pipelines  # noqa: PLC0415 (TensorFlow)

  return pipelines.open_prepared(config)


def clip_name(clip: Mapping[str, Any]) -> str:
  """A clip record's `clip_id` as text (tfds gives bytes)."""
  name = clip.get("clip_id", "<clip>")
  if isinstance(name, np.ndarray):
    name = name.item()
  return name.decode() if isinstance(name, bytes) else str(name)


def num_frames(clip: Mapping[str, Any], per_frame: np.ndarray) -> int:
  """The clip's frame count: `num_frames` when the record has it, else the array's length."""
  return int(clip["num_frames"]) if "num_frames" in clip else len(per_frame)
