"""`talkinghead evaluate`: pairing, checks, known answers and degradations end to end."""

import json
import pathlib

import numpy as np
import pytest

from talkinghead_jax import cli
from talkinghead_jax.errors import InputError, TalkingHeadError
from talkinghead_jax.eval import evaluator, fid_convert

ALL = ("ssim", "psnr", "lpips", "lmd", "csim", "fid")


@pytest.fixture(scope="module")
def fid_weights(tmp_path_factory):
  cache = tmp_path_factory.getbasetemp() / "talkinghead_cache"
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("TALKINGHEAD_JAX_CACHE", str(cache))
    fid_convert.load_variables()
    return str(fid_convert.default_weights_path())


@pytest.fixture(scope="module")
def video():
  """6 frames of 128x128: skimage's astronaut face with a little head motion."""
  import skimage.data
  import skimage.transform

  photo = skimage.data.astronaut()
  frames = []
  for t in range(6):
    dy, dx = int(round(3 * np.sin(t))), int(round(3 * np.cos(t)))
    crop = photo[40 + dy:220 + dy, 130 + dx:310 + dx]
    frames.append(skimage.transform.resize(crop, (128, 128), anti_aliasing=True) * 255)
  return np.stack(frames).round().astype(np.uint8)


def _degrade(frames, shift, sigma, seed=0):
  rng = np.random.default_rng(seed)
  moved = np.roll(frames, shift, axis=2)
  return np.clip(moved + rng.normal(0, sigma, frames.shape), 0, 255).astype(np.uint8)


def _touch(folder, *names):
  folder.mkdir(parents=True, exist_ok=True)
  for name in names:
    (folder / name).write_bytes(b"")
  return folder


def test_pairing_by_name(tmp_path):
  pred = _touch(tmp_path / "pred", "a_fake.mp4", "b.mp4", "notes.txt")
  gt = _touch(tmp_path / "gt", "a_real.mp4", "b.mp4", "c.mp4")
  pairs, unpaired = evaluator.pair_videos(pred, gt)
  assert [(p.name, p.pred.name, p.gt.name) for p in pairs] == [
      ("a", "a_fake.mp4", "a_real.mp4"), ("b", "b.mp4", "b.mp4")]
  assert unpaired == ["c"]
  single, _ = evaluator.pair_videos(pred / "b.mp4", gt)  # one video against a folder
  assert single[0].gt.name == "b.mp4"
  refs = _touch(tmp_path / "ref", "a.png", "b_ref.jpg")
  with_refs, _ = evaluator.pair_videos(pred, gt, refs)
  assert [p.reference.name for p in with_refs] == ["a.png", "b_ref.jpg"]


def test_pairing_errors_are_clear(tmp_path):
  pred = _touch(tmp_path / "pred", "a.mp4", "x.mp4")
  gt = _touch(tmp_path / "gt", "a.mp4")
  with pytest.raises(InputError, match=r"gt: no ground truth for 1 generated video\(s\): x"):
    evaluator.pair_videos(pred, gt)
  with pytest.raises(InputError, match="--gt must be a folder"):
    evaluator.pair_videos(pred, gt / "a.mp4")
  with pytest.raises(InputError, match="missing: not found"):
    evaluator.pair_videos(tmp_path / "missing", gt)
  twice = _touch(tmp_path / "twice", "a_fake.mp4", "a_pred.mp4")
  with pytest.raises(InputError, match="two files pair as 'a'"):
    evaluator.pair_videos(twice, gt)
  with pytest.raises(InputError, match="no files with suffix"):
    evaluator.pair_videos(_touch(tmp_path / "empty"), gt)


def test_mismatched_frames_are_rejected(video):
  pair = evaluator.VideoPair("a", pathlib.Path("pred/a.mp4"), pathlib.Path("gt/a.mp4"))
  with pytest.raises(InputError, match=r"pred/a.mp4: has 5 frames but its ground truth gt/a.mp4 "
                                       r"has 6"):
    evaluator.check_pair(pair, video[:5], video)
  with pytest.raises(InputError, match=r"frames are 64x128 but its ground truth gt/a.mp4 has "
                                       r"128x128"):
    evaluator.check_pair(pair, video[:, :, :64], video)
  with pytest.raises(TalkingHeadError, match="unknown metric"):
    evaluator.EvalOptions(metrics=("ssim", "niqe"))


def _run(frames_by_path, pairs, fid_weights, metrics=ALL):
  import threadpoolctl

  options = evaluator.EvalOptions(metrics=metrics, fid_weights=fid_weights, fid_method="eigh",
                                  batch_size=8)
  # One BLAS thread: on a shared 2-core machine a threaded 2048² eigh slows down ~5x.
  with threadpoolctl.threadpool_limits(1, user_api="blas"):
    return evaluator.evaluate(pairs, options, read=lambda path: frames_by_path[str(path)],
                              progress=False)


@pytest.mark.slow
def test_identical_videos_give_the_ideal_scores_and_degradations_move_them(video, fid_weights):
  paths = {"p/same.mp4": video, "g/same.mp4": video,
           "p/mild.mp4": _degrade(video, 2, 6), "p/strong.mp4": _degrade(video, 6, 24),
           "g/mild.mp4": video, "g/strong.mp4": video}
  same = _run(paths, [evaluator.VideoPair("same", pathlib.Path("p/same.mp4"),
                                          pathlib.Path("g/same.mp4"))], fid_weights)
  ideal = same["aggregate"]
  assert ideal["ssim"] == pytest.approx(1.0, abs=1e-6)
  assert ideal["psnr"] == float("inf")
  assert ideal["lpips"] == pytest.approx(0.0, abs=1e-6)
  assert ideal["lmd_mouth"] == 0.0 and ideal["lmd_face"] == 0.0 and ideal["lmd_frames"] == 6
  assert ideal["csim"] == pytest.approx(1.0, abs=1e-6) and ideal["csim_frames"] == 6
  assert abs(ideal["fid"]) < 1e-3

  degraded = _run(paths, [
      evaluator.VideoPair(n, pathlib.Path(f"p/{n}.mp4"), pathlib.Path(f"g/{n}.mp4"))
      for n in ("mild", "strong")], fid_weights, metrics=ALL[:-1])  # FID: below and test_fid_*
  mild, strong = degraded["videos"]
  assert 1.0 > mild["ssim"] > strong["ssim"]
  assert np.isfinite(mild["psnr"]) and mild["psnr"] > strong["psnr"]
  assert 0.0 < mild["lpips"] < strong["lpips"]
  assert 0.0 < mild["lmd_mouth"] < strong["lmd_mouth"]
  assert 0.0 < mild["lmd_face"] < strong["lmd_face"]
  assert strong["csim"] < 1.0 and mild["csim"] < 1.0
  # With a reference image (the first frame), even the identical video's moving head scores < 1.
  paths["r/face.png"] = video[:1]
  referenced = _run(paths, [evaluator.VideoPair("same", pathlib.Path("p/same.mp4"),
                                                pathlib.Path("g/same.mp4"),
                                                pathlib.Path("r/face.png"))],
                    fid_weights, metrics=("csim",))
  assert 0.9 < referenced["aggregate"]["csim"] < 1.0
  assert referenced["settings"]["csim"]["reference"].startswith("the --reference file")
  # Aggregates are frame-weighted means of the per-video numbers (equal lengths here).
  assert degraded["aggregate"]["ssim"] == pytest.approx((mild["ssim"] + strong["ssim"]) / 2)
  settings = degraded["settings"]
  assert settings["csim"]["backend"] == "dlib" and "dlib ResNet" in settings["csim"]["model"]
  assert settings["lmd"]["landmarks"]["backend"] == "dlib"
  assert same["settings"]["fid"]["weights_source_sha1"] == fid_convert.SOURCE_SHA1
  assert any("rank-deficient" in w for w in same["warnings"])


def test_table_lists_every_video_and_the_aggregate():
  report = {"metrics": ["ssim", "psnr", "lmd"],
            "videos": [{"name": "a", "frames": 8, "ssim": 0.5, "psnr": float("inf"),
                        "lmd_mouth": 1.25, "lmd_face": None}],
            "aggregate": {"frames": 8, "ssim": 0.5, "psnr": float("inf"), "lmd_mouth": 1.25,
                          "lmd_face": None}}
  lines = evaluator.format_table(report).splitlines()
  assert lines[0].split() == ["video", "frames", "ssim", "psnr", "lmd_mouth", "lmd_face"]
  assert lines[2].split() == ["a", "8", "0.5000", "inf", "1.2500", "-"]
  assert lines[-1].split()[0] == "ALL"


@pytest.fixture()
def registered(monkeypatch):
  """`evaluate` reachable through the CLI even before cli.COMMAND_MODULES lists it."""
  if "talkinghead_jax.eval.command" not in cli.COMMAND_MODULES:
    monkeypatch.setattr(cli, "COMMAND_MODULES",
                        cli.COMMAND_MODULES + ("talkinghead_jax.eval.command",))


def test_cli_on_mp4_files_writes_report_and_table(tmp_path, registered, capsys):
  from talkinghead_jax import media

  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (4, 32, 48, 3), dtype=np.uint8)
  frames = np.repeat(np.repeat(frames, 2, axis=1), 2, axis=2)  # 64x96 blocks survive H.264 well
  media.write_video(tmp_path / "gt" / "clip_real.mp4", frames)
  media.write_video(tmp_path / "pred" / "clip_fake.mp4", frames)  # same encode: same decode
  media.write_video(tmp_path / "pred2" / "clip.mp4", 255 - frames)
  out = tmp_path / "report.json"
  status = cli.main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                     "--metrics", "ssim,psnr", "--out", str(out), "--no-progress"])
  assert status == 0
  table = capsys.readouterr().out.splitlines()
  assert table[0].split() == ["video", "frames", "ssim", "psnr"]
  assert table[2].split() == ["clip", "4", "1.0000", "inf"]
  report = json.loads(out.read_text())  # Python reads the `Infinity` extension back
  assert report["aggregate"]["psnr"] == float("inf") and report["videos"][0]["frames"] == 4
  assert report["settings"]["ssim"]["window"] == "gaussian 11x11, sigma 1.5"
  assert cli.main(["evaluate", "--pred", str(tmp_path / "pred2" / "clip.mp4"), "--gt",
                   str(tmp_path / "gt"), "--metrics", "psnr", "--no-progress"]) == 0
  assert float(capsys.readouterr().out.splitlines()[2].split()[-1]) < 10.0


def test_cli_rejects_a_mismatched_pair_in_one_line(tmp_path, registered, capsys):
  from talkinghead_jax import media

  frames = np.zeros((4, 32, 32, 3), np.uint8)
  media.write_video(tmp_path / "gt.mp4", frames)
  media.write_video(tmp_path / "short.mp4", frames[:2])
  status = cli.main(["evaluate", "--pred", str(tmp_path / "short.mp4"), "--gt",
                     str(tmp_path / "gt.mp4"), "--metrics", "ssim", "--no-progress"])
  assert status == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1
  assert "short.mp4: has 2 frames but its ground truth" in err and "gt.mp4 has 4" in err
