"""Small numpy plots for TensorBoard images (no plotting library in the training loop).

`curves_image(target, predicted)` draws each channel of two (T, C) series in its own panel,
stacked top to bottom: the target in green, the prediction in red, on a dark background.
Each panel is scaled to the range of both series in that channel.
"""

from __future__ import annotations

import numpy as np

TARGET_COLOR = (40, 220, 90)
PREDICTED_COLOR = (240, 60, 50)
BACKGROUND = (24, 24, 28)
SEPARATOR = (90, 90, 100)


def _draw_polyline(panel: np.ndarray, ys: np.ndarray, color) -> None:
  """Draws y(t) (panel rows, fractional) as a connected line across the panel's width."""
  height, width = panel.shape[:2]
  if len(ys) == 1:
    xs = np.array([width / 2])
  else:
    xs = np.linspace(0, width - 1, len(ys))
  for i in range(max(len(ys) - 1, 1)):
    x0, x1 = xs[i], xs[min(i + 1, len(ys) - 1)]
    y0, y1 = ys[i], ys[min(i + 1, len(ys) - 1)]
    steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 2
    for s in np.linspace(0.0, 1.0, steps):
      x = int(round(x0 + s * (x1 - x0)))
      y = int(round(y0 + s * (y1 - y0)))
      panel[np.clip(y, 0, height - 1), np.clip(x, 0, width - 1)] = color


def value_rows(values: np.ndarray, low: float, high: float, height: int) -> np.ndarray:
  """Maps values in [low, high] to panel rows, high at the top (row 1) and low at the bottom."""
  span = high - low if high > low else 1.0
  return 1 + (high - values) / span * (height - 3)


def curves_image(target: np.ndarray, predicted: np.ndarray, panel_height: int = 48,
                 width: int = 256) -> np.ndarray:
  """(H, W, 3) uint8: one panel per channel of the (T, C) series, target green, prediction red."""
  target = np.asarray(target, np.float64)
  predicted = np.asarray(predicted, np.float64)
  if target.ndim == 1:
    target, predicted = target[:, None], predicted[:, None]
  channels = target.shape[1]
  image = np.empty((channels * panel_height, width, 3), np.uint8)
  image[:] = BACKGROUND
  for c in range(channels):
    panel = image[c * panel_height:(c + 1) * panel_height]
    both = np.concatenate([target[:, c], predicted[:, c]])
    both = both[np.isfinite(both)]
    low, high = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    if np.all(np.isfinite(target[:, c])):
      _draw_polyline(panel, value_rows(target[:, c], low, high, panel_height), TARGET_COLOR)
    if np.all(np.isfinite(predicted[:, c])):
      _draw_polyline(panel, value_rows(predicted[:, c], low, high, panel_height), PREDICTED_COLOR)
    panel[-1] = SEPARATOR
  return image
