"""Θ's pipeline: schema; frames, landmark images, poses, matched reference, key frame and mouth box
against numpy; flips and crop jitter keep landmarks on their pixels; pose algebra of the
augmentation against rigid.frontalize; ground-truth flow."""

import numpy as np
import pytest

import pipeline_testdata as testdata
from talkinghead_jax.data import flow
from talkinghead_jax.data import input_common as common
from talkinghead_jax.data import input_generator, pipelines, schema
from talkinghead_jax.data.input_synthetic import dot_code
from talkinghead_jax.geometry import landmarks as landmarks_lib
from talkinghead_jax.geometry import matching, rigid

K = 3


BIG = 128  # dots of neighbouring landmarks overlap less than at the default size


def _sampler(split="train", size=testdata.SIZE, **data):
  return pipelines.make_sampler(testdata.image_config(**data), "generator", split, testdata.artifacts(size))


def _replay(sampler, index, seed_position=0):
  """The sample of clip `index` and the frame choices its generator made."""
  clip = testdata.clips(size=sampler.stored_size)[index]
  sample = sampler.sample(clip, common.sample_rng(0, 0, seed_position, sampler.salt))
  rng = common.sample_rng(0, 0, seed_position, sampler.salt)
  refs, target = sampler.choose_frames(int(clip["num_frames"]), rng)
  match = matching.select_reference(clip["pose"][refs], clip["pose"][target], sampler.rule, rng, sampler.worst_prob)
  return clip, sample, refs, target, match


def _visible(frame, points):
  """Landmarks whose whole 3×3 dot is visible (not painted over by a neighbour's dot)."""
  keep = []
  for k, (x, y) in enumerate(points[:, :2]):
    col, row = int(np.floor(x)), int(np.floor(y))
    block = frame[row - 1:row + 2, col - 1:col + 2]
    if block.shape[:2] == (3, 3) and np.all(block[..., 0] == dot_code(k)) and np.all(block[..., 1] == 255):
      keep.append(k)
  return keep


def test_batches_follow_the_schema():
  for flow_gt in (False, True):
    data = pipelines.make_input(testdata.image_config(num_references=K, flow_gt=flow_gt), "generator", "train",
                                source=pipelines.ListSource(testdata.clips()), artifacts=testdata.artifacts())
    expected = schema.batch_shapes("generator", 4, optional={"flow_ref": flow_gt, "flow_ref_confidence": flow_gt},
                                   K=K, S=testdata.SIZE)
    assert {k: (v.shape, v.dtype) for k, v in next(data).items()} == expected
    assert {k: (s.shape, s.dtype) for k, s in data.element_spec.items()} == expected


def test_a_test_sample_against_numpy():
  sampler = _sampler("test")
  assert sampler.rule == "test" and not sampler.augment
  for index in (0, 4):
    clip, sample, refs, target, match = _replay(sampler, index)
    pool = max(K, int(0.25 * testdata.FRAMES))
    assert len(set(refs)) == K and refs.max() < pool <= target < testdata.FRAMES
    assert match == matching.nearest_reference(clip["pose"][refs], clip["pose"][target])
    np.testing.assert_array_equal(sample["ref_image"], clip["frames"][refs])
    np.testing.assert_array_equal(sample["tgt_image"], clip["frames"][target])
    np.testing.assert_array_equal(sample["warping_ref"], clip["frames"][refs[match]])
    np.testing.assert_array_equal(sample["key_image"], clip["frames"][clip["key_frame"]])
    labels = landmarks_lib.draw_landmark_images(clip["landmarks"][[*refs, target]], testdata.SIZE)
    np.testing.assert_array_equal(sample["ref_label"][..., 0], labels[:K])
    np.testing.assert_array_equal(sample["tgt_label"][..., 0], labels[K])
    np.testing.assert_array_equal(sample["warping_ref_label"][..., 0], labels[match])
    np.testing.assert_allclose(sample["ref_pose"], clip["pose"][refs], atol=1e-5)
    np.testing.assert_allclose(sample["tgt_pose"], clip["pose"][target], atol=1e-5)
    np.testing.assert_allclose(sample["tgt_landmarks"], clip["landmarks"][target], atol=1e-5)
    np.testing.assert_allclose(sample["key_pose"], clip["pose"][clip["key_frame"]], atol=1e-5)
    np.testing.assert_allclose(sample["key_front"], clip["front"][clip["key_frame"]], atol=1e-5)
    mouth = clip["landmarks"][target][[48, 50, 51, 54, 57], :2]
    margin = 5 * testdata.SIZE / 256
    centres = np.arange(testdata.SIZE) + 0.5
    inside = ((centres[:, None] >= mouth[:, 1].min() - margin) & (centres[:, None] <= mouth[:, 1].max() + margin)
              & (centres[None] >= mouth[:, 0].min() - margin) & (centres[None] <= mouth[:, 0].max() + margin))
    np.testing.assert_array_equal(sample["mouth_box"][..., 0], inside.astype(np.float32))


def test_train_samples_use_the_train_matching_rule_and_first_frames_with_ref_ratio_zero():
  sampler = _sampler(augment=False)
  assert sampler.rule == "train"
  for position in range(6):
    clip, sample, refs, target, match = _replay(sampler, 1, position)
    np.testing.assert_array_equal(sample["warping_ref"], clip["frames"][refs[match]])
  first = _sampler(augment=False, ref_ratio=0.0)
  clip, sample, refs, target, _ = _replay(first, 2)
  np.testing.assert_array_equal(refs, np.arange(K))
  np.testing.assert_array_equal(sample["ref_image"], clip["frames"][:K])


def test_a_flip_keeps_every_landmark_on_its_mirrored_feature():
  sampler = _sampler(size=BIG, flip_prob=1.0, crop_scale=(1.0, 1.0), crop_shift=0.0)
  clip, sample, refs, target, _ = _replay(sampler, 3)
  size = BIG
  np.testing.assert_array_equal(sample["tgt_image"], clip["frames"][target][:, ::-1])
  visible = _visible(clip["frames"][target], clip["landmarks"][target])
  assert len(visible) > 20
  mirror = input_generator.MIRROR_68
  flipped = sample["tgt_landmarks"]
  for k in range(68):
    if mirror[k] in visible:
      col, row = np.floor(flipped[k, :2]).astype(int)
      assert tuple(sample["tgt_image"][row, col, :2]) == (dot_code(mirror[k]), 255), k
  # The subject's right eye (36–41) stays on the image's left, the left eye on its right.
  for points in (clip["landmarks"][target], flipped):
    assert points[36:42, 0].mean() < points[42:48, 0].mean()
  np.testing.assert_allclose(flipped[:, 0], size - clip["landmarks"][target][mirror, 0], atol=1e-4)
  # Poses still map the (flipped) landmarks onto the (mirrored) frontal face.
  mirror_x = float(testdata.artifacts(BIG).canonical[:, 0].mean())
  expected_front = input_generator.flip_front(clip["front"][target], mirror_x)
  np.testing.assert_allclose(rigid.frontalize(flipped, sample["tgt_pose"]), expected_front, atol=2e-3)
  key_front = input_generator.flip_front(clip["front"][clip["key_frame"]], mirror_x)
  np.testing.assert_allclose(sample["key_front"], key_front, atol=1e-4)


def test_crop_jitter_keeps_landmarks_on_their_pixels():
  sampler = _sampler(size=BIG, flip_prob=0.0, crop_scale=(0.9, 1.1), crop_shift=0.1)
  checked = 0
  for position in range(4):
    clip, sample, refs, target, _ = _replay(sampler, 5, position)
    for image, original, points in [(sample["tgt_image"], clip["frames"][target], sample["tgt_landmarks"])]:
      for k in _visible(original, clip["landmarks"][target]):
        col, row = np.floor(points[k, :2]).astype(int)
        if 0 <= row < BIG and 0 <= col < BIG:
          assert image[row, col, 1] > 200 and abs(int(image[row, col, 0]) - dot_code(k)) <= 14, (position, k)
          checked += 1
  assert checked > 60


def test_augmentation_pose_algebra_against_frontalize():
  rng = np.random.default_rng(0)
  clip = testdata.clips()[6]
  size, mirror_x = testdata.SIZE, float(testdata.artifacts().canonical[:, 0].mean())
  for trial in range(5):
    sim = input_generator.jitter(clip["landmarks"][trial], rng, (0.8, 1.2), 0.2, resize=1.5)
    points = sim.points(clip["landmarks"][trial])
    pose = sim.pose(clip["pose"][trial])
    np.testing.assert_allclose(rigid.frontalize(points, pose), sim.scale * clip["front"][trial], atol=2e-3)
    flipped = input_generator.flip_points(points, 1.5 * size)
    flipped_pose = input_generator.flip_pose(pose, 1.5 * size, sim.scale * mirror_x)
    np.testing.assert_allclose(flipped_pose[:3], pose[:3] * [1, -1, -1])
    np.testing.assert_allclose(rigid.frontalize(flipped, flipped_pose),
                               input_generator.flip_front(sim.scale * clip["front"][trial], sim.scale * mirror_x),
                               atol=2e-3)


def test_ground_truth_flow_is_dis_from_the_warping_reference_to_the_target():
  sampler = _sampler(flow_gt=True)
  clip, sample, *_ = _replay(sampler, 0)
  expected = flow.dis_flow(sample["warping_ref"], sample["tgt_image"])
  np.testing.assert_allclose(sample["flow_ref"], expected, atol=1e-5)
  np.testing.assert_allclose(sample["flow_ref_confidence"][..., 0],
                             flow.flow_confidence(sample["warping_ref"], sample["tgt_image"], expected))


def test_rendered_label_and_key_position_map():
  plain = _sampler("test", key_position_map=True)
  clip, sample, refs, target, _ = _replay(plain, 2)
  key = int(clip["key_frame"])
  rendered = rigid.unfrontalize(clip["front"][key], clip["pose"][target])
  np.testing.assert_array_equal(sample["rendered_label"][..., 0],
                                landmarks_lib.draw_landmark_image(rendered, testdata.SIZE))
  assert clip["position_frames"][0] == key
  np.testing.assert_allclose(sample["key_position_map"], clip["position_map"][0], atol=1e-5)
  flipped = _sampler(flip_prob=1.0, crop_scale=(1.0, 1.0), crop_shift=0.0, key_position_map=True)
  clip, sample, refs, target, _ = _replay(flipped, 2)
  expected = clip["position_map"][0][:, ::-1].copy()
  expected[..., 0] = testdata.SIZE - expected[..., 0]
  np.testing.assert_allclose(sample["key_position_map"], expected, atol=1e-5)
  # The rendered face's landmarks follow the flip like the key frame's own.
  rendered = rigid.unfrontalize(sample["key_front"], sample["tgt_pose"])
  np.testing.assert_array_equal(sample["rendered_label"][..., 0],
                                landmarks_lib.draw_landmark_image(rendered, testdata.SIZE))


def test_mirror_permutation_is_an_involution_that_swaps_sides():
  mirror = input_generator.MIRROR_68
  np.testing.assert_array_equal(mirror[mirror], np.arange(68))
  assert sorted(mirror) == list(range(68))
  canonical = testdata.artifacts().canonical
  mirrored = input_generator.flip_front(canonical, float(canonical[:, 0].mean()))
  np.testing.assert_allclose(mirrored, canonical, atol=1e-3)  # the canonical face is symmetric


@pytest.mark.parametrize("bad", [dict(ref_ratio=1.0), dict(matching="best"), dict(crop_scale=(1.2, 0.8))])
def test_bad_settings(bad):
  from talkinghead_jax.errors import ConfigError

  with pytest.raises(ConfigError):
    _sampler(**bad)
