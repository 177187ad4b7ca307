"""Plain-numpy references for the generator/discriminator tests (PyTorch semantics, NHWC).

Written from PyTorch's documented definitions, independently of talkinghead_jax.models.
"""

import jax
import numpy as np

LEAKY = 0.2
EPS = 1e-5


def leaky(x):
  return np.where(x >= 0, x, LEAKY * x)


def conv2d(x, kernel, stride=1, pad=0):
  """F.conv2d: x (B, H, W, I), kernel (kh, kw, I, O)."""
  x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  kh, kw = kernel.shape[:2]
  out_h = (x.shape[1] - kh) // stride + 1
  out_w = (x.shape[2] - kw) // stride + 1
  out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[3]))
  for a in range(kh):
    for b in range(kw):
      patch = x[:, a:a + stride * out_h:stride, b:b + stride * out_w:stride]
      out += np.einsum("bhwi,io->bhwo", patch, kernel[a, b])
  return out


def conv_transpose2d(x, kernel, stride, pad, output_pad):
  """F.conv_transpose2d as a scatter: out[i·s − p + a] += x[i] · w[a]; kernel (kh, kw, I, O)."""
  batch, height, width, _ = x.shape
  kh, kw, _, channels = kernel.shape
  out_h = (height - 1) * stride - 2 * pad + kh + output_pad
  out_w = (width - 1) * stride - 2 * pad + kw + output_pad
  full = np.zeros((batch, (height - 1) * stride + kh + output_pad,
                   (width - 1) * stride + kw + output_pad, channels))
  for i in range(height):
    for j in range(width):
      for a in range(kh):
        for b in range(kw):
          full[:, i * stride + a, j * stride + b] += x[:, i, j] @ kernel[a, b]
  return full[:, pad:pad + out_h, pad:pad + out_w]


def bilinear_resize(x, out_h, out_w):
  """F.interpolate(mode='bilinear', align_corners=False), one output pixel at a time."""
  batch, in_h, in_w, channels = x.shape

  def taps(o, in_size, out_size):
    src = max((o + 0.5) * in_size / out_size - 0.5, 0.0)
    i0 = int(src)
    i1 = i0 + 1 if i0 < in_size - 1 else i0
    return i0, i1, src - i0

  out = np.zeros((batch, out_h, out_w, channels))
  for oy in range(out_h):
    y0, y1, ly = taps(oy, in_h, out_h)
    for ox in range(out_w):
      x0, x1, lx = taps(ox, in_w, out_w)
      out[:, oy, ox] = ((1 - ly) * ((1 - lx) * x[:, y0, x0] + lx * x[:, y0, x1])
                        + ly * ((1 - lx) * x[:, y1, x0] + lx * x[:, y1, x1]))
  return out


def grid_sample_border(image, grid):
  """F.grid_sample(image, grid, 'bilinear', padding_mode='border', align_corners=False):
  image (B, H, W, C), grid (B, Ho, Wo, 2) normalised (x, y) in [−1, 1]."""
  batch, height, width, _ = image.shape
  out = np.zeros(grid.shape[:3] + (image.shape[3],))
  for b in range(batch):
    for i in range(grid.shape[1]):
      for j in range(grid.shape[2]):
        gx, gy = grid[b, i, j]
        ix = min(max(((gx + 1) * width - 1) / 2, 0.0), width - 1)
        iy = min(max(((gy + 1) * height - 1) / 2, 0.0), height - 1)
        x0, y0 = int(np.floor(ix)), int(np.floor(iy))
        value = 0.0
        for yy, wy in ((y0, 1 - (iy - y0)), (y0 + 1, iy - y0)):
          for xx, wx in ((x0, 1 - (ix - x0)), (x0 + 1, ix - x0)):
            if 0 <= yy < height and 0 <= xx < width:
              value = value + wy * wx * image[b, yy, xx]
        out[b, i, j] = value
  return out


def upstream_resample(image, flow):
  """Upstream's `resample`: linspace(−1, 1) grid + flow / ((W−1)/2, (H−1)/2), then grid_sample."""
  _, height, width, _ = image.shape
  gx = np.linspace(-1, 1, width)[None, None, :] + flow[..., 0] / ((width - 1) / 2)
  gy = np.linspace(-1, 1, height)[None, :, None] + flow[..., 1] / ((height - 1) / 2)
  return grid_sample_border(image, np.stack([gx, gy], axis=-1))


def batch_norm_train(x):
  """Per-channel normalisation with the batch's biased variance (PyTorch training mode)."""
  axes = tuple(range(x.ndim - 1))
  return (x - x.mean(axes)) / np.sqrt(x.var(axes) + EPS)


def batch_norm_eval(x, stats, params=None):
  out = (x - stats["mean"]) / np.sqrt(stats["var"] + EPS)
  if params is not None:
    out = out * params["scale"] + params["bias"]
  return out


def sn_kernel_eval(kernel, u):
  """The evaluation-mode spectral-normalised kernel: σ = ‖Wᵀu‖ with W the (out, rest) matrix."""
  w = np.asarray(kernel).reshape(-1, kernel.shape[-1]).T
  return np.asarray(kernel) / np.linalg.norm(w.T @ np.asarray(u))


def init_variables(module, *args, seed=0, **kwargs):
  """The module's variables: shapes from an abstract `init`, values from `fill_variables`."""
  abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))
  return fill_variables(abstract, seed)


def fill_variables(abstract, seed=0):
  """Concrete values for `jax.eval_shape(module.init ...)` without compiling random kernels:
  unit `u` vectors, running variances near 1, kernels ~ N(0, 1/fan_in)."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    return _fill(jax.tree_util.keystr(path), leaf).astype(np.float32)

  def _fill(name, leaf):
    x = rng.normal(size=leaf.shape).astype(np.float32)
    if name.endswith("['u']"):
      return x / np.linalg.norm(x)
    if name.endswith("['var']"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    if name.endswith("['scale']"):
      return (1.0 + 0.1 * x).astype(np.float32)
    if leaf.ndim == 1:
      return 0.1 * x
    return x / np.sqrt(np.prod(leaf.shape[:-1]))

  return jax.tree_util.tree_map_with_path(fill, abstract)
