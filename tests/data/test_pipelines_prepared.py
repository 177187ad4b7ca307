"""The whole chain: a tiny SynthTalk set → `talkinghead prepare` (sidecar landmarks) → every
stage's input through `make_input` with `data.source = "tfds"`, and `clip_records`."""

import ml_collections
import numpy as np
import pytest

from talkinghead_jax import config as config_lib
from talkinghead_jax.data import pipelines, schema, synthetic
from talkinghead_jax.data.tfds import prepare

SIZE = 64


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("prepared_chain")
  synthetic.generate(root / "synth", identities=6, clips_per_identity=1, seconds=1.6, image_size=SIZE, seed=0)
  prepare.prepare("synthtalk", root / "synth", root / "prepared", "sidecar", size=SIZE, audio_rates=(16000,),
                  unprojection_frames=2, progress=False)
  return root / "prepared"


def _sizes(batch):
  return {name: (value.shape, value.dtype) for name, value in batch.items()}


def test_every_stage_reads_the_prepared_set(data_dir):
  where = [f"data.data_dir={data_dir}", "data.builder_config=sidecar_64"]
  expression = config_lib.load("configs/expression.py:synthtalk_tiny", ["batch_size=4", *where])
  batch = next(pipelines.make_input(expression, "expression", "train"))
  # 5 kHz is not stored: resampled from 16 kHz.
  assert _sizes(batch) == schema.batch_shapes("expression", 4, optional={"noise": True}, L=8, C=7, S_audio=200,
                                              P=20, N=14 * 200)
  head_motion = config_lib.load("configs/head_motion.py:synthtalk_tiny",
                                ["batch_size=2", "data.observed_frames=(13, 20)", "data.predicted_frames=(4, 12)",
                                 *where])
  data = pipelines.make_input(head_motion, "head_motion", "train")
  assert _sizes(next(data)) == schema.batch_shapes("head_motion", 2, W=32, C=7, S_audio=160)
  poses = np.concatenate([clip["pose"] for clip in pipelines.record_source(pipelines.open_prepared(head_motion),
                                                                          "train").read_clips(range(5), ["pose"])])
  np.testing.assert_allclose(data.sampler.pose_mean, poses.mean(axis=0), rtol=1e-4, atol=1e-6)
  for stage, keys in (("generator", dict(K=3, S=SIZE)), ("unprojection", dict(S=SIZE))):
    config = ml_collections.ConfigDict(dict(seed=0, batch_size=2, data=dict(
        source="tfds", dataset="synthtalk", data_dir=str(data_dir), builder_config="sidecar_64", num_references=3)))
    batch = next(pipelines.make_input(config, stage, "train"))
    assert _sizes(batch) == schema.batch_shapes(stage, 2, **keys)
  records = list(pipelines.clip_records(expression, "test"))
  assert len(records) == 1 and records[0]["frames"].shape == (40, SIZE, SIZE, 3)
  assert records[0]["audio"].dtype == np.float32 and len(records[0]["audio"]) == 40 * 200
