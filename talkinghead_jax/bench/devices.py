"""Peak dense FLOP/s per accelerator chip, for model-FLOPs utilisation (MFU).

Numbers are the vendors' datasheet peaks *without* structured sparsity (NVIDIA lists tensor-core
rates "with sparsity"; the dense rate is half of that). They are looked up by JAX's
`device.device_kind` string. A device that is not in the table (e.g. a CPU) has no peak, and
the train bench then reports MFU as n/a rather than guessing.

Sources:
- NVIDIA H100 Tensor Core GPU datasheet (SXM5 / PCIe / NVL columns);
- NVIDIA H200 Tensor Core GPU datasheet (SXM / NVL columns);
- NVIDIA GH200 Grace Hopper Superchip datasheet (the Hopper GPU's rates);
- NVIDIA A100 Tensor Core GPU datasheet (the same rates for PCIe/SXM, 40/80 GB);
- Google Cloud TPU "System architecture" pages (v4, v5e, v5p, v6e peak compute per chip). Google
  gives bf16 (and int8) rates only, so fp32 and tf32 are unknown (None) for TPUs.
"""

from __future__ import annotations

import dataclasses

TERA = 1e12


def _dense(with_sparsity_tflops: float) -> float:
  """NVIDIA's "with sparsity" tensor-core rate (TFLOP/s) as a dense rate in FLOP/s."""
  return with_sparsity_tflops / 2 * TERA


@dataclasses.dataclass(frozen=True)
class DevicePeak:
  """Peak dense FLOP/s of one chip per compute precision (None: not published)."""

  name: str
  bf16: float | None
  tf32: float | None
  fp32: float | None
  source: str

  def get(self, precision: str) -> float | None:
    if precision not in PRECISIONS:
      raise ValueError(f"unknown precision {precision!r}; known: {PRECISIONS}")
    return getattr(self, precision)


PRECISIONS = ("bf16", "tf32", "fp32")

_H100_SHEET = "NVIDIA H100 datasheet"
_H200_SHEET = "NVIDIA H200 datasheet"
_TPU_DOCS = "Cloud TPU system architecture docs"

# (lower-case substrings that must all occur in device_kind, peak). The first match wins, so a
# more specific name comes before the one it contains ("h100 pcie" before "h100", "gh200"
# before "h200").
_TABLE: tuple[tuple[tuple[str, ...], DevicePeak], ...] = (
    (("gh200",), DevicePeak("GH200 (Hopper GPU)", _dense(1979), _dense(989), 67 * TERA, "NVIDIA GH200 datasheet")),
    (("h100", "pcie"), DevicePeak("H100 PCIe", _dense(1513), _dense(756), 51 * TERA, _H100_SHEET)),
    (("h100", "nvl"), DevicePeak("H100 NVL", _dense(1671), _dense(835), 60 * TERA, _H100_SHEET)),
    (("h100",), DevicePeak("H100 SXM", _dense(1979), _dense(989), 67 * TERA, _H100_SHEET)),
    (("h200", "nvl"), DevicePeak("H200 NVL", _dense(1671), _dense(835), 60 * TERA, _H200_SHEET)),
    (("h200",), DevicePeak("H200 SXM", _dense(1979), _dense(989), 67 * TERA, _H200_SHEET)),
    (("a100",), DevicePeak("A100", _dense(624), _dense(312), 19.5 * TERA, "NVIDIA A100 datasheet")),
    (("tpu", "v4"), DevicePeak("TPU v4", 275 * TERA, None, None, _TPU_DOCS)),
    (("tpu", "v5", "lite"), DevicePeak("TPU v5e", 197 * TERA, None, None, _TPU_DOCS)),
    (("tpu", "v5e"), DevicePeak("TPU v5e", 197 * TERA, None, None, _TPU_DOCS)),
    (("tpu", "v5"), DevicePeak("TPU v5p", 459 * TERA, None, None, _TPU_DOCS)),  # kind "TPU v5" or "TPU v5p"
    (("tpu", "v6", "lite"), DevicePeak("TPU v6e", 918 * TERA, None, None, _TPU_DOCS)),
    (("tpu", "v6e"), DevicePeak("TPU v6e", 918 * TERA, None, None, _TPU_DOCS)),
)


def peak_for(device_kind: str) -> DevicePeak | None:
  """The peak of a `jax.Device.device_kind`, or None when it is not known (CPUs, other chips)."""
  kind = device_kind.lower()
  for needles, peak in _TABLE:
    if all(needle in kind for needle in needles):
      return peak
  return None


def mfu(flops_per_step: float | None, step_seconds: float, peak_per_device: float | None,
        num_devices: int) -> float | None:
  """Achieved FLOP/s over the peak of all devices the step ran on; None if either is unknown."""
  if flops_per_step is None or peak_per_device is None or step_seconds <= 0:
    return None
  return flops_per_step / step_seconds / (peak_per_device * num_devices)
