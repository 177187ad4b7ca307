"""Where `talkinghead prepare` keeps what is not a tfds shard, beside the tfds data.

    DATA_DIR/<dataset>/<config>/<version>/...            the tfds build (shards, dataset_info.json)
    DATA_DIR/artifacts/<dataset>/<config>/
      settings.json                                      the builder config the set was made with
      canonical_face.npy                                 (68, 3) float32, crop pixels
      landmark_pca.npz                                   geometry.pca.LandmarkPCA
      rejects.jsonl                                      data.rejects.RejectsManifest
      summary.json                                       clips, rejects, frames, hours per split
      landmarks/<split>/<clip_id>.npz                    preprocess.ClipLandmarks of each clip

No TensorFlow here: the landmark workers use it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

from talkinghead_jax.errors import InputError, TalkingHeadError
from talkinghead_jax.fileio import atomic_write_path

ARTIFACTS_DIR = "artifacts"


def config_name(detector: str, size: int) -> str:
  """The builder config's name: one config per (detector, crop size)."""
  return f"{detector}_{size}"


@dataclasses.dataclass(frozen=True)
class Artifacts:
  """The artifact paths of one prepared (dataset, config)."""

  root: pathlib.Path

  @classmethod
  def of(cls, data_dir: str | os.PathLike, dataset: str, config: str) -> "Artifacts":
    return cls(pathlib.Path(data_dir) / ARTIFACTS_DIR / dataset / config)

  @property
  def settings(self) -> pathlib.Path:
    return self.root / "settings.json"

  @property
  def canonical(self) -> pathlib.Path:
    return self.root / "canonical_face.npy"

  @property
  def pca(self) -> pathlib.Path:
    return self.root / "landmark_pca.npz"

  @property
  def rejects(self) -> pathlib.Path:
    return self.root / "rejects.jsonl"

  @property
  def summary(self) -> pathlib.Path:
    return self.root / "summary.json"

  def landmarks(self, split: str, clip_id: str) -> pathlib.Path:
    return self.root / "landmarks" / split / f"{clip_id}.npz"

  def read_settings(self) -> dict[str, Any] | None:
    if not self.settings.is_file():
      return None
    try:
      return json.loads(self.settings.read_text())
    except (OSError, ValueError) as error:
      raise InputError(self.settings, f"unreadable ({error})") from error

  def check_or_write_settings(self, settings: dict[str, Any]) -> None:
    """Records the settings of a new set; refuses to mix other settings into an existing one
    (the config name holds only the detector and the size)."""
    old = self.read_settings()
    if old is None:
      with atomic_write_path(self.settings) as temporary:
        temporary.write_text(json.dumps(settings, indent=1) + "\n")
      return
    changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
    if changed:
      described = ", ".join(f"{k}: {old.get(k)!r} there, {settings.get(k)!r} asked" for k in changed)
      raise TalkingHeadError(
          f"{self.root} was prepared with other settings ({described}); use another --data-dir "
          "or delete that folder and the tfds folder of the same config")

  def write_json(self, path: pathlib.Path, value: Any) -> None:
    with atomic_write_path(path) as temporary:
      temporary.write_text(json.dumps(value, indent=1) + "\n")
