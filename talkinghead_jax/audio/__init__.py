"""Audio: loading and resampling, per-video-frame waveform windows, noise at an SNR (numpy).

Imports nothing from the project except `talkinghead_jax.errors`.
"""

from talkinghead_jax.audio.io import DecodedAudio
from talkinghead_jax.audio.io import decode_audio
from talkinghead_jax.audio.io import decode_audio_stream
from talkinghead_jax.audio.io import load_audio
from talkinghead_jax.audio.io import resample
from talkinghead_jax.audio.noise import SNR_LEVELS_DB
from talkinghead_jax.audio.noise import fit_noise_length
from talkinghead_jax.audio.noise import measure_snr_db
from talkinghead_jax.audio.noise import mix_noise
from talkinghead_jax.audio.noise import random_snr
from talkinghead_jax.audio.noise import signal_power
from talkinghead_jax.audio.windows import PAD_MODES
from talkinghead_jax.audio.windows import frame_windows
from talkinghead_jax.audio.windows import samples_per_frame
from talkinghead_jax.audio.windows import smooth_windows

__all__ = [
    "DecodedAudio",
    "PAD_MODES",
    "SNR_LEVELS_DB",
    "decode_audio",
    "decode_audio_stream",
    "fit_noise_length",
    "frame_windows",
    "load_audio",
    "measure_snr_db",
    "mix_noise",
    "random_snr",
    "resample",
    "samples_per_frame",
    "signal_power",
    "smooth_windows",
]
