"""Media I/O (PyAV): video decode/encode with constant-rate resampling; no processing here."""

from talkinghead_jax.media.video import AAC_SAMPLE_RATES
from talkinghead_jax.media.video import Video
from talkinghead_jax.media.video import VideoInfo
from talkinghead_jax.media.video import VideoWriter
from talkinghead_jax.media.video import probe_video
from talkinghead_jax.media.video import read_video
from talkinghead_jax.media.video import write_video

__all__ = [
    "AAC_SAMPLE_RATES",
    "Video",
    "VideoInfo",
    "VideoWriter",
    "probe_video",
    "read_video",
    "write_video",
]
