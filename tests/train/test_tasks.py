"""The stages' losses: Φ's config switch (paper's GAN term vs upstream's MSE only), config checks,
the task registry and the `train` command's one-line errors."""

import importlib

import jax
import numpy as np
import pytest

from talkinghead_jax import cli
from talkinghead_jax.errors import ConfigError
from talkinghead_jax.train import state as state_lib, task as task_lib, tasks


def test_discriminator_switch_adds_or_removes_the_gan_term(head_motion_config, numpy_state):
  paper, upstream = (tasks.get_task(head_motion_config(f"model.use_discriminator_loss={on}")) for on in (True, False))
  config = paper.config
  data = paper.make_input("train", 0, 1)
  batch = next(data)
  optimizers, _ = state_lib.make_optimizers(config.optim, paper.groups, 1)
  abstract = jax.eval_shape(lambda: state_lib.create_state(
      *paper.init_variables(jax.random.key(0), data.element_spec), optimizers, jax.random.key(1)))
  state = numpy_state(abstract)

  def losses(params, collections):
    """Each task's generator loss and metrics, and its gradient on the extrapolator layer."""
    out = {}
    for name, task in (("paper", paper), ("upstream", upstream)):
      def loss(decode, task=task):
        model = {**params["model"], "decode": decode}
        return task.loss_fn("model", {**params, "model": model}, collections, batch, jax.random.key(7), 0)

      (value, (metrics, _)), grad = jax.value_and_grad(loss, has_aux=True)(params["model"]["decode"])
      out[name] = (value, metrics, grad["l"]["kernel"])
    return out

  out = jax.device_get(jax.jit(losses)(state.params, state.collections))
  (paper_loss, paper_metrics, paper_grad), (upstream_loss, upstream_metrics, upstream_grad) = (
      out["paper"], out["upstream"])
  weight = config.loss.gan_weight
  assert paper_metrics["mse"] == pytest.approx(upstream_metrics["mse"], rel=1e-6)
  assert upstream_loss == pytest.approx(upstream_metrics["mse"], rel=1e-6)  # upstream: MSE only
  assert paper_loss == pytest.approx(paper_metrics["mse"] + weight * paper_metrics["g_gan"], rel=1e-6)
  assert paper_metrics["g_gan"] > 0
  # The GAN term's gradient reaches the generator only with the switch on.
  assert not np.allclose(paper_grad, upstream_grad, rtol=1e-4, atol=1e-7)


def test_config_checks_and_registry(head_motion_config):
  with pytest.raises(ConfigError, match="observed_frames"):
    tasks.get_task(head_motion_config("data.observed_frames=(12, 16)"))
  with pytest.raises(ConfigError, match="predicted_frames"):
    tasks.get_task(head_motion_config("data.predicted_frames=(2, 8)"))
  config = head_motion_config()
  config.stage = "nonsense"
  with pytest.raises(ConfigError, match="known stages"):
    tasks.get_task(config)
  del config["stage"]
  with pytest.raises(ConfigError, match="known stages"):
    tasks.get_task(config)
  # Every registered stage names an importable Task subclass of its own; get_task builds it.
  assert {"expression", "head_motion"} <= set(tasks.TASKS)
  classes = []
  for stage, target in tasks.TASKS.items():
    module_name, _, class_name = target.partition(":")
    task_class = getattr(importlib.import_module(module_name), class_name)
    assert isinstance(task_class, type) and issubclass(task_class, task_lib.Task), stage
    classes.append(task_class)
  assert len(set(classes)) == len(classes)
  assert type(tasks.get_task(head_motion_config())) is classes[list(tasks.TASKS).index("head_motion")]


def test_train_command_errors_are_one_line(tmp_path, capsys):
  status = cli.main(["train", "--config", "configs/expression.py:synthtalk_tiny", "--workdir", str(tmp_path / "w")])
  err = capsys.readouterr().err
  assert status == 1 and err.count("\n") == 1
  assert "data.source is 'tfds': set data.data_dir" in err
  status = cli.main(["train", "--workdir", str(tmp_path / "empty")])
  err = capsys.readouterr().err
  assert status == 1 and err.count("\n") == 1 and "no config.json to resume from" in err
  status = cli.main(["train", "--config", "configs/head_motion.py:vox", "--workdir", str(tmp_path / "w"),
                     "--set", "data.source=arrays", "--set", f"data.path={tmp_path / 'missing.npz'}"])
  err = capsys.readouterr().err
  assert status == 1 and err.count("\n") == 1 and "missing.npz: array file not found" in err
