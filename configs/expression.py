"""Ψ, the facial-expression learner (paper §3.2, Fig. 13; UPSTREAM_NOTES.md §2.1):
`talkinghead train --config configs/expression.py:<variant>`.

Variants:
- `synthtalk_tiny`: a small Ψ on SynthTalk that trains on a 2-core CPU in minutes;
- `vox`: the facts known from the authors' sibling repository (raw audio at 50 kHz, 7 chunks of
  0.04 s per frame, 32-frame sequences, batch 4, Adam 2e-5 with betas (0.5, 0.999), 20 PCA
  coefficients, MSE) and the paper's noise mixing (6 to 30 dB SNR in 3 dB steps). The number of
  steps is not known from upstream; 100k is ours.

Data: a prepared tfds set (`talkinghead prepare`; `--set data.data_dir=DIR`, docs/data.md "Input
pipelines"), or an array file: `--set data.source=arrays --set data.path=FILE.npz` (docs/training.md).
"""

import ml_collections

ConfigDict = ml_collections.ConfigDict


def get_config(arg: str = "synthtalk_tiny") -> ConfigDict:
  if arg not in ("synthtalk_tiny", "vox"):
    raise ValueError(f"unknown variant {arg!r} (synthtalk_tiny, vox)")
  tiny = arg == "synthtalk_tiny"
  c = ConfigDict()
  c.stage = "expression"
  c.seed = 0
  c.batch_size = 8 if tiny else 4
  c.total_steps = 4000 if tiny else 100_000
  c.num_epochs = 0

  c.mesh = ConfigDict(dict(data=-1, fsdp=1, model=1))
  c.sharding = ConfigDict(dict(rules=((r"kernel$", "fsdp"), (r".*", "replicate")), fsdp_min_size=2**16))

  c.data = ConfigDict(dict(
      source="tfds",  # "arrays": an .npz of prepared sequences (train/arrays.py)
      dataset="synthtalk" if tiny else "voxceleb2",
      path="",
      sample_rate=5000 if tiny else 50000,  # the paper: 50 kHz, 2000 samples per frame
      fps=25,
      context_frames=7,  # frames t-3 … t+3 per window
      sequence_length=8 if tiny else 32,
      window_stride=4 if tiny else 32,
      shuffle=True,
      # source="tfds" (data/pipelines.py, docs/data.md "Input pipelines"):
      data_dir="",  # the folder of `talkinghead prepare --data-dir`
      builder_config="",  # e.g. "sidecar_64"; "" = the only one prepared there
      samples_per_clip=1,  # windows drawn from each clip per epoch
      noise_dir="",  # noise recordings to mix in; "" = babble (other clips' audio)
      device_prefetch=2,  # batches put on the devices ahead of the step
  ))

  c.model = ConfigDict(dict(
      num_coeffs=20,
      audio_channels=(16, 32) if tiny else (64, 256),  # Fig. 13: Conv(64, 21, 2), Conv(256, 21, 2)
      kernel=21,
      stride=2,
      audio_features=32 if tiny else 256,
      reference_features=32 if tiny else 256,
      dropout=0.1,
      bn_momentum=0.9,
  ))
  # The paper: noise mixed in at 6 to 30 dB SNR in 3 dB increments.
  c.augment = ConfigDict(dict(snr_db=tuple(range(6, 31, 3)), noise_probability=1.0))

  schedule = ConfigDict(dict(name="constant"))
  c.optim = ConfigDict(dict(model=ConfigDict(dict(
      name="adam", lr=1e-3 if tiny else 2e-5, b1=0.9 if tiny else 0.5, b2=0.999, eps=1e-8,
      weight_decay=0.0, grad_clip_norm=0.0, schedule=schedule))))

  c.log = ConfigDict(dict(every_steps=50 if tiny else 100, images_every_steps=500 if tiny else 5000))
  c.checkpoint = ConfigDict(dict(every_steps=500 if tiny else 5000, max_to_keep=3, async_save=True,
                                 stop_check_every=10))
  return c
