"""SynthTalk generator helpers against plain references: placement, poses, shading, files."""

import numpy as np
import pytest
from scipy import ndimage

from talkinghead_jax.data import synthetic
from talkinghead_jax.data import synthtalk_appearance as appearance
from talkinghead_jax.data import synthtalk_head as head
from talkinghead_jax.geometry import rigid


def test_canonical_face_fills_the_crop_like_voxceleb2():
  for size in (64, 256):
    face = synthetic.canonical_face(size)
    low, high = face.min(0), face.max(0)
    assert max(high[0] - low[0], high[1] - low[1]) == pytest.approx(90 / 205 * size, rel=1e-5)
    np.testing.assert_allclose((low[:2] + high[:2]) / 2, [size / 2, size / 2], atol=1e-4)
    assert abs(face[:, 2].mean()) < 1e-4
  np.testing.assert_allclose(synthetic.canonical_face(256), 4 * synthetic.canonical_face(64), atol=1e-4)


def test_identities_are_aligned_to_the_canonical_face_on_the_stable_points():
  points = head.material_points(head.LANDMARK_U, head.LANDMARK_V)
  canonical = synthetic.placement(128).apply(synthetic._template_landmarks())  # float64
  for index in range(4):
    identity = synthetic.make_identity(0, index)
    neutral = synthetic.frontal_points(identity, points, np.zeros((1, 4)), 128)[0]
    # Already aligned: the best rigid fit onto the canonical face is the identity map.
    rotation, translation = rigid.fit(neutral[head.STABLE_POINTS], canonical[head.STABLE_POINTS])
    np.testing.assert_allclose(rotation, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(translation, 0, atol=1e-10)
    assert np.abs(neutral - canonical).max() > 0.5  # but the face is the identity's own


def test_head_rotation_conventions():
  nod = synthetic.head_rotation(np.array([[0.0, 0.3, 0.0]]))[0]
  chin = np.array([0.0, 1.0, -1.0])  # below and in front of the pivot
  assert (nod @ chin)[1] > chin[1]   # positive pitch: the chin goes down
  yaw = synthetic.head_rotation(np.array([[0.2, 0.0, 0.0]]))[0]
  np.testing.assert_allclose(yaw, [[np.cos(0.2), 0, np.sin(0.2)], [0, 1, 0], [-np.sin(0.2), 0, np.cos(0.2)]],
                             atol=1e-12)
  combined = synthetic.head_rotation(np.array([[0.1, 0.2, 0.3]]))[0]
  parts = [synthetic.head_rotation(np.array(a)[None])[0] for a in ([0, 0, 0.3], [0, 0.2, 0], [0.1, 0, 0])]
  np.testing.assert_allclose(combined, parts[0] @ parts[1] @ parts[2], atol=1e-12)


def test_pose_parameters_pose_the_face_about_the_pivot():
  rng = np.random.default_rng(0)
  angles, shift = rng.normal(0, 0.2, (5, 3)), rng.normal(0, 3, (5, 3))
  pose = synthetic.pose_parameters(angles, shift, 128)
  front = synthetic.canonical_face(128).astype(np.float64)
  posed = rigid.unfrontalize(np.broadcast_to(front, (5, 68, 3)), pose)
  pivot = synthetic.placement(128).apply(synthetic._PIVOT)
  q = synthetic.head_rotation(angles)
  expected = np.einsum("tij,nj->tni", q, front - pivot) + pivot + shift[:, None]
  np.testing.assert_allclose(posed, expected, atol=1e-9)


def test_vertex_shading_matches_a_loop_over_faces():
  mesh = synthetic.render_mesh_for(0.5)
  rng = np.random.default_rng(1)
  vertices = head.surface(mesh.points, head.sample_shape(rng), rng.uniform(0, 1, (2, 4)))
  vertices = vertices[:, :mesh.num_vertices] * 30 + 64
  scene = appearance.Scene(background=np.zeros((4, 4, 3), np.float32),
                           light_direction=np.float32([0.3, -0.4, -0.866]),
                           ambient=np.float32([0.4, 0.5, 0.6]), diffuse=np.float32([0.6, 0.5, 0.4]))
  shade = synthetic.vertex_shading(vertices, mesh, scene)
  for t in range(2):
    sums = np.zeros((mesh.num_vertices, 3))
    for face in mesh.faces:
      a, b, c = vertices[t, face]
      normal = np.cross(b - a, c - a)
      for index in face:
        sums[index] += normal
    normals = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    normals[normals[:, 2] > 0] *= -1
    cosine = np.maximum(normals @ scene.light_direction.astype(float), 0)
    np.testing.assert_allclose(shade[t], scene.ambient + scene.diffuse * cosine[:, None], atol=1e-6)


def test_tent_blur_matches_scipy():
  x = np.random.default_rng(2).random((2, 9, 7, 3)).astype(np.float32)
  kernel = np.outer([0.25, 0.5, 0.25], [0.25, 0.5, 0.25])[None, :, :, None]
  np.testing.assert_allclose(np.asarray(synthetic._tent3(x)), ndimage.convolve(x, kernel, mode="nearest"),
                             atol=1e-6)


def test_npz_writer_is_byte_stable_and_readable(tmp_path):
  arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "names": np.array(["x", "yz"]),
            "flag": np.array([True, False]), "scalar": np.array(3, np.int32)}
  synthetic.write_npz(tmp_path / "one.npz", arrays)
  synthetic.write_npz(tmp_path / "two.npz", arrays)
  assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
  loaded = np.load(tmp_path / "one.npz")
  assert loaded.files == list(arrays)
  for name, value in arrays.items():
    np.testing.assert_array_equal(loaded[name], value)
    assert loaded[name].dtype == value.dtype
  assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_clip_specs_and_names():
  specs = [synthetic.ClipSpec.of(3, c, 2) for c in range(5)]
  assert [(s.video, s.clip_in_video, s.number) for s in specs] == [
      (0, 0, 1), (0, 1, 2), (1, 0, 3), (1, 1, 4), (2, 0, 5)]
  assert [synthetic.split_of(i, 5) for i in range(7)] == ["dev", "test", "dev", "dev", "dev", "dev", "test"]
  assert synthetic.identity_name(0) == "id00001"
  names = {synthetic.video_name(np.random.default_rng(i)) for i in range(200)}
  assert len(names) == 200 and all(len(n) == 11 and n[0].isalnum() for n in names)


def test_config_rejects_bad_values():
  with pytest.raises(synthetic.TalkingHeadError, match="even"):
    synthetic.SynthConfig(image_size=65)
  with pytest.raises(synthetic.TalkingHeadError, match="seconds"):
    synthetic.SynthConfig(seconds=0)
  assert synthetic.SynthConfig(seconds=1.01).num_frames == 25
  # AAC cannot store 50 kHz: such clips are synthesised (and labelled) at 48 kHz.
  assert synthetic.SynthConfig(sample_rate=50000).audio_rate == 48000
  assert synthetic.SynthConfig(sample_rate=16000).audio_rate == 16000
