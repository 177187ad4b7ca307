"""The unprojection net's pipeline: schema, the frame of the drawn position map, resizing, and the
error for a data set without position maps."""

import cv2
import numpy as np
import pytest

import pipeline_testdata as testdata
from talkinghead_jax.data import input_common as common
from talkinghead_jax.data import pipelines, schema
from talkinghead_jax.errors import TalkingHeadError


def test_batches_follow_the_schema_and_hold_the_stored_frame_and_map():
  data = pipelines.make_input(testdata.image_config(), "unprojection", "train",
                              source=pipelines.ListSource(testdata.clips()), artifacts=testdata.artifacts(),
                              with_clip_index=True)
  batch = next(data)
  expected = schema.batch_shapes("unprojection", 4, S=testdata.SIZE)
  assert {k: (v.shape, v.dtype) for k, v in batch.items() if k != pipelines.CLIP_INDEX} == expected
  for row, index in enumerate(batch[pipelines.CLIP_INDEX]):
    clip = testdata.clips()[index]
    matches = [i for i, frame in enumerate(clip["position_frames"])
               if np.array_equal(batch["image"][row], clip["frames"][frame])
               and np.array_equal(batch["position_map"][row], clip["position_map"][i])]
    assert matches
    np.testing.assert_array_equal(batch["face_mask"][row, ..., 0], clip["face_mask"].astype(np.float32))


def test_resizing_scales_the_map_values():
  config = testdata.image_config(image_size=testdata.SIZE // 2)
  sampler = pipelines.make_sampler(config, "unprojection", "train", testdata.artifacts())
  clip = testdata.clips()[0]
  sample = sampler.sample(clip, common.sample_rng(0, 0, 0, sampler.salt))
  which = int(common.sample_rng(0, 0, 0, sampler.salt).integers(len(clip["position_map"])))
  half = testdata.SIZE // 2
  frame = clip["frames"][clip["position_frames"][which]]
  np.testing.assert_array_equal(sample["image"], cv2.resize(frame, (half, half), interpolation=cv2.INTER_LINEAR))
  expected = cv2.resize(clip["position_map"][which], (half, half), interpolation=cv2.INTER_LINEAR) * 0.5
  np.testing.assert_allclose(sample["position_map"], expected, rtol=1e-6)
  # The plane's map holds each texel's own pixel centre: it still does at the new size.
  centres = np.arange(half) + 0.5
  np.testing.assert_allclose(sample["position_map"][half // 2, :, 0], centres, atol=0.05)


def test_a_data_set_without_position_maps_is_refused():
  artifacts = testdata.artifacts()
  plain = type(artifacts)(canonical=artifacts.canonical, pca=artifacts.pca, info=artifacts.info,
                          features=artifacts.features - {"position_map", "position_frames", "face_mask"})
  with pytest.raises(TalkingHeadError, match="trains on SynthTalk"):
    pipelines.make_sampler(testdata.image_config(), "unprojection", "train", plain)
