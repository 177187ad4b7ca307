"""media.VideoWriter: a video written batch by batch is the video `write_video` writes at once;
a failed write leaves no file."""

import numpy as np
import pytest

from talkinghead_jax import media


def _clip(frames=11, size=32, rate=16000, seed=0):
  rng = np.random.default_rng(seed)
  video = rng.integers(0, 256, (frames, size, size + 8, 3), dtype=np.uint8)
  t = np.arange(int(frames / 25 * rate) + 123) / rate  # a little more sound than pictures
  return video, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), rate


def test_batches_give_the_same_file_content_as_one_write(tmp_path):
  video, audio, rate = _clip()
  media.write_video(tmp_path / "once.mp4", video, audio=audio, sample_rate=rate)
  with media.VideoWriter(tmp_path / "batches.mp4", width=40, height=32, audio=audio, sample_rate=rate) as writer:
    writer.write(video[:4])
    writer.write(video[4])  # one frame
    writer.write(video[5:])
    assert writer.frames_written == 11
  once, batches = media.read_video(tmp_path / "once.mp4"), media.read_video(tmp_path / "batches.mp4")
  np.testing.assert_array_equal(batches.frames, once.frames)
  np.testing.assert_array_equal(batches.audio, once.audio)
  # All of the sound, past the last frame too (up to the decoder's alignment, a millisecond).
  assert abs(batches.audio.size - audio.size) <= rate // 1000


def test_a_failed_write_leaves_no_file(tmp_path):
  video, _, _ = _clip()
  path = tmp_path / "out.mp4"
  with pytest.raises(ValueError, match="the video is 40x32"):
    with media.VideoWriter(path, width=40, height=32) as writer:
      writer.write(video[:3])
      writer.write(video[:3, :, :32])  # another frame size
  with pytest.raises(RuntimeError, match="stop"):
    with media.VideoWriter(path, width=40, height=32) as writer:
      writer.write(video[:3])
      raise RuntimeError("stop")
  with pytest.raises(ValueError, match="no frames"):
    with media.VideoWriter(path, width=40, height=32):
      pass
  with pytest.raises(ValueError, match="even frame sizes"):
    media.VideoWriter(path, width=41, height=32)
  assert list(tmp_path.iterdir()) == []
