"""The shared pipeline machinery: audio windows and smoothing cut from a few rows, the epoch plan,
determinism, resuming, hosts, short clips, records read by index, and a real tfds build read
through make_input and clip_records."""

import numpy as np
import pytest

import pipeline_testdata as testdata
from talkinghead_jax.audio import frame_windows, smooth_windows
from talkinghead_jax.data import input_common as common
from talkinghead_jax.data import pipelines
from talkinghead_jax.data import input_synthetic
from talkinghead_jax.errors import TalkingHeadError
from talkinghead_jax.train.tasks.expression import ExpressionTask


@pytest.mark.parametrize("length", [203, 200, 40])
def test_windows_for_frames_equal_the_whole_clips_windows(length):
  rng = np.random.default_rng(length)
  audio = rng.normal(size=length).astype(np.float32)
  frames = 22
  whole = frame_windows(audio, sample_rate=250, fps=25, context=3, num_frames=frames)
  for start, stop in [(0, 5), (3, 9), (15, 22), (0, 22), (20, 22)]:
    np.testing.assert_array_equal(
        common.windows_for_frames(audio, 250, 25, 3, frames, start, stop), whole[start:stop])


@pytest.mark.parametrize("align", ["centered", "upstream"])
def test_smoothed_rows_equal_the_whole_series_smoothing(align):
  series = np.random.default_rng(0).normal(size=(60, 3, 2))
  whole = smooth_windows(series, taps=11, align=align)
  for start, length in [(0, 8), (2, 10), (25, 10), (50, 10), (0, 60), (55, 5)]:
    part = common.smoothed_rows(lambda low, high: series[low:high], 60, start, length, 11, align)
    np.testing.assert_allclose(part, whole[start:start + length], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("align", ["centered", "upstream"])
@pytest.mark.parametrize("samples", [3010, 3000, 2990])
def test_smoothed_windows_equal_the_whole_clips_smoothed_windows(align, samples):
  audio = np.random.default_rng(samples).normal(size=samples).astype(np.float32)
  frames = 120  # 25 samples per frame: the audio ends near the last frame
  whole = smooth_windows(frame_windows(audio, 625, num_frames=frames), taps=21, align=align)
  for start, length in [(0, 30), (5, 40), (40, 40), (70, 50), (100, 20), (0, 120)]:
    part = common.smoothed_windows(audio, 625, 25, 3, frames, start, length, 21, align)
    np.testing.assert_allclose(part, whole[start:start + length], rtol=1e-5, atol=2e-6, err_msg=f"{start}")


def test_epoch_plan_order_substitution_and_noise_clips():
  plan = common.EpochPlan(num_clips=5, samples_per_clip=2, seed=3, shuffle=True)
  order = plan.order(0)
  assert sorted(order) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
  np.testing.assert_array_equal(order, common.EpochPlan(5, 2, 3, True).order(0))
  assert not np.array_equal(order, plan.order(1))
  np.testing.assert_array_equal(common.EpochPlan(5, 2, 3, False).order(7), np.repeat(np.arange(5), 2))
  lengths = {0: 10, 1: 3, 2: 10, 3: 3, 4: 10}
  for position in range(10):
    chosen = plan.clip_at(0, position, lengths.get, min_frames=5)
    expected = next(order[(position + k) % 10] for k in range(10) if lengths[order[(position + k) % 10]] >= 5)
    assert chosen == expected
  with pytest.raises(TalkingHeadError, match="12 frames"):
    plan.clip_at(0, 0, lengths.get, min_frames=12)
  noise = [plan.noise_clip_at(0, position, avoid=2) for position in range(200)]
  assert 2 not in noise and set(noise) == {0, 1, 3, 4}


def _expression_input(config=None, **options):
  config = config or testdata.expression_config()
  return pipelines.make_input(config, "expression", "train", source=pipelines.ListSource(testdata.clips()),
                              artifacts=testdata.artifacts(), **options)


def test_same_seed_same_batches_other_seed_other_batches():
  first = testdata.take(_expression_input(), 3)
  testdata.assert_batches_equal(first, testdata.take(_expression_input(), 3))
  other = next(_expression_input(testdata.expression_config("seed=1")))
  assert not np.array_equal(other["audio"], first[0]["audio"])


def test_state_resumes_exactly_mid_epoch_and_across_epochs():
  reference = _expression_input()
  assert reference.steps_per_epoch == 2
  batches = testdata.take(reference, 5)
  assert reference.get_state() == {"epoch": 2, "position": 1}
  for taken in (1, 2, 3):
    resumed = _expression_input()
    resumed.set_state({"epoch": taken // 2, "position": taken % 2})
    testdata.assert_batches_equal(testdata.take(resumed, 5 - taken), batches[taken:])
  with pytest.raises(TalkingHeadError, match="does not fit"):
    reference.set_state({"epoch": 0, "position": 3})


def test_hosts_read_disjoint_rows_that_make_the_one_host_batch():
  whole = _expression_input(with_clip_index=True)
  hosts = [pipelines.make_input(testdata.expression_config(), "expression", "train", index, 2,
                                source=pipelines.ListSource(testdata.clips()), artifacts=testdata.artifacts(),
                                with_clip_index=True) for index in range(2)]
  seen = []
  for _ in range(2):  # one epoch: 8 clips, batch 4
    batch, parts = next(whole), [next(host) for host in hosts]
    assert set(parts[0][pipelines.CLIP_INDEX]).isdisjoint(parts[1][pipelines.CLIP_INDEX])
    for name in batch:
      np.testing.assert_array_equal(np.concatenate([p[name] for p in parts]), batch[name], err_msg=name)
    seen.extend(batch[pipelines.CLIP_INDEX])
  assert sorted(seen) == list(range(testdata.NUM_CLIPS))


def test_clips_too_short_for_the_window_are_never_sampled():
  made = list(testdata.clips())
  short = input_synthetic.make_clip(99, frames=5, size=testdata.SIZE, audio_rates=testdata.RATES, unprojection_frames=3)
  source = pipelines.ListSource(made[:3] + [short] + made[3:7])
  data = pipelines.make_input(testdata.expression_config(), "expression", "train", source=source,
                              artifacts=testdata.artifacts(), with_clip_index=True)
  chosen = np.concatenate([next(data)[pipelines.CLIP_INDEX] for _ in range(4)])
  assert 3 not in chosen and len(chosen) == 16


def test_the_task_reads_the_tfds_pipeline_through_stage_input(monkeypatch):
  config = testdata.expression_config("data.source=tfds", "data.data_dir=/prepared")
  prepared = type("Prepared", (), {})()
  monkeypatch.setattr(pipelines, "open_prepared", lambda config: prepared)
  monkeypatch.setattr(pipelines, "record_source", lambda prepared, split: pipelines.ListSource(testdata.clips()))
  monkeypatch.setattr(pipelines, "artifacts_of", lambda prepared: testdata.artifacts())
  data = ExpressionTask(config).make_input("train", 0, 1)
  assert isinstance(data, pipelines.StageInput)
  assert data.element_spec["noise"].shape == (4, (6 + 6) * 100)
  assert next(data)["audio"].shape == (4, 6, 7, 100)


def test_a_real_tfds_build_reads_like_the_clips_in_memory(tmp_path, monkeypatch):
  made = list(testdata.clips())
  builder = testdata.build_tfds(tmp_path, made, train_count=6)
  assert len(builder.info.splits["train"].file_instructions) > 1  # several shards
  prepared = type("Prepared", (), dict(builder=builder, canonical=testdata.artifacts().canonical,
                                       pca=testdata.artifacts().pca, info=testdata.artifacts().info))()
  source = pipelines.record_source(prepared, "train")
  assert source.num_clips == 6
  order = [source.read_clips([i], ["clip_id"]).__next__()["clip_id"] for i in range(6)]
  by_id = {clip["clip_id"]: clip for clip in made}
  in_memory = pipelines.ListSource([input_synthetic.encode_frames(by_id[clip_id]) for clip_id in order])
  config = testdata.image_config()
  from_records = pipelines.make_input(config, "generator", "train", source=source, artifacts=testdata.artifacts())
  from_memory = pipelines.make_input(config, "generator", "train", source=in_memory, artifacts=testdata.artifacts())
  testdata.assert_batches_equal(testdata.take(from_records, 2), testdata.take(from_memory, 2))

  monkeypatch.setattr(pipelines, "open_prepared", lambda config: prepared)
  eval_config = testdata.expression_config()
  records = list(pipelines.clip_records(eval_config, "test"))
  assert [r["clip_id"] for r in records] != [] and len(records) == 2
  clip = by_id[records[0]["clip_id"]]
  assert records[0]["frames"].dtype == np.uint8 and records[0]["frames"].shape == clip["frames"].shape
  stored = input_synthetic.encode_frames(clip)["frames"]  # the bytes in the shards
  np.testing.assert_array_equal(records[0]["frames"], common.decode_frames(stored, range(len(stored))))
  assert np.abs(records[0]["frames"].astype(int) - clip["frames"]).mean() < 3  # JPEG at quality 95
  np.testing.assert_array_equal(records[0]["landmarks"], clip["landmarks"])
  np.testing.assert_allclose(records[0]["audio"], clip["audio_2500"] / 32767.0, rtol=1e-6)
