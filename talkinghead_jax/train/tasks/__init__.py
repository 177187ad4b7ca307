"""The training stages: config `stage` name → `Task` class (imported on first use)."""

from __future__ import annotations

import importlib

import ml_collections

from talkinghead_jax.errors import ConfigError

# stage name → "module:ClassName"; later stages (unprojection, generator) add a line here.
TASKS = {
    "expression": "talkinghead_jax.train.tasks.expression:ExpressionTask",
    "head_motion": "talkinghead_jax.train.tasks.head_motion:HeadMotionTask",
    "unprojection": "talkinghead_jax.train.tasks.unprojection:UnprojectionTask",
    "generator": "talkinghead_jax.train.tasks.generator:GeneratorTask",
}


def get_task(config: ml_collections.ConfigDict):
  """The task object for `config.stage`."""
  stage = config.get("stage")
  if stage not in TASKS:
    raise ConfigError(f"config.stage is {stage!r}; known stages: {sorted(TASKS)}")
  module_name, _, class_name = TASKS[stage].partition(":")
  return getattr(importlib.import_module(module_name), class_name)(config)
