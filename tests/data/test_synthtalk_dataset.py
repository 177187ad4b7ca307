"""SynthTalk end to end: layout, determinism, and ground truth that agrees with the pixels."""

import concurrent.futures
import json

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import polygon

from talkinghead_jax import cli, media
from talkinghead_jax.data import synthetic
from talkinghead_jax.data import synthtalk_appearance as appearance
from talkinghead_jax.data import synthtalk_head as head
from talkinghead_jax.errors import InputError
from talkinghead_jax.geometry import rigid

SIZE = 64


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
  """Set A: 2 identities × 2 clips, in this process. Set B: same seed, 3 identities × 1 clip,
  through the executor path (threads here; `talkinghead synth` uses processes)."""
  root = tmp_path_factory.mktemp("synthtalk")
  a = synthetic.generate(root / "a", 2, 2, 1.0, SIZE, seed=0)
  with concurrent.futures.ThreadPoolExecutor(2) as executor:
    b = synthetic.generate(root / "b", 3, 1, 1.0, SIZE, seed=0, executor=executor)
  return root / "a", a, root / "b", b


def _clips(out):
  return sorted(out.glob("*/mp4/*/*/*.mp4"))


def test_layout_follows_voxceleb2_and_splits_by_identity(sets):
  out, manifest, _, _ = sets
  paths = _clips(out)
  assert len(paths) == 4 and len(manifest["clips"]) == 4
  for path in paths:
    split, mp4, identity, video, clip = path.relative_to(out).parts
    assert split in ("dev", "test") and mp4 == "mp4"
    assert identity.startswith("id") and len(identity) == 7 and len(video) == 11
    assert clip in ("00001.mp4", "00002.mp4") and path.with_suffix(".npz").exists()
  # id00002 (index 1) is the test identity; each identity's two clips share one video.
  splits = {p.relative_to(out).parts[2]: p.relative_to(out).parts[0] for p in paths}
  assert splits == {"id00001": "dev", "id00002": "test"}
  videos = {p.relative_to(out).parts[2]: set() for p in paths}
  for p in paths:
    videos[p.relative_to(out).parts[2]].add(p.parent.name)
  assert all(len(v) == 1 for v in videos.values())
  saved = json.loads((out / synthetic.MANIFEST_NAME).read_text())
  assert saved["parameters"]["seed"] == 0 and saved["parameters"]["image_size"] == SIZE
  assert sorted(c["path"] for c in saved["clips"]) == sorted(str(p.relative_to(out)) for p in paths)
  np.testing.assert_array_equal(np.load(out / synthetic.CANONICAL_NAME), synthetic.canonical_face(SIZE))


def test_same_seed_gives_identical_files_and_more_identities_keep_them(sets):
  a, _, b, _ = sets
  shared = [p.relative_to(a) for p in _clips(a) if (b / p.relative_to(a)).exists()]
  assert len(shared) == 2  # clip 00001 of both identities
  for rel in shared:
    for suffix in (".mp4", ".npz"):
      assert (a / rel).with_suffix(suffix).read_bytes() == (b / rel).with_suffix(suffix).read_bytes()
  assert len(_clips(b)) == 3
  # Another seed gives other people.
  assert not np.allclose(synthetic.make_identity(1, 0).shape, synthetic.make_identity(0, 0).shape)


def test_rerun_keeps_the_set_and_other_settings_are_refused(sets):
  out, manifest, _, _ = sets
  before = {p: p.stat().st_mtime_ns for p in _clips(out)}
  again = synthetic.generate(out, 2, 2, 1.0, SIZE, seed=0)
  assert again["clips"] == manifest["clips"]
  assert {p: p.stat().st_mtime_ns for p in _clips(out)} == before
  with pytest.raises(InputError, match="other settings"):
    synthetic.generate(out, 2, 2, 1.0, 96, seed=0)


def test_ground_truth_fields(sets):
  out, _, _, _ = sets
  gt = np.load(_clips(out)[0].with_suffix(".npz"))
  frames = 25
  expected = {
      "landmarks": (frames, 68, 3), "pose": (frames, 6), "front": (frames, 68, 3),
      "expression": (frames, 4), "identity": (len(head.SHAPE_NAMES),),
      "appearance": (len(appearance.APPEARANCE_NAMES),), "neutral": (68, 3), "canonical": (68, 3),
      "position_map": (SIZE, SIZE, 3), "face_mask": (SIZE, SIZE), "landmark_uv": (68, 2),
      "head_angles": (frames, 3), "head_translation": (frames, 3), "audio_envelope": (frames,),
      "vowel": (frames,), "stress": (frames,), "light_direction": (3,), "key_frame": (),
  }
  for name, shape in expected.items():
    assert gt[name].shape == shape, name
  assert gt["face_mask"].dtype == bool and gt["vowel"].dtype == np.int8
  assert gt["landmarks"].dtype == np.float32
  assert list(gt["expression_names"]) == list(head.EXPRESSION_NAMES)
  assert list(gt["identity_names"]) == list(head.SHAPE_NAMES)
  assert int(gt["key_frame"]) == int(np.argmin(np.abs(gt["pose"][:, :3]).sum(-1)))
  assert int(gt["fps"]) == 25 and int(gt["sample_rate"]) == 16000 and int(gt["image_size"]) == SIZE
  assert np.all((gt["expression"] >= 0) & (gt["expression"] <= 1))


def test_pose_is_recovered_from_the_landmarks(sets):
  """Exact up to float32 rounding: stable points are rigid and identities are aligned."""
  out, _, _, _ = sets
  for path in _clips(out):
    gt = np.load(path.with_suffix(".npz"))
    pose = rigid.pose_from_landmarks(gt["landmarks"].astype(np.float64),
                                     gt["canonical"].astype(np.float64))
    assert np.abs(pose[:, :3] - gt["pose"][:, :3]).max() < 2e-5   # radians
    assert np.abs(pose[:, 3:] - gt["pose"][:, 3:]).max() < 2e-3   # pixels
    front = rigid.frontalize(gt["landmarks"], gt["pose"])
    assert np.abs(front - gt["front"]).max() < 2e-3
    stable = synthetic.head.STABLE_POINTS
    assert np.abs(gt["front"][:, stable] - gt["neutral"][stable]).max() < 2e-3
    assert np.abs(gt["pose"][:, :3]).max() > 0.005  # the head does move


def test_audio_envelope_follows_the_jaw_in_the_written_files(sets):
  out, _, _, _ = sets
  rms, jaw = [], []
  for path in _clips(out):
    video = media.read_video(path)
    gt = np.load(path.with_suffix(".npz"))
    assert video.frames.shape == (25, SIZE, SIZE, 3) and video.sample_rate == 16000
    hop = video.sample_rate // 25
    audio = video.audio[: 25 * hop].reshape(25, hop)
    rms.append(np.sqrt((audio ** 2).mean(1)))
    jaw.append(gt["expression"][:, 0])
  assert np.corrcoef(np.concatenate(rms), np.concatenate(jaw))[0, 1] > 0.5


@pytest.fixture(scope="module")
def rendered():
  """A 128 px clip of a clean-shaven identity, rendered in memory."""
  config = synthetic.SynthConfig(image_size=128, seconds=1.0)
  index = next(i for i in range(20) if synthetic.make_identity(4, i).look.beard == 0)
  identity = synthetic.make_identity(4, index)
  spec = synthetic.ClipSpec.of(index, 0, config.clips_per_video)
  return identity, config, synthetic.make_clip(4, identity, spec, config)


def _sample(frame, points):
  """Bilinear colour at (x, y) pixel positions (pixel centres at +0.5)."""
  x, y = points[:, 0] - 0.5, points[:, 1] - 0.5
  x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
  fx, fy = (x - x0)[:, None], (y - y0)[:, None]
  f = frame.astype(np.float64)
  return ((f[y0, x0] * (1 - fx) + f[y0, x0 + 1] * fx) * (1 - fy)
          + (f[y0 + 1, x0] * (1 - fx) + f[y0 + 1, x0 + 1] * fx) * fy)


def test_projected_lip_landmarks_fall_on_lip_coloured_pixels(rendered):
  identity, _, clip = rendered
  landmarks = clip.ground_truth["landmarks"]
  pairs = np.array([[50, 61], [51, 62], [52, 63], [56, 65], [57, 66], [58, 67]])
  good = 0
  for frame, lmk in zip(clip.frames, landmarks):
    lips = _sample(frame, lmk[pairs].mean(1)[:, :2])
    skin = _sample(frame, lmk[[28, 29]][:, :2])
    redness = lambda c: c[:, 0] / c.sum(1)
    good += redness(lips).min() > redness(skin).max() + 0.02
  assert good >= 0.9 * len(landmarks)
  # And the colour there is the identity's lip colour, up to the light.
  lip = identity.look.lip / identity.look.lip.sum()
  colour = _sample(clip.frames[0], landmarks[0][pairs].mean(1)[:, :2]).mean(0)
  np.testing.assert_allclose(colour / colour.sum(), lip, atol=0.04)


def test_face_mask_covers_the_rendered_face(rendered):
  identity, config, clip = rendered
  size = config.image_size
  green = appearance.Scene(background=np.broadcast_to(np.float32([0, 1, 0]), (size, size, 3)).copy(),
                           light_direction=np.float32([0, 0, -1]), ambient=np.float32([0.6] * 3),
                           diffuse=np.float32([0.4] * 3))
  mesh = synthetic.render_mesh_for(config.mesh_detail)
  positions = clip.ground_truth["position_map"]
  mask = clip.ground_truth["face_mask"]
  for pose in (np.zeros(6), clip.ground_truth["pose"][12]):
    front = synthetic.frontal_points(identity, mesh.points, np.zeros((1, 4)), size)
    vertices = rigid.unfrontalize(front, pose[None])[:, :mesh.num_vertices]
    frame = synthetic.render_frames(vertices, synthetic.appearance_lib.paint_texture(
        identity.look, config.texture_size), green, config, 0)[0].astype(int)
    covered = np.abs(frame - np.array([0, 255, 0])).max(-1) > 12  # not background
    face = rigid.unfrontalize(positions[mask], pose)
    cols, rows = np.floor(face[:, 0]).astype(int), np.floor(face[:, 1]).astype(int)
    # Every masked position-map point projects onto the rendered head …
    assert covered[rows, cols].mean() > 0.98
    # … and the mask's footprint covers the face inside the landmark outline.
    footprint = np.zeros((size, size), bool)
    footprint[rows, cols] = True
    lmk = rigid.unfrontalize(clip.ground_truth["neutral"], pose)
    outline = lmk[np.r_[0:17, 26:16:-1]]
    rr, cc = polygon(outline[:, 1] - 0.5, outline[:, 0] - 0.5, (size, size))
    footprint = ndimage.binary_closing(footprint, iterations=1)
    assert footprint[rr, cc].mean() > 0.99
    assert covered[rr, cc].all()


def test_cli_writes_a_set_and_reports_bad_input(tmp_path, capsys):
  out = tmp_path / "cli"
  status = cli.main(["synth", "--out", str(out), "--identities", "1", "--clips-per-identity", "1",
                     "--seconds", "0.4", "--size", str(SIZE), "--seed", "3", "--workers", "1",
                     "--no-progress"])
  assert status == 0
  assert "1 clips" in capsys.readouterr().out
  (clip,) = _clips(out)
  assert np.load(clip.with_suffix(".npz"))["landmarks"].shape == (10, 68, 3)
  assert cli.main(["synth", "--out", str(tmp_path / "bad"), "--size", "63", "--no-progress"]) == 1
  assert "image size must be even" in capsys.readouterr().err
