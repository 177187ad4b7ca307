"""Φ, the head-motion learner (paper §3.3; UPSTREAM_NOTES.md §2.2): `talkinghead train --config
configs/head_motion.py:<variant>`.

Variants:
- `synthtalk_tiny`: a small Φ on SynthTalk that trains on a 2-core CPU in minutes, with our
  residual base (the observed mean plus a learned continuation of the observed motion) and
  generated dropout (docs/training.md, "Φ: the residual base and time features");
- `vox`: upstream's RotateAudio hyperparameters on VoxCeleb2 (Adam 3e-4 with L2 2e-5, batch 64,
  dropout 0.1, 100 epochs, rate constant for 5 epochs then halved every 5, τ ∈ [32, 96] observed
  and P ∈ [16, 96] predicted frames, 16 kHz audio) with the paper's adversarial term;
- `vox_upstream`: `vox` with the generator loss upstream actually trained with (MSE only);
- `synthtalk_tiny_static`: `synthtalk_tiny` without the reference clip (`model.few_shot=False`:
  a static linear layer on the future audio features instead of the per-clip generated one),
  the "not few-shot" baseline of the evaluation (docs/evaluation.md).

Data: a prepared tfds set (`talkinghead prepare`; `--set data.data_dir=DIR`, docs/data.md "Input
pipelines"), or an array file: `--set data.source=arrays --set data.path=FILE.npz` (docs/training.md).
"""

import ml_collections

ConfigDict = ml_collections.ConfigDict


def _optimizer(lr: float, weight_decay: float, schedule: ConfigDict) -> ConfigDict:
  return ConfigDict(dict(name="adam", lr=lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=weight_decay,
                         grad_clip_norm=0.0, schedule=schedule))


def get_config(arg: str = "synthtalk_tiny") -> ConfigDict:
  variants = ("synthtalk_tiny", "synthtalk_tiny_static", "vox", "vox_upstream")
  if arg not in variants:
    raise ValueError(f"unknown variant {arg!r} ({', '.join(variants)})")
  tiny = arg.startswith("synthtalk_tiny")
  c = ConfigDict()
  c.stage = "head_motion"
  c.seed = 0
  c.batch_size = 8 if tiny else 64
  c.total_steps = 1500 if tiny else 0  # 0: use num_epochs
  c.num_epochs = 0 if tiny else 100

  # Batch over data (and fsdp); parameters whole unless fsdp > 1, then big kernels split.
  c.mesh = ConfigDict(dict(data=-1, fsdp=1, model=1))
  c.sharding = ConfigDict(dict(rules=((r"kernel$", "fsdp"), (r".*", "replicate")), fsdp_min_size=2**16))

  c.data = ConfigDict(dict(
      source="tfds",  # "arrays": an .npz of prepared sequences (train/arrays.py)
      dataset="synthtalk" if tiny else "voxceleb2",
      path="",
      sample_rate=4000 if tiny else 16000,  # upstream asserts 16 kHz: 640 samples per frame
      fps=25,
      context_frames=7,  # frames t-3 … t+3 per window
      observed_frames=(13, 32) if tiny else (32, 96),  # τ, drawn per step (13 = the encoder's minimum)
      predicted_frames=(16, 64) if tiny else (16, 96),  # P, drawn per step
      window_stride=4 if tiny else 192,  # vox: one window per 192 frames, about upstream's epoch
      shuffle=True,
      # source="tfds" (data/pipelines.py, docs/data.md "Input pipelines"):
      data_dir="",  # the folder of `talkinghead prepare --data-dir`
      builder_config="",  # e.g. "sidecar_64"; "" = the only one prepared there
      samples_per_clip=1,  # windows drawn from each clip per epoch
      # Pose normalisation: upstream's VoxCeleb2 statistics; () = computed from the train split.
      pose_mean=() if tiny else (0.07, -0.008, -0.016, 11.4, 5.69, -4.37),
      pose_std=() if tiny else (0.066, 0.132, 0.071, 9.99, 9.24, 16.95),
      device_prefetch=2,  # batches put on the devices ahead of the step
  ))

  c.model = ConfigDict(dict(
      audio_conv_channels=(8, 16),
      audio_hidden=64 if tiny else 512,
      audio_features=32 if tiny else 256,
      pose_hidden=16 if tiny else 128,
      pose_features=32 if tiny else 256,
      encoder_channels=64 if tiny else 512,
      encoder_kernel=5,
      encoder_stride=2,
      dropout=0.1,
      bn_momentum=0.9,  # torch's BatchNorm momentum 0.1
      use_discriminator_loss=arg != "vox_upstream",  # False = upstream (MSE only)
      # False: no reference clip, a static linear decoder (the evaluation's not-few-shot baseline).
      few_shot=arg != "synthtalk_tiny_static",
      # What the decoder's output is added to (models/head_motion.py): "none" = upstream;
      # "extrapolation" (ours): the mean observed pose plus a learned continuation of the observed
      # motion; "observed_mean" (ours): the mean observed pose alone.
      residual_base="extrapolation" if tiny else "none",
      # Ours, () = upstream: time features exp(-k/c) of each predicted frame's distance k from the
      # last observed one, for these c (frames): the extrapolation's time basis.
      future_time_constants=(4.0, 16.0) if tiny else (),
      decoder_time_features=False,  # ours: append them to the decoder's audio features too
      # Ours, 0 = upstream: drop the generated layer's offset of whole training examples.
      generated_dropout=0.8 if tiny else 0.0,
      extrapolation_frames=4,  # J observed frames the extrapolation reads …
      extrapolation_gap=5,  # … ending this many before the last: the 11-tap pose smoothing's half-width
      extrapolation_order=2,  # their level, velocity and acceleration …
      extrapolation_unit=16.0,  # … per this many frames
  ))
  # The paper gives no weight for the adversarial term; 0.1 is ours.
  c.loss = ConfigDict(dict(gan_weight=0.1))

  if tiny:
    schedule = ConfigDict(dict(name="constant"))
    c.optim = ConfigDict(dict(model=_optimizer(1e-3, 0.0, schedule), discriminator=_optimizer(1e-3, 0.0, schedule)))
  else:
    # Upstream's AdjustLR(sleep_epochs=5, half=5) for both optimizers, torch Adam's L2 weight decay.
    schedule = ConfigDict(dict(name="halving", hold_epochs=5, half_every_epochs=5))
    c.optim = ConfigDict(dict(model=_optimizer(3e-4, 2e-5, schedule), discriminator=_optimizer(3e-4, 2e-5, schedule)))

  c.log = ConfigDict(dict(every_steps=50 if tiny else 25, images_every_steps=500 if tiny else 2000))
  c.checkpoint = ConfigDict(dict(every_steps=500 if tiny else 2000, max_to_keep=3, async_save=True,
                                 stop_check_every=10))
  return c
