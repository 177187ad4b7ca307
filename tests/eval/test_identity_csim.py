"""CSIM: face alignment against scikit-image, the ArcFace ONNX path on a tiny model built here
with ArcFace's input/output signature, and the dlib backend on a real face photo."""

import numpy as np
import pytest

from talkinghead_jax.data import detectors
from talkinghead_jax.errors import InputError, TalkingHeadError
from talkinghead_jax.eval import identity


@pytest.fixture(scope="module")
def face_frames():
  """skimage's astronaut photo, cropped to the face, as 3 frames of 128x128."""
  import skimage.data
  import skimage.transform

  crop = skimage.data.astronaut()[40:220, 130:310]
  face = (skimage.transform.resize(crop, (128, 128), anti_aliasing=True) * 255).round()
  rng = np.random.default_rng(0)
  noisy = np.clip(face + rng.normal(0, 20, face.shape), 0, 255)
  return np.stack([face, face, noisy]).astype(np.uint8)


@pytest.fixture(scope="module")
def landmarks(face_frames):
  found = detectors.get_detector("dlib").detect(face_frames)
  assert found.valid.all()
  return found


def test_similarity_transform_recovers_a_known_one():
  rng = np.random.default_rng(1)
  src = rng.uniform(0, 100, (5, 2))
  angle, scale, shift = 0.3, 1.7, np.array([4.0, -9.0])
  rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  dst = scale * src @ rotation.T + shift
  matrix = identity.similarity_transform(src, dst)
  np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-10)
  np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)
  mirrored = identity.similarity_transform(src, dst * [-1, 1])  # never a reflection
  assert np.linalg.det(mirrored[:, :2]) > 0


def test_alignment_matches_scikit_image_warp(face_frames, landmarks):
  import skimage.transform

  aligned = np.asarray(identity.align_faces(face_frames[:1], landmarks.points[:1]))[0]
  five = identity.five_points(landmarks.points[0]) - 0.5  # skimage: pixel centres at integers
  transform = skimage.transform.SimilarityTransform.from_estimate(five, identity.ARCFACE_TEMPLATE) \
      if hasattr(skimage.transform.SimilarityTransform, "from_estimate") else None
  if transform is None:
    transform = skimage.transform.SimilarityTransform()
    transform.estimate(five, identity.ARCFACE_TEMPLATE)
  expected = skimage.transform.warp(face_frames[0].astype(np.float64), transform.inverse,
                                    output_shape=(112, 112), order=1, mode="constant", cval=0,
                                    preserve_range=True)
  np.testing.assert_allclose(aligned, expected, atol=0.05)
  # The eyes land where the template puts them: dark pupils near (38, 52) and (74, 52).
  eyes = aligned[48:56, 34:42].mean(), aligned[48:56, 70:78].mean()
  assert max(eyes) < aligned[60:80, 40:72].mean()  # darker than the cheeks/nose below


def _tiny_arcface(path, channels_first=True, batch=None):
  """ONNX with ArcFace's signature: face batch (N, 3, 112, 112) -> (N, 512) embedding."""
  onnx = pytest.importorskip("onnx")
  from onnx import TensorProto, helper, numpy_helper

  rng = np.random.default_rng(2)
  weights = rng.normal(size=(588, 512)).astype(np.float32)
  shape = [batch or "N", 3, 112, 112] if channels_first else [batch or "N", 112, 112, 3]
  nodes = [] if channels_first else [helper.make_node("Transpose", ["input.1"], ["nchw"],
                                                      perm=[0, 3, 1, 2])]
  nodes += [
      helper.make_node("AveragePool", ["input.1" if channels_first else "nchw"], ["pooled"],
                       kernel_shape=[8, 8], strides=[8, 8]),
      helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
      helper.make_node("MatMul", ["flat", "W"], ["embedding"]),
  ]
  graph = helper.make_graph(
      nodes, "tiny_arcface",
      [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, shape)],
      [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch or "N", 512])],
      initializer=[numpy_helper.from_array(weights, "W")])
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
  model.ir_version = 8
  onnx.save(model, str(path))
  return weights


@pytest.mark.parametrize("channels_first,batch", [(True, None), (False, 1)])
def test_arcface_onnx_path_end_to_end(tmp_path, face_frames, landmarks, channels_first, batch):
  weights = _tiny_arcface(tmp_path / "arcface.onnx", channels_first, batch)
  embedder = identity.get_embedder("arcface", model=tmp_path / "arcface.onnx")
  assert embedder.channels_first == channels_first and embedder.size == 112
  inputs = embedder.preprocess(face_frames, landmarks.points)
  nchw = inputs if channels_first else inputs.transpose(0, 3, 1, 2)
  assert nchw.shape == (3, 3, 112, 112) and -1.0 <= nchw.min() and nchw.max() <= 1.0
  aligned = np.asarray(identity.align_faces(face_frames, landmarks.points)).transpose(0, 3, 1, 2)
  np.testing.assert_allclose(nchw, (aligned - 127.5) / 127.5, atol=1e-6)
  expected = nchw.reshape(3, 3, 14, 8, 14, 8).mean(axis=(3, 5)).reshape(3, -1) @ weights
  embeddings = embedder.embed(face_frames, landmarks.points)
  np.testing.assert_allclose(embeddings, expected, rtol=1e-4, atol=1e-4)
  vectors = identity.embed_valid(embedder, face_frames, landmarks.points, landmarks.valid)
  csim = identity.csim_per_frame(vectors[0], vectors)
  assert csim[1] == pytest.approx(1.0, abs=1e-6) and csim[2] < csim[1]


def test_arcface_errors_name_the_file(tmp_path):
  with pytest.raises(TalkingHeadError, match="needs an ONNX model"):
    identity.get_embedder("arcface")
  with pytest.raises(InputError, match="missing.onnx: ArcFace ONNX model not found"):
    identity.get_embedder("arcface", model=tmp_path / "missing.onnx")
  junk = tmp_path / "junk.onnx"
  junk.write_bytes(b"\x00junk")
  with pytest.raises(InputError, match="junk.onnx: not a loadable ONNX model"):
    identity.get_embedder("arcface", model=junk)
  with pytest.raises(TalkingHeadError, match="unknown CSIM backend"):
    identity.get_embedder("facenet")


def test_dlib_csim_is_one_for_the_same_face_and_lower_when_degraded(face_frames, landmarks):
  embedder = identity.get_embedder("dlib")
  vectors = identity.embed_valid(embedder, face_frames, landmarks.points, landmarks.valid)
  assert vectors.shape == (3, 128)
  reference = identity.reference_embedding(vectors[:1])
  csim = identity.csim_per_frame(reference, vectors)
  assert csim[0] == pytest.approx(1.0, abs=1e-6) and csim[1] == pytest.approx(1.0, abs=1e-6)
  assert csim[2] < 0.995


def test_frames_without_a_face_are_left_out():
  embedder = identity.get_embedder("dlib")
  frames = np.zeros((2, 64, 64, 3), np.uint8)
  vectors = identity.embed_valid(embedder, frames, np.zeros((2, 68, 3)), np.zeros(2, bool))
  assert np.isnan(vectors).all() and identity.reference_embedding(vectors) is None
