"""Optimizers against torch's, schedules against upstream's formula, and the train state."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch

from talkinghead_jax.errors import ConfigError
from talkinghead_jax.train import state as state_lib

ConfigDict = ml_collections.ConfigDict


def _run_optax(config, steps=3):
  rng = np.random.default_rng(0)
  w = rng.normal(size=(4, 3)).astype(np.float32)
  grads = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(steps)]
  optimizer, _ = state_lib.make_optimizer(config, steps_per_epoch=10)
  params = jnp.asarray(w)
  opt_state = optimizer.init(params)
  for g in grads:
    updates, opt_state = optimizer.update(jnp.asarray(g), opt_state, params)
    params = params + updates
  return w, grads, np.asarray(params)


def _run_torch(optimizer_class, w, grads, **kwargs):
  p = torch.nn.Parameter(torch.tensor(w))
  optimizer = optimizer_class([p], **kwargs)
  for g in grads:
    p.grad = torch.tensor(g)
    optimizer.step()
  return p.detach().numpy()


def test_adam_with_weight_decay_is_torch_adam_l2():
  config = ConfigDict(dict(name="adam", lr=1e-2, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.1))
  w, grads, got = _run_optax(config)
  expected = _run_torch(torch.optim.Adam, w, grads, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_adamw_is_torch_adamw():
  config = ConfigDict(dict(name="adamw", lr=1e-2, b1=0.5, b2=0.999, eps=1e-8, weight_decay=0.1))
  w, grads, got = _run_optax(config)
  expected = _run_torch(torch.optim.AdamW, w, grads, lr=1e-2, betas=(0.5, 0.999), eps=1e-8, weight_decay=0.1)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_halving_schedule_is_upstreams_adjust_lr():
  steps_per_epoch = 7
  schedule = state_lib.make_schedule(ConfigDict(dict(name="halving", hold_epochs=5, half_every_epochs=5)),
                                     3e-4, steps_per_epoch)
  for step in range(0, 30 * steps_per_epoch, 3):
    epoch = step // steps_per_epoch
    # RotateAudio/utils.py AdjustLR(sleep_epochs=5, half=5), applied at each epoch's start.
    expected = 3e-4 * math.pow(0.5, (epoch - 5 + 1) / 5.0) if epoch >= 5 else 3e-4
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-6)


def test_linear_decay_and_constant_schedules():
  schedule = state_lib.make_schedule(ConfigDict(dict(name="linear_decay", hold_epochs=2, decay_epochs=4)), 1.0, 10)
  assert float(schedule(0)) == 1.0 and float(schedule(20)) == 1.0
  assert float(schedule(40)) == pytest.approx(0.5) and float(schedule(60)) == 0.0
  assert float(state_lib.make_schedule(ConfigDict(dict(name="constant")), 0.3, 1)(12345)) == pytest.approx(0.3)
  with pytest.raises(ConfigError, match="unknown schedule"):
    state_lib.make_schedule(ConfigDict(dict(name="cosine")), 1.0, 1)


def test_optimizer_config_errors():
  with pytest.raises(ConfigError, match="unknown optimizer"):
    state_lib.make_optimizer(ConfigDict(dict(name="sgd", lr=1.0)), 1)
  with pytest.raises(ConfigError, match="discriminator"):
    state_lib.make_optimizers(ConfigDict(dict(model=dict(name="adam", lr=1.0))), ("discriminator", "model"), 1)


def test_state_step_keys_are_fold_ins_of_the_run_key():
  key = jax.random.key(3)
  params = {"model": {"w": jnp.ones(2)}}
  optimizers, _ = state_lib.make_optimizers(ConfigDict(dict(model=dict(name="adam", lr=1.0))), ("model",), 1)
  state = state_lib.create_state(params, {}, optimizers, key)
  assert int(state.step) == 0
  later = state.replace(step=jnp.int32(5))
  np.testing.assert_array_equal(jax.random.key_data(later.step_key()),
                                jax.random.key_data(jax.random.fold_in(key, 5)))
