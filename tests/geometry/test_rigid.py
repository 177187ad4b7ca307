"""Tests for geometry.rigid: fits against scipy, rotation-vector round trips, poses, GPA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.spatial.transform import Rotation

from talkinghead_jax.geometry import landmarks, rigid


def synthetic_face(seed: int = 0) -> np.ndarray:
  """A plausible iBUG-68 face (68, 3) in pixels of a 256 crop, z grows away from the viewer."""
  rng = np.random.default_rng(seed)
  face = np.zeros((68, 3))
  phi = np.pi - np.arange(17) * np.pi / 16  # image-left ear, down round the chin, to the right
  face[0:17] = np.stack([128 + 70 * np.cos(phi), 120 + 80 * np.sin(phi),
                         30 * np.abs(np.cos(phi))], axis=1)
  brow_x = np.linspace(78, 115, 5)
  face[17:22] = np.stack([brow_x, 95 - 6 * np.sin(np.linspace(0, np.pi, 5)),
                          np.full(5, -4.0)], axis=1)
  face[22:27] = face[17:22][::-1] * [-1, 1, 1] + [256, 0, 0]
  face[27:31] = np.stack([np.full(4, 128.0), np.linspace(102, 136, 4),
                          np.linspace(-2, -26, 4)], axis=1)
  face[31:36] = np.stack([np.linspace(114, 142, 5), 143 + 3 * np.sin(np.linspace(0, np.pi, 5)),
                          np.array([-8, -14, -16, -14, -8.0])], axis=1)

  def ellipse(centre, rx, ry, count, z):
    angle = np.pi - np.arange(count) * 2 * np.pi / count
    return np.stack([centre[0] + rx * np.cos(angle), centre[1] - ry * np.sin(angle),
                     np.full(count, z)], axis=1)

  face[36:42] = ellipse((100, 110), 13, 5, 6, -2)
  face[42:48] = ellipse((156, 110), 13, 5, 6, -2)
  face[48:60] = ellipse((128, 172), 26, 11, 12, -10)
  face[60:68] = ellipse((128, 172), 16, 4, 8, -9)
  return face + rng.normal(scale=0.5, size=face.shape)


def random_poses(count: int, rng, max_angle: float = 0.6) -> np.ndarray:
  axes = rng.normal(size=(count, 3))
  axes /= np.linalg.norm(axes, axis=1, keepdims=True)
  angles = rng.uniform(0, max_angle, size=(count, 1))
  return np.concatenate([axes * angles, rng.normal(scale=20, size=(count, 3))], axis=1)


def test_fit_matches_scipy_align_vectors():
  rng = np.random.default_rng(1)
  src = rng.normal(size=(40, 3))
  rotation = Rotation.random(random_state=2).as_matrix()
  dst = src @ rotation.T + [3.0, -1.0, 2.0] + rng.normal(scale=0.05, size=src.shape)
  got, translation = rigid.fit(src, dst)
  src_centred, dst_centred = src - src.mean(0), dst - dst.mean(0)
  expected = Rotation.align_vectors(dst_centred, src_centred)[0].as_matrix()
  np.testing.assert_allclose(got, expected, atol=1e-10)
  np.testing.assert_allclose(translation, dst.mean(0) - got @ src.mean(0), atol=1e-10)
  assert np.linalg.det(got) == pytest.approx(1.0)


def test_fit_recovers_known_transform_with_noise():
  rng = np.random.default_rng(3)
  src = rng.normal(scale=50, size=(68, 3))
  pose = random_poses(1, rng, max_angle=3.0)[0]
  rotation = Rotation.from_rotvec(pose[:3]).as_matrix()
  dst = src @ rotation.T + pose[3:] + rng.normal(scale=0.01, size=src.shape)
  got_rotation, got_translation = rigid.fit(src, dst)
  assert np.abs(got_rotation - rotation).max() < 1e-3
  assert np.abs(got_translation - pose[3:]).max() < 0.05


def test_fit_returns_a_proper_rotation_when_the_best_orthogonal_map_is_a_reflection():
  rng = np.random.default_rng(4)
  src = rng.normal(size=(30, 3)) * [5.0, 3.0, 0.2]  # nearly flat, so the mirror fits well
  dst = src * [1.0, 1.0, -1.0]
  rotation, _ = rigid.fit(src, dst)
  assert np.linalg.det(rotation) == pytest.approx(1.0)
  np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
  # The best proper rotation keeps the two big axes and leaves the thin one mirrored.
  np.testing.assert_allclose(np.abs(np.diag(rotation)), [1, 1, 1], atol=1e-2)
  # With scale: for a fixed R the best s is Σ d·(R s) / Σ |s|², over centred points.
  rotation, translation, scale = rigid.fit(src, dst, with_scale=True)
  assert np.linalg.det(rotation) == pytest.approx(1.0)
  src_centred, dst_centred = src - src.mean(0), dst - dst.mean(0)
  expected = np.sum(dst_centred * (src_centred @ rotation.T)) / np.sum(src_centred**2)
  assert scale == pytest.approx(expected, rel=1e-12)
  np.testing.assert_allclose(translation, dst.mean(0) - scale * rotation @ src.mean(0),
                             atol=1e-12)


def test_umeyama_recovers_scale():
  rng = np.random.default_rng(5)
  src = rng.normal(size=(25, 3))
  rotation = Rotation.random(random_state=6).as_matrix()
  dst = 2.5 * src @ rotation.T + [10.0, 0.0, -4.0]
  got_rotation, got_translation, scale = rigid.fit(src, dst, with_scale=True)
  assert scale == pytest.approx(2.5, rel=1e-12)
  np.testing.assert_allclose(got_rotation, rotation, atol=1e-12)
  np.testing.assert_allclose(got_translation, [10.0, 0.0, -4.0], atol=1e-10)


def test_weights_equal_repeated_points():
  rng = np.random.default_rng(7)
  src = rng.normal(size=(12, 3))
  dst = rng.normal(size=(12, 3))
  counts = rng.integers(1, 4, size=12)
  weighted = rigid.fit(src, dst, with_scale=True, weights=counts.astype(float))
  repeated = rigid.fit(np.repeat(src, counts, 0), np.repeat(dst, counts, 0), with_scale=True)
  for a, b in zip(weighted, repeated):
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_fit_batched_equals_per_item_and_broadcasts():
  rng = np.random.default_rng(8)
  src = rng.normal(size=(2, 3, 20, 3))
  dst = rng.normal(size=(2, 3, 20, 3))
  rotation, translation, scale = rigid.fit(src, dst, with_scale=True)
  assert rotation.shape == (2, 3, 3, 3) and translation.shape == (2, 3, 3)
  assert scale.shape == (2, 3)
  for i in range(2):
    for j in range(3):
      r, t, s = rigid.fit(src[i, j], dst[i, j], with_scale=True)
      np.testing.assert_allclose(rotation[i, j], r, atol=1e-12)
      np.testing.assert_allclose(translation[i, j], t, atol=1e-12)
      assert scale[i, j] == pytest.approx(s)
  shared = rigid.fit(src[0, 0], dst[1])  # one src against a batch of dst
  for j in range(3):
    np.testing.assert_allclose(shared[0][j], rigid.fit(src[0, 0], dst[1, j])[0], atol=1e-12)


def test_numpy_keeps_float32_and_jax_answers_in_kind():
  rng = np.random.default_rng(9)
  src = rng.normal(size=(10, 3)).astype(np.float32)
  rotation, _ = rigid.fit(src, src + 1)
  assert isinstance(rotation, np.ndarray) and rotation.dtype == np.float32
  rotation, _ = rigid.fit(jnp.asarray(src), src + 1)
  assert isinstance(rotation, jax.Array)


def test_jax_matches_numpy_under_jit():
  rng = np.random.default_rng(10)
  face = synthetic_face()
  poses = random_poses(4, rng)
  lmk = rigid.unfrontalize(face, poses)  # (4, 68, 3)
  jit_fit = jax.jit(lambda s, d: rigid.fit(s, d, with_scale=True))
  for got, expected in zip(jit_fit(jnp.asarray(lmk, jnp.float32), jnp.asarray(face, jnp.float32)),
                           rigid.fit(lmk, face, with_scale=True)):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
  got = jax.jit(rigid.pose_from_landmarks)(jnp.asarray(lmk, jnp.float32),
                                          jnp.asarray(face, jnp.float32))
  np.testing.assert_allclose(got, rigid.pose_from_landmarks(lmk, face), atol=2e-3)
  gradient = jax.jit(jax.grad(lambda l: jnp.sum(rigid.pose_from_landmarks(l, face)**2)))(
      jnp.asarray(lmk, jnp.float32))
  assert gradient.shape == lmk.shape and bool(jnp.all(jnp.isfinite(gradient)))
  assert not np.any(np.asarray(gradient)[..., landmarks.MOUTH, :])  # only stable points count
  vectors = rng.normal(size=(5, 3))
  got = jax.jit(rigid.rotvec_to_matrix)(jnp.asarray(vectors, jnp.float32))
  np.testing.assert_allclose(got, rigid.rotvec_to_matrix(vectors), atol=1e-5)
  matrices = Rotation.random(6, random_state=11).as_matrix()
  got = jax.jit(rigid.matrix_to_rotvec)(jnp.asarray(matrices, jnp.float32))
  np.testing.assert_allclose(got, rigid.matrix_to_rotvec(matrices), atol=1e-5)
  got = jax.jit(rigid.repose)(jnp.asarray(lmk[0], jnp.float32), poses[0].astype(np.float32),
                              poses[1].astype(np.float32))
  np.testing.assert_allclose(got, rigid.repose(lmk[0], poses[0], poses[1]), atol=1e-3)


def test_rotvec_to_matrix_matches_scipy():
  rng = np.random.default_rng(12)
  axes = rng.normal(size=(8, 3))
  axes /= np.linalg.norm(axes, axis=1, keepdims=True)
  angles = np.array([0.0, 1e-9, 1e-4, 2e-3, 0.3, 2.0, np.pi - 1e-6, np.pi])
  vectors = (axes * angles[:, None]).reshape(2, 4, 3)
  got = rigid.rotvec_to_matrix(vectors)
  assert got.shape == (2, 4, 3, 3)
  expected = Rotation.from_rotvec(vectors.reshape(-1, 3)).as_matrix().reshape(2, 4, 3, 3)
  np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("angle", [0.0, 1e-8, 1e-5, 1e-3, 0.7, 2.5, np.pi - 1e-6])
def test_rotvec_round_trip(angle):
  rng = np.random.default_rng(13)
  axes = rng.normal(size=(5, 3))
  vectors = axes / np.linalg.norm(axes, axis=1, keepdims=True) * angle
  back = rigid.matrix_to_rotvec(rigid.rotvec_to_matrix(vectors))
  np.testing.assert_allclose(back, vectors, rtol=1e-13, atol=1e-15 * angle)


def test_rotvec_round_trip_at_exactly_pi():
  axes = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 2, -2]]) / [[1], [1], [1], [3]]
  vectors = axes * np.pi
  back = rigid.matrix_to_rotvec(rigid.rotvec_to_matrix(vectors))
  # ±π·axis are the same rotation: either is right, and the angle must be exactly π.
  np.testing.assert_allclose(np.linalg.norm(back, axis=1), np.pi, rtol=1e-12)
  np.testing.assert_allclose(np.abs(np.sum(back * vectors, axis=1)), np.pi**2, rtol=1e-12)


def test_matrix_to_rotvec_matches_scipy():
  rotations = Rotation.random(50, random_state=14)
  np.testing.assert_allclose(rigid.matrix_to_rotvec(rotations.as_matrix()),
                             rotations.as_rotvec(), atol=1e-12)


def test_rotvec_gradients_are_finite_and_match_finite_differences_near_zero():
  points = jnp.asarray(np.random.default_rng(15).normal(size=(4, 3)), jnp.float32)

  @jax.jit
  def smooth(v):
    return jnp.sum(jnp.sin(points @ rigid.rotvec_to_matrix(v).T))

  # Central differences straddle the Taylor/closed-form switch at |v| = 1e-3.
  for v in ([0.0, 0.0, 0.0], [6e-4, -7e-4, 2e-4], [0.4, -0.3, 0.2]):
    v = jnp.asarray(v, jnp.float32)
    check_grads(smooth, (v,), order=1, modes=("fwd", "rev"), eps=1e-3, atol=2e-2, rtol=2e-2)
  # The round trip is the identity map, so its Jacobian is the identity, at 0 too.
  jacobian = jax.jit(jax.jacrev(lambda v: rigid.matrix_to_rotvec(rigid.rotvec_to_matrix(v))))
  for v in ([0.0, 0.0, 0.0], [1e-5, 0.0, -1e-5], [0.5, 0.2, -0.1]):
    np.testing.assert_allclose(jacobian(jnp.asarray(v, jnp.float32)), np.eye(3), atol=1e-3)


def test_frontalize_known_answer_and_round_trip():
  rng = np.random.default_rng(16)
  lmk = rng.normal(scale=30, size=(5, 68, 3))
  poses = random_poses(5, rng)
  front = rigid.frontalize(lmk, poses)
  for i in range(5):
    rotation = Rotation.from_rotvec(poses[i, :3]).as_matrix()
    np.testing.assert_allclose(front[i], (rotation @ lmk[i].T).T + poses[i, 3:], atol=1e-10)
  np.testing.assert_allclose(rigid.unfrontalize(front, poses), lmk, atol=1e-10)
  # One pose (6,) applies to every frame.
  single = rigid.frontalize(lmk, poses[0])
  np.testing.assert_allclose(single[3], rigid.frontalize(lmk[3], poses[0]), atol=1e-12)
  np.testing.assert_allclose(rigid.unfrontalize(single, poses[0]), lmk, atol=1e-10)


def test_pose_from_landmarks_recovers_known_poses_and_ignores_the_mouth():
  rng = np.random.default_rng(17)
  face = synthetic_face()
  poses = random_poses(6, rng).reshape(2, 3, 6)
  lmk = rigid.unfrontalize(face, poses)  # (2, 3, 68, 3)
  lmk[..., landmarks.MOUTH, :] += rng.normal(scale=5.0, size=(2, 3, 20, 3))  # speech
  lmk[..., 8, :] += [0.0, 12.0, 0.0]  # an open jaw moves the chin, which is not a stable point
  got = rigid.pose_from_landmarks(lmk, face)
  assert got.shape == (2, 3, 6)
  np.testing.assert_allclose(got, poses, atol=1e-9)
  stable_front = rigid.frontalize(lmk, got)[..., landmarks.STABLE_27, :]
  np.testing.assert_allclose(stable_front, np.broadcast_to(face[landmarks.STABLE_27],
                                                           stable_front.shape), atol=1e-9)


def test_repose():
  rng = np.random.default_rng(18)
  face = synthetic_face()
  pose_a, pose_b = random_poses(2, rng)
  seen_at_a = rigid.unfrontalize(face, pose_a)
  np.testing.assert_allclose(rigid.repose(seen_at_a, pose_a, pose_a), seen_at_a, atol=1e-10)
  np.testing.assert_allclose(rigid.repose(seen_at_a, pose_a, pose_b),
                             rigid.unfrontalize(face, pose_b), atol=1e-10)
  # Eq. 1 written out: R_toᵀ(R_from·v + t_from − t_to).
  r_a = Rotation.from_rotvec(pose_a[:3]).as_matrix()
  r_b = Rotation.from_rotvec(pose_b[:3]).as_matrix()
  expected = (r_b.T @ (r_a @ seen_at_a.T + (pose_a[3:] - pose_b[3:])[:, None])).T
  np.testing.assert_allclose(rigid.repose(seen_at_a, pose_a, pose_b), expected, atol=1e-10)
  # A batch of target poses.
  targets = random_poses(4, rng)
  batch = rigid.repose(seen_at_a, pose_a, targets)
  assert batch.shape == (4, 68, 3)
  np.testing.assert_allclose(batch[2], rigid.unfrontalize(face, targets[2]), atol=1e-10)


@pytest.mark.parametrize("points", ["stable", "all"])
def test_canonical_face_recovers_the_face_from_noisy_posed_copies(points):
  rng = np.random.default_rng(19)
  face = synthetic_face()
  poses = random_poses(40, rng, max_angle=0.5)
  noise = 0.2
  sets = rigid.unfrontalize(face, poses) + rng.normal(scale=noise, size=(40, 68, 3))
  canonical = rigid.canonical_face(sets, points=points)
  assert canonical.shape == (68, 3) and canonical.dtype == np.float32
  # The gauge: centroid and size are the inputs' means, orientation that of set 0.
  np.testing.assert_allclose(canonical.mean(0), sets.mean(1).mean(0), atol=1e-3)
  sizes = np.sqrt(np.mean(np.sum((sets - sets.mean(1, keepdims=True))**2, -1), -1))
  centred = canonical - canonical.mean(0)
  assert np.sqrt(np.mean(np.sum(centred**2, -1))) == pytest.approx(sizes.mean(), rel=1e-5)
  index = landmarks.STABLE_27 if points == "stable" else np.arange(68)
  rotation_to_set0, _ = rigid.fit(canonical[index], sets[0][index])
  assert np.linalg.norm(rigid.matrix_to_rotvec(rotation_to_set0)) < 1e-5
  # Up to that gauge, it is the face, within the averaged noise.
  rotation, translation = rigid.fit(canonical.astype(np.float64), face)
  aligned = canonical @ rotation.T + translation
  rms = np.sqrt(np.mean(np.sum((aligned - face)**2, -1)))
  assert rms < 3 * noise * np.sqrt(3) / np.sqrt(40) + 0.02
