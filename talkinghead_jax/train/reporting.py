"""What a run tells its user: a progress line (rate, ETA) and TensorBoard scalars and images.

Only the primary host (process 0) prints and writes event files (`<workdir>/tensorboard`);
the others keep quiet, since they hold the same replicated metrics.
"""

from __future__ import annotations

import collections
import datetime
import pathlib
import sys
import time
from typing import Mapping, TextIO

import numpy as np


def _summary_writer_class():
  """tensorboardX's `SummaryWriter`, imported without torch.

  tensorboardX's writer tries `import torch` only to accept torch tensors; we give it numpy, and
  torch takes seconds to import, so unless torch is loaded already its import is refused for
  the moment of this import (tensorboardX then skips it) and allowed again afterwards.
  """
  refuse_torch = "torch" not in sys.modules
  if refuse_torch:
    sys.modules["torch"] = None  # makes `import torch` raise ImportError
  try:
    from tensorboardX import SummaryWriter  # noqa: PLC0415 (only the primary host writes)
  finally:
    if refuse_torch and sys.modules.get("torch", "") is None:
      del sys.modules["torch"]
  return SummaryWriter


def format_duration(seconds: float) -> str:
  if not np.isfinite(seconds):
    return "?"
  return str(datetime.timedelta(seconds=int(round(seconds))))


class Reporter:
  """Averages step metrics between reports; prints a line and writes TensorBoard scalars."""

  HIDDEN_IN_LINE = ("/grad_norm", "/lr")  # in TensorBoard, too long for the progress line

  def __init__(self, workdir: str | pathlib.Path, total_steps: int, *, primary: bool = True,
               stream: TextIO | None = None):
    self.total_steps = total_steps
    self.primary = primary
    self.stream = stream or sys.stdout
    self._sums: dict[str, float] = collections.defaultdict(float)
    self._count = 0
    self._last_time = time.monotonic()
    self._last_step: int | None = None
    self._writer = None
    if primary:
      self._writer = _summary_writer_class()(logdir=str(pathlib.Path(workdir) / "tensorboard"))

  def add(self, metrics: Mapping[str, float]) -> None:
    for name, value in metrics.items():
      self._sums[name] += float(value)
    self._count += 1

  def report(self, step: int, extra: Mapping[str, float] | None = None) -> dict[str, float]:
    """Writes the averages since the last report at `step`; returns them."""
    now = time.monotonic()
    means = {name: total / max(self._count, 1) for name, total in self._sums.items()}
    means.update(extra or {})
    steps = step - self._last_step if self._last_step is not None else self._count
    rate = steps / max(now - self._last_time, 1e-9) if steps else 0.0
    eta = (self.total_steps - step) / rate if rate > 0 else float("inf")
    if self.primary:
      for name, value in means.items():
        self._writer.add_scalar(name, value, step)
      if steps:
        self._writer.add_scalar("steps_per_second", rate, step)
      shown = "  ".join(f"{name} {value:.4g}" for name, value in sorted(means.items())
                        if not name.endswith(self.HIDDEN_IN_LINE))
      print(f"step {step}/{self.total_steps}  {shown}  | {rate:.2f} steps/s  ETA {format_duration(eta)}",
            file=self.stream, flush=True)
    self._sums.clear()
    self._count = 0
    self._last_time = now
    self._last_step = step
    return means

  def images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    if self.primary:
      for name, image in images.items():
        self._writer.add_image(name, np.asarray(image), step, dataformats="HWC")

  def message(self, text: str) -> None:
    if self.primary:
      print(text, file=self.stream, flush=True)

  def close(self) -> None:
    if self._writer is not None:
      self._writer.flush()
      self._writer.close()
