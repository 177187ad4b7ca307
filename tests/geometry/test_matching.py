"""The motion matcher's selection rule against plain numpy (UPSTREAM_NOTES §2.5)."""

import numpy as np
import pytest

from talkinghead_jax.geometry import matching


def _poses(rng, count):
  return np.concatenate([rng.normal(0, 0.3, (count, 3)), rng.normal(0, 20, (count, 3))], axis=1)


def test_distances_are_the_mean_absolute_rotation_difference():
  rng = np.random.default_rng(0)
  refs, target = _poses(rng, 5), _poses(rng, 1)[0]
  expected = [sum(abs(ref[i] - target[i]) for i in range(3)) / 3 for ref in refs]
  np.testing.assert_allclose(matching.rotation_distances(refs, target), expected, rtol=1e-12)
  # Translations play no part.
  moved = refs.copy()
  moved[:, 3:] += 100
  np.testing.assert_allclose(matching.rotation_distances(moved, target), expected, rtol=1e-12)


def test_test_rule_is_the_nearest_and_draws_nothing():
  rng = np.random.default_rng(1)
  refs, target = _poses(rng, 6), _poses(rng, 1)[0]
  nearest = int(np.argmin(np.abs(refs[:, :3] - target[:3]).mean(axis=1)))
  state = rng.bit_generator.state
  assert matching.select_reference(refs, target, "test", rng) == nearest == matching.nearest_reference(refs, target)
  assert rng.bit_generator.state == state


def test_train_rule_replays_against_numpy():
  refs_rng = np.random.default_rng(2)
  for trial in range(50):
    refs, target = _poses(refs_rng, 4), _poses(refs_rng, 1)[0]
    distances = np.abs(refs[:, :3] - target[:3]).mean(axis=1)
    mine, reference = np.random.default_rng(trial), np.random.default_rng(trial)
    expected = int(np.argmax(distances)) if reference.random() < 0.75 else int(reference.integers(4))
    assert matching.select_reference(refs, target, "train", mine) == expected


def test_train_rule_frequencies():
  rng = np.random.default_rng(3)
  refs = np.zeros((4, 6))
  refs[:, 0] = [0.1, 0.4, 0.2, 0.3]  # reference 1 is the worst
  counts = np.bincount([matching.select_reference(refs, np.zeros(6), "train", rng) for _ in range(4000)], minlength=4)
  np.testing.assert_allclose(counts / 4000, [0.0625, 0.8125, 0.0625, 0.0625], atol=0.02)
  always = [matching.select_reference(refs, np.zeros(6), "train", rng, worst_prob=1.0) for _ in range(50)]
  assert set(always) == {1}
  uniform = np.bincount([matching.select_reference(refs, np.zeros(6), "train", rng, worst_prob=0.0)
                         for _ in range(2000)], minlength=4)
  np.testing.assert_allclose(uniform / 2000, 0.25, atol=0.04)


def test_bad_input():
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match="rule"):
    matching.select_reference(np.zeros((2, 6)), np.zeros(6), "best", rng)
  with pytest.raises(ValueError, match="poses"):
    matching.rotation_distances(np.zeros((2, 2)), np.zeros(6))
  with pytest.raises(ValueError, match="no references"):
    matching.rotation_distances(np.zeros((0, 6)), np.zeros(6))
  with pytest.raises(ValueError, match="worst_prob"):
    matching.select_reference(np.zeros((2, 6)), np.zeros(6), "train", rng, worst_prob=1.5)
