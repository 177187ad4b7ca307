"""The unprojection net (paper Fig. 14, A.3; UPSTREAM_NOTES.md §2.3): image → UV position map,
trained on SynthTalk's stored position maps: `talkinghead train --config
configs/unprojection.py:<variant>`. Its workdir is what `configs/generator.py` reads as
`model.unprojection_checkpoint`.

Variants:
- `synthtalk_tiny`: 64 px, a narrow net (width 8, 4 levels), batch 8, Adam 1e-3; minutes on a
  2-core CPU;
- `vox`: PRNet's network (width 16, 5 levels, 256 px) for the 256-px generator (`vox_k8`),
  still trained on SynthTalk (the only data with position maps); PRNet's training: Adam 1e-4,
  batch 16, the rate halved every 5 epochs.
"""

import ml_collections

ConfigDict = ml_collections.ConfigDict


def get_config(arg: str = "synthtalk_tiny") -> ConfigDict:
  if arg not in ("synthtalk_tiny", "vox"):
    raise ValueError(f"unknown variant {arg!r} (synthtalk_tiny, vox)")
  tiny = arg == "synthtalk_tiny"
  c = ConfigDict()
  c.stage = "unprojection"
  c.seed = 0
  c.batch_size = 8 if tiny else 16
  c.total_steps = 2000 if tiny else 0
  c.num_epochs = 0 if tiny else 50

  c.mesh = ConfigDict(dict(data=-1, fsdp=1, model=1))
  c.sharding = ConfigDict(dict(rules=((r"kernel$", "fsdp"), (r".*", "replicate")), fsdp_min_size=2**16))

  c.data = ConfigDict(dict(
      source="tfds",  # "synthetic": numpy-made batches (train/synthetic_input.py)
      dataset="synthtalk",  # needs SynthTalk's position maps
      data_dir="",
      builder_config="",
      image_size=64 if tiny else 256,  # frames and maps are resized when the prepared size differs
      shuffle=True,
      samples_per_clip=4,  # of the clip's stored position maps (builder config unprojection_frames)
      device_prefetch=2,
      synthetic_clips=16,  # data.source=synthetic only
      synthetic_frames=48,
  ))

  c.model = ConfigDict(dict(
      features=8 if tiny else 16,  # PRNet: 16
      num_downsamples=4 if tiny else 5,  # PRNet: 5 (256 → 8 px)
      kernel_size=4,
      bn_momentum=0.9,
  ))
  # Texel weights of the position-map MSE (train/tasks/unprojection.py).
  c.loss = ConfigDict(dict(face_weight=1.0, outside_weight=0.1))

  schedule = (ConfigDict(dict(name="constant")) if tiny else
              ConfigDict(dict(name="halving", hold_epochs=5, half_every_epochs=5)))
  c.optim = ConfigDict(dict(model=ConfigDict(dict(
      name="adam", lr=1e-3 if tiny else 1e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip_norm=0.0,
      schedule=schedule))))

  c.log = ConfigDict(dict(every_steps=50 if tiny else 100, images_every_steps=500 if tiny else 2000))
  c.checkpoint = ConfigDict(dict(every_steps=500 if tiny else 2000, max_to_keep=3, async_save=True,
                                 stop_check_every=10))
  return c
